"""Helpers to build Hybrid-DSL kernels from source templates and cache the Custom ops.

Hybrid kernels receive their compile-time constants (stride, dilation, groups, ...) by text
substitution into a source template; each generated function is registered in ``linecache`` so
``inspect.getsource`` (which ``ops.Custom`` uses to ship the source to AKG) finds it.

AKG compiles a kernel once per (source, input shapes) and keeps the object in
``<MS_COMPILER_CACHE_PATH>/akg_kernel_meta`` (see :func:`ensure_cache_path`); later calls with the same shape (in this or a
later process) reuse it. The Custom primitives themselves are cached here per (kernel, config).
"""
import hashlib
import linecache
import os
import threading

_LOCK = threading.Lock()
_OPS = {}
_FUNCS = {}
STATS = {"ops_created": 0, "ops_reused": 0}


DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "mindcv_ext", "akg")


def ensure_cache_path():
    """Point MindSpore's compiler cache (where AKG puts ``akg_kernel_meta/``) at
    ``$MINDCV_EXT_KERNEL_CACHE/akg`` or ``~/.cache/mindcv_ext/akg`` unless
    ``MS_COMPILER_CACHE_PATH`` is already set, so kernels are reused across processes and the
    working directory stays clean. Called when the first hybrid primitive is built."""
    if os.environ.get("MS_COMPILER_CACHE_PATH"):
        return os.environ["MS_COMPILER_CACHE_PATH"]
    root = os.environ.get("MINDCV_EXT_KERNEL_CACHE")
    path = os.path.join(root, "akg") if root else DEFAULT_CACHE
    os.makedirs(path, exist_ok=True)
    os.environ["MS_COMPILER_CACHE_PATH"] = path
    return path


def kernel_cache_dir():
    """Directory where AKG stores compiled kernels for this process."""
    base = os.environ.get("MS_COMPILER_CACHE_PATH", ".")
    return os.path.realpath(os.path.join(base, "akg_kernel_meta"))


def compiled_kernel_files():
    """Names of the compiled kernel objects currently in the AKG cache dir."""
    d = kernel_cache_dir()
    if not os.path.isdir(d):
        return set()
    return {f for f in os.listdir(d) if f.endswith(".so")}


def make_function(src, name):
    """exec ``src`` (defining ``name``) under a fake file registered in linecache; return it
    decorated with mindspore's ``kernel``."""
    from mindspore.ops import kernel
    with _LOCK:
        if src in _FUNCS:
            return _FUNCS[src]
        digest = hashlib.sha1(src.encode()).hexdigest()[:12]
        fname = f"<ascend_kernels_hybrid_{name}_{digest}>"
        lines = src.splitlines(True)
        linecache.cache[fname] = (len(src), None, lines, fname)
        glb = {}
        exec(compile(src, fname, "exec"), glb)  # pylint: disable=exec-used
        fn = kernel(glb[name])
        _FUNCS[src] = fn
        return fn


def custom_op(key, builder):
    """Return the cached primitive for ``key``, building it with ``builder()`` the first time."""
    with _LOCK:
        op = _OPS.get(key)
        if op is not None:
            STATS["ops_reused"] += 1
            return op
    op = builder()
    with _LOCK:
        _OPS.setdefault(key, op)
        STATS["ops_created"] += 1
        return _OPS[key]


def hybrid(src, name, out_shape, out_dtype, bprop=None):
    """An ``ops.Custom(func_type='hybrid')`` for generated source with explicit shape/dtype infer.

    Explicit ``out_shape``/``out_dtype`` matter: without them MindSpore infers the shape by running
    the DSL function as Python on fake inputs (minutes for a conv-sized loop nest).
    """
    import mindspore.ops as ops
    ensure_cache_path()
    fn = make_function(src, name)
    return ops.Custom(fn, out_shape=out_shape, out_dtype=out_dtype, func_type="hybrid", bprop=bprop)
