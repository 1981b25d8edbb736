"""Custom operators for mindcv-ext (adder conv, binary ops, DFC attention).

Importing this package compiles nothing. Kernels are written in MindSpore's Hybrid DSL
(``ops.Custom(func_type="hybrid")``, compiled by the bundled AKG on first use per shape) or, for
bit-level code, as AOT C++ (``func_type="aot"``, compiled by g++ on first use into a cache dir).

Backend choice (see :mod:`ascend_kernels.registry`): ``set_backend('custom'|'composite'|'auto')``,
env ``MINDCV_EXT_KERNELS``, ``apply_config(cfg)``; ``exporting()`` forces composite.

Importing this package before ``mindspore`` sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is already
set: idle OpenMP workers (the packed binary conv's and MindSpore's own) then sleep instead of
spinning, which on a few cores otherwise starves the framework's threads (the packed conv ran
1.5x slower with spinning workers on 2 cores). The policy is read when libgomp loads.

The AOT C++ kernels size their OpenMP team explicitly (``set_kernel_threads(n)``; default: the
cores MindSpore's runtime pool leaves free, 1 when it uses every core): see :mod:`.aot`.
"""
import os as _os

_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .registry import (BACKENDS, ENV_VAR, apply_config, export, exporting, get_backend,
                       is_exporting, kind_available, resolve, set_backend, use_custom)
from .aot import num_threads as kernel_threads, set_num_threads as set_kernel_threads

__all__ = ["BACKENDS", "ENV_VAR", "apply_config", "export", "exporting", "get_backend",
           "is_exporting", "kernel_threads", "kind_available", "resolve", "set_backend",
           "set_kernel_threads", "use_custom"]
