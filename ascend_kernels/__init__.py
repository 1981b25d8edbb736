"""Custom operators for mindcv-ext (adder conv, binary ops, DFC attention).

Importing this package compiles nothing. Kernels are written in MindSpore's Hybrid DSL
(``ops.Custom(func_type="hybrid")``, compiled by the bundled AKG on first use per shape) or, for
bit-level code, as AOT C++ (``func_type="aot"``, compiled by g++ on first use into a cache dir).

Backend choice (see :mod:`ascend_kernels.registry`): ``set_backend('custom'|'composite'|'auto')``,
env ``MINDCV_EXT_KERNELS``, ``apply_config(cfg)``; ``exporting()`` forces composite.
"""
from .registry import (BACKENDS, ENV_VAR, apply_config, export, exporting, get_backend,
                       is_exporting, kind_available, resolve, set_backend, use_custom)

__all__ = ["BACKENDS", "ENV_VAR", "apply_config", "export", "exporting", "get_backend",
           "is_exporting", "kind_available", "resolve", "set_backend", "use_custom"]
