"""Compile-on-first-use for the AOT (C++) kernels in ``ascend_kernels/csrc``.

The shared object goes to ``$MINDCV_EXT_KERNEL_CACHE`` (default ``~/.cache/mindcv_ext/aot``),
named by a hash of the source and flags, so it is built once per source version. The build tries
``-O3 -march=native -fopenmp`` (POPCNT via ``__builtin_popcountll``) and falls back to a portable
``-O3`` build when a flag is not supported.
"""
import hashlib
import os
import shutil
import subprocess
import threading

_LOCK = threading.Lock()
_BUILT = {}
CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
FLAG_SETS = (["-O3", "-march=native", "-fopenmp"], ["-O3", "-fopenmp"], ["-O3"])
STATS = {"compiles": 0}


def cache_dir():
    d = os.environ.get("MINDCV_EXT_KERNEL_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "mindcv_ext", "aot")
    os.makedirs(d, exist_ok=True)
    return d


def build(name):
    """Path of the compiled ``csrc/<name>.cc`` shared object (compiled if missing)."""
    with _LOCK:
        if name in _BUILT:
            return _BUILT[name]
        src = os.path.join(CSRC, name + ".cc")
        with open(src, "rb") as f:
            code = f.read()
        cxx = os.environ.get("CXX", "g++")
        if shutil.which(cxx) is None:
            raise RuntimeError(f"ascend_kernels: C++ compiler {cxx!r} not found; use the composite backend")
        errors = []
        for flags in FLAG_SETS:
            tag = hashlib.sha1(code + " ".join([cxx] + flags).encode()).hexdigest()[:16]
            out = os.path.join(cache_dir(), f"{name}_{tag}.so")
            if os.path.isfile(out):
                _BUILT[name] = out
                return out
            tmp = out + f".tmp{os.getpid()}"
            cmd = [cxx, "-std=c++17", "-shared", "-fPIC", *flags, src, "-o", tmp]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode == 0:
                os.replace(tmp, out)
                STATS["compiles"] += 1
                _BUILT[name] = out
                return out
            errors.append(" ".join(cmd) + "\n" + res.stderr[-2000:])
        raise RuntimeError("ascend_kernels: could not compile " + src + ":\n" + "\n".join(errors))
