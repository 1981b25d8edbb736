"""The one model registry: ``register_model``, ``create_model``, ``list_models``."""
import difflib
import fnmatch
import os
import sys
from typing import Callable, Dict, List, Optional

_MODELS: Dict[str, Callable] = {}
_FAMILY: Dict[str, str] = {}


class UnknownModelError(KeyError):
    """Raised for a model name that is not registered."""

    def __str__(self):  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def register_model(fn: Callable) -> Callable:
    """Decorator: register a builder ``fn(num_classes=..., **kw) -> nn.Cell`` under its name.

    The family is the builder's module name (``mindcv_ext.models.ghostnetv2`` -> ``ghostnetv2``);
    the converter for official checkpoints is looked up in that module.
    """
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ValueError(f"model '{name}' is registered twice ({_MODELS[name].__module__} and {fn.__module__})")
    _MODELS[name] = fn
    _FAMILY[name] = fn.__module__.rsplit(".", 1)[-1]
    return fn


def list_models(pattern: str = "*") -> List[str]:
    """Sorted names of registered models matching a shell-style ``pattern``."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def is_model(name: str) -> bool:
    return name in _MODELS


def model_family(name: str) -> str:
    _check_name(name)
    return _FAMILY[name]


def model_module(name: str):
    """The module that defines model ``name`` (holds its converter, if any)."""
    _check_name(name)
    return sys.modules[_MODELS[name].__module__]


def _check_name(name: str) -> None:
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"Unknown model '{name}'.{hint} ({len(_MODELS)} models are registered; "
            f"see `mindcv-ext list` or mindcv_ext.list_models())")


def create_model(name: str, num_classes: int = 1000, pretrained_ckpt: Optional[str] = None,
                 in_channels: int = 3, **kwargs):
    """Build a registered model; optionally load a MindSpore checkpoint into it."""
    _check_name(name)
    net = _MODELS[name](num_classes=num_classes, in_channels=in_channels, **kwargs)
    if pretrained_ckpt:
        from mindcv_ext.engine.checkpoint import load_weights
        if not os.path.isfile(pretrained_ckpt):
            raise FileNotFoundError(f"pretrained_ckpt '{pretrained_ckpt}' does not exist")
        load_weights(net, pretrained_ckpt)
    return net
