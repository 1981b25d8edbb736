"""Compile-on-first-use for the AOT (C++) kernels in ``ascend_kernels/csrc``.

The shared object goes to ``$MINDCV_EXT_KERNEL_CACHE`` (default ``~/.cache/mindcv_ext/aot``),
named by a hash of the source and flags, so it is built once per source version. The build tries
``-O3 -march=native -fopenmp`` (POPCNT via ``__builtin_popcountll``) and falls back to a portable
``-O3`` build when a flag is not supported. :func:`call` runs a kernel on numpy arrays through the
same calling convention MindSpore uses, outside the framework (tests of other builds, timing).

Threads: each kernel's OpenMP team size is set through its ``AscendKernelsSetNumThreads`` entry
(:func:`set_num_threads`, applied to every kernel loaded in this process and to those built later).
The default, :func:`default_num_threads`, is the number of cores MindSpore's own CPU thread pool
leaves free, at least 1: MindSpore runs its pool on every core by default, so the kernels then run
single-threaded and do not compete with the framework's threads for the same cores.
"""
import ctypes
import glob
import hashlib
import os
import shutil
import subprocess
import threading

import numpy as np

_LOCK = threading.Lock()
_BUILT = {}
CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
FLAG_SETS = (["-O3", "-march=native", "-fopenmp"], ["-O3", "-fopenmp"], ["-O3"])
STATS = {"compiles": 0}
_THREADS = {"n": None}  # None: default_num_threads()


def cache_dir():
    d = os.environ.get("MINDCV_EXT_KERNEL_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "mindcv_ext", "aot")
    os.makedirs(d, exist_ok=True)
    return d


def build(name, flag_sets=None):
    """Path of the compiled ``csrc/<name>.cc`` shared object (compiled if missing). ``flag_sets``
    replaces the default list of flag sets tried in order (e.g. ``[["-O3", "-mno-avx2"]]`` for a
    build without the AVX2 code paths)."""
    flag_sets = tuple(tuple(f) for f in (FLAG_SETS if flag_sets is None else flag_sets))
    key = (name, flag_sets)
    with _LOCK:
        if key in _BUILT:
            return _BUILT[key]
        src = os.path.join(CSRC, name + ".cc")
        with open(src, "rb") as f:
            code = f.read()
        for header in sorted(glob.glob(os.path.join(CSRC, "*.h"))):  # a header change rebuilds too
            with open(header, "rb") as f:
                code += f.read()
        cxx = os.environ.get("CXX", "g++")
        if shutil.which(cxx) is None:
            raise RuntimeError(f"ascend_kernels: C++ compiler {cxx!r} not found; use the composite backend")
        errors = []
        for flags in flag_sets:
            tag = hashlib.sha1(code + " ".join([cxx, *flags]).encode()).hexdigest()[:16]
            out = os.path.join(cache_dir(), f"{name}_{tag}.so")
            if os.path.isfile(out):
                _BUILT[key] = _loaded(out)
                return out
            tmp = out + f".tmp{os.getpid()}"
            cmd = [cxx, "-std=c++17", "-shared", "-fPIC", *flags, src, "-o", tmp]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode == 0:
                os.replace(tmp, out)
                STATS["compiles"] += 1
                _BUILT[key] = _loaded(out)
                return out
            errors.append(" ".join(cmd) + "\n" + res.stderr[-2000:])
        raise RuntimeError("ascend_kernels: could not compile " + src + ":\n" + "\n".join(errors))


_LIBS = {}


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_num_threads():
    """Cores left free by MindSpore's CPU runtime pool (``runtime_num_threads``), at least 1."""
    cores = _cores()
    try:
        import mindspore as ms
        used = ms.get_context("runtime_num_threads")
    except Exception:  # pragma: no cover - mindspore missing or option unknown
        used = None
    if not used or used <= 0:
        used = cores
    return max(1, cores - int(used))


def num_threads():
    """The OpenMP team size the AOT kernels use in this process."""
    return _THREADS["n"] if _THREADS["n"] is not None else default_num_threads()


def set_num_threads(n=None):
    """Set the AOT kernels' OpenMP team size (``None``: back to :func:`default_num_threads`).

    Applies to every kernel already loaded and to kernels built later in this process; MindSpore
    loads the same shared objects, so the setting reaches its launches too."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"ascend_kernels: kernel threads must be an integer >= 1 or None, got {n!r}")
    _THREADS["n"] = n
    value = num_threads()
    for path in set(_BUILT.values()):
        _apply_threads(path, value)
    return value


def _apply_threads(so_path, n):
    lib = _LIBS.get(so_path) or ctypes.CDLL(so_path)
    _LIBS[so_path] = lib
    fn = getattr(lib, "AscendKernelsSetNumThreads", None)
    if fn is not None:
        fn.restype = ctypes.c_int
        fn(ctypes.c_int(n))


def _loaded(so_path):
    """Load ``so_path`` in this process (MindSpore's dlopen shares it) and set its team size."""
    _apply_threads(so_path, num_threads())
    return so_path


def last_team_size(so_path):
    """OpenMP team size of the last parallel region a kernel in ``so_path`` ran (0: none yet)."""
    fn = getattr(_LIBS.get(so_path) or ctypes.CDLL(so_path), "AscendKernelsLastTeamSize")
    fn.restype = ctypes.c_int
    return fn()


def _symbol(so_path, symbol):
    if so_path not in _LIBS:
        _LIBS[so_path] = ctypes.CDLL(so_path)
    fn = getattr(_LIBS[so_path], symbol)
    fn.restype = ctypes.c_int
    return fn


_DTYPES = {np.dtype(np.float32): b"float32", np.dtype(np.int64): b"int64", np.dtype(np.int32): b"int32"}


def call(so_path, symbol, inputs, out_shape, out_dtype=np.float32):
    """Run ``symbol`` of a built kernel on numpy ``inputs``; returns the output array.

    Same arguments as MindSpore passes to an AOT kernel: the inputs then the output, with their
    ranks, shapes and dtype names. A non-zero return code raises ``RuntimeError``."""
    arrays = [np.ascontiguousarray(a) for a in inputs]
    out = np.zeros(out_shape, out_dtype)
    arrays.append(out)
    n = len(arrays)
    for a in arrays:
        if a.dtype not in _DTYPES:
            raise TypeError(f"ascend_kernels.aot.call: unsupported dtype {a.dtype}")
    params = (ctypes.c_void_p * n)(*[a.ctypes.data for a in arrays])
    ndims = (ctypes.c_int * n)(*[a.ndim for a in arrays])
    shape_arrays = [(ctypes.c_int64 * max(a.ndim, 1))(*a.shape) for a in arrays]
    shapes = (ctypes.POINTER(ctypes.c_int64) * n)(
        *[ctypes.cast(sa, ctypes.POINTER(ctypes.c_int64)) for sa in shape_arrays])
    dtypes = (ctypes.c_char_p * n)(*[_DTYPES[a.dtype] for a in arrays])
    fn = _symbol(so_path, symbol)
    rc = fn(ctypes.c_int(n), params, ndims, shapes, dtypes, None, None)
    if rc != 0:
        raise RuntimeError(f"ascend_kernels.aot.call: {symbol} returned {rc}")
    return out
