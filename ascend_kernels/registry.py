"""Backend registry: decides whether a layer runs its custom kernel or its composite twin.

Resolution order for a layer built with ``backend=None``:

1. inside :func:`exporting` (or :func:`export`) -> always ``composite`` (exported MindIR/ONNX
   files must run on any device, so they never contain Custom ops);
2. the value given to :func:`set_backend` (or :func:`apply_config`);
3. the environment variable ``MINDCV_EXT_KERNELS`` (``custom`` | ``composite`` | ``auto``);
4. ``auto``.

``auto`` picks ``custom`` where the kernel kind compiles on the current device target
(Hybrid DSL kernels: AKG plugin present for CPU/GPU/Ascend; AOT C++ kernels: CPU with g++),
``composite`` otherwise. ``custom`` forces the kernel (errors surface when it cannot compile).

Nothing here compiles anything; the checks only look for files.
"""
import contextlib
import functools
import os
import shutil

ENV_VAR = "MINDCV_EXT_KERNELS"
BACKENDS = ("custom", "composite", "auto")

_state = {"backend": None, "export_depth": 0}


def _check_name(name):
    if name is None:
        return None
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ValueError(f"kernel backend must be one of {BACKENDS} (or None), got {name!r}")
    return name.lower()


def set_backend(name):
    """Set the global kernel backend: 'custom', 'composite', 'auto', or None (back to env/default)."""
    _state["backend"] = _check_name(name)


def get_backend():
    """The global backend name currently in force ('custom' | 'composite' | 'auto')."""
    if _state["export_depth"] > 0:
        return "composite"
    if _state["backend"] is not None:
        return _state["backend"]
    env = os.environ.get(ENV_VAR, "").strip().lower()
    if env:
        if env not in BACKENDS:
            raise ValueError(f"{ENV_VAR} must be one of {BACKENDS}, got {env!r}")
        return env
    return "auto"


def apply_config(cfg):
    """Read the backend from a config mapping.

    Accepted forms: ``{"kernels": "composite"}``, ``{"kernels": {"backend": "custom"}}`` or
    ``{"kernel_backend": "auto"}``. Missing keys leave the current setting unchanged.
    """
    if cfg is None:
        return
    val = None
    if "kernels" in cfg:
        val = cfg["kernels"]
        if isinstance(val, dict):
            val = val.get("backend")
    elif "kernel_backend" in cfg:
        val = cfg["kernel_backend"]
    if val is not None:
        set_backend(val)


@contextlib.contextmanager
def exporting():
    """Context manager: every layer resolves to its composite twin (use around mindspore.export)."""
    _state["export_depth"] += 1
    try:
        yield
    finally:
        _state["export_depth"] -= 1


def is_exporting():
    return _state["export_depth"] > 0


def export(net, *inputs, file_name, file_format="MINDIR", **kwargs):
    """``mindspore.export`` with all mindcv-ext layers forced to their composite form."""
    import mindspore as ms
    with exporting():
        return ms.export(net, *inputs, file_name=file_name, file_format=file_format, **kwargs)


def _device_target():
    try:
        import mindspore as ms
        return ms.get_context("device_target")
    except Exception:  # pragma: no cover - mindspore missing
        return "CPU"


@functools.lru_cache(maxsize=None)
def _akg_plugin_for(target):
    try:
        import importlib.util
        spec = importlib.util.find_spec("mindspore")
        root = os.path.dirname(spec.origin)
    except Exception:  # pragma: no cover
        return False
    if not os.path.isdir(os.path.join(root, "_akg", "akg")):
        return False
    plugin = os.path.join(root, "lib", "plugin")
    if target == "CPU":
        return os.path.isfile(os.path.join(plugin, "cpu", "libakg.so"))
    if target == "GPU":
        return any(os.path.isfile(os.path.join(plugin, d, "libakg.so"))
                   for d in (os.listdir(plugin) if os.path.isdir(plugin) else []) if d.startswith("gpu"))
    if target == "Ascend":
        # Hybrid on Ascend needs the separately installed AKG for Ascend.
        return os.path.isfile(os.path.join(plugin, "ascend", "libakg.so"))
    return False


def kind_available(kind="hybrid", target=None):
    """Whether kernels of ``kind`` ('hybrid' or 'aot_cpu') can compile on ``target``."""
    target = target or _device_target()
    if kind == "hybrid":
        return _akg_plugin_for(target)
    if kind == "aot_cpu":
        return target == "CPU" and shutil.which(os.environ.get("CXX", "g++")) is not None
    raise ValueError(f"unknown kernel kind {kind!r}")


def resolve(backend=None, kind="hybrid"):
    """Resolve a layer's ``backend`` argument to 'custom' or 'composite'."""
    if _state["export_depth"] > 0:
        return "composite"
    name = _check_name(backend) or get_backend()
    if name == "auto":
        return "custom" if kind_available(kind) else "composite"
    return name


def _use_custom(backend=None, kind="hybrid"):
    return resolve(backend, kind) == "custom"


def _compile_time(fn):
    """Run ``fn`` in Python while a graph is compiled (its result is a constant of the graph)."""
    try:
        from mindspore.ops import constexpr
    except ImportError:  # pragma: no cover - mindspore missing
        return fn
    return constexpr(fn)


# Layers call this inside ``construct``; it is evaluated once per compile, so ``kernels: auto``
# works in compiled (graph / jit) steps and ``exporting()`` still forces the composite form.
use_custom = _compile_time(_use_custom)
