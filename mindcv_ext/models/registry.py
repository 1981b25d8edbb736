"""The one model registry: ``register_model``, ``create_model``, ``list_models``, family hooks.

A family file (``mindcv_ext/models/<family>.py``) registers its builders and declares what the
rest of the package may ask of the family in one :class:`Family` object named ``FAMILY``:
the converter for official checkpoints, parameter-group filters, training callbacks, a model-size
function and the default input size and normalisation (``default_cfg``).
"""
import dataclasses
import difflib
import fnmatch
import inspect
import re
import sys
from typing import Callable, Dict, List, Optional

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_MODELS: Dict[str, Callable] = {}


@dataclasses.dataclass
class Family:
    """What a model family offers beyond its builders (all optional)."""
    converter: Optional[Callable] = None         # (official state dict, model name) -> our state dict
    param_filters: Dict[str, Callable[[str], bool]] = dataclasses.field(default_factory=dict)
    train_callbacks: Optional[Callable] = None   # cfg -> [callback(task, epoch, record)]
    model_size: Optional[Callable] = None        # net -> storage size in bits (binary families)
    kernels: bool = False                        # builders take kernels= (custom operators inside)
    input_size: int = 224                        # default square input of every model of the family
    input_sizes: Dict[str, int] = dataclasses.field(default_factory=dict)  # per-model overrides
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    crop_pct: float = 0.875
    paper: str = ""
    status: str = "tested"
    example_inputs: Optional[Callable] = None    # net -> tuple of Tensors, for models that take no image


_DEFAULT_FAMILY = Family()


class UnknownModelError(KeyError):
    """Raised for a model name that is not registered."""

    def __str__(self):  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def register_model(fn: Callable) -> Callable:
    """Decorator: register a builder ``fn(num_classes=..., in_channels=..., **kw) -> nn.Cell`` under
    its name; its family is the module it is defined in."""
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ValueError(f"model '{name}' is registered twice ({_MODELS[name].__module__} and {fn.__module__})")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> List[str]:
    """Sorted names of registered models matching a shell-style ``pattern``."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def is_model(name: str) -> bool:
    return name in _MODELS


def model_family(name: str) -> str:
    """The family name (the module name: ``ghostnetv2``, ``vig``, ...)."""
    _check_name(name)
    return _MODELS[name].__module__.rsplit(".", 1)[-1]


def family_hooks(name: str) -> Family:
    """The :class:`Family` declared by the module that defines model ``name``."""
    _check_name(name)
    return getattr(sys.modules[_MODELS[name].__module__], "FAMILY", _DEFAULT_FAMILY)


def model_builder(name: str) -> Callable:
    _check_name(name)
    return _MODELS[name]


def default_cfg(name: str) -> dict:
    """timm-style metadata: input size, normalisation, eval crop, default classes, family, paper."""
    fam = family_hooks(name)
    size = fam.input_sizes.get(name, fam.input_size)
    default_classes = inspect.signature(_MODELS[name]).parameters.get("num_classes")
    return {"input_size": (3, size, size), "mean": tuple(fam.mean), "std": tuple(fam.std), "crop_pct": fam.crop_pct,
            "num_classes": None if default_classes is None else default_classes.default,
            "family": model_family(name), "paper": fam.paper, "kernels": fam.kernels}


def _check_name(name: str) -> None:
    if name not in _MODELS:
        close = difflib.get_close_matches(str(name), list(_MODELS), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"Unknown model '{name}'.{hint} ({len(_MODELS)} models are registered; "
            f"see `mindcv-ext list` or mindcv_ext.list_models())")


class ModelArgumentError(ValueError, TypeError):
    """A keyword argument a model's builder does not take (a TypeError of the builder, named)."""


def _argument_names(module) -> set:
    """Every parameter name of the functions and classes defined in a family module."""
    names = set()
    for obj in vars(module).values():
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        target = obj.__init__ if inspect.isclass(obj) else obj
        if callable(target):
            try:
                names.update(p for p in inspect.signature(target).parameters if p not in ("self", "kwargs", "kw"))
            except (TypeError, ValueError):
                continue
    return names


def _bad_argument(name: str, err: TypeError) -> ModelArgumentError:
    text = str(err)
    match = re.search(r"argument[s]?(?:\(s\))? '?([A-Za-z_][A-Za-z0-9_]*)", text)
    hint = ""
    if match:
        close = difflib.get_close_matches(match.group(1), sorted(_argument_names(sys.modules[_MODELS[name].__module__])),
                                          n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ModelArgumentError(f"model '{name}': {text.splitlines()[0]}{hint}")


def create_model(name: str, num_classes: int = 1000, pretrained_ckpt: Optional[str] = None,
                 in_channels: int = 3, kernels: str = "auto", **kwargs):
    """Build a registered model; optionally load a MindSpore checkpoint into it (strictly).

    ``kernels`` (auto | custom | composite) is passed down to families with custom operators;
    building a model never changes a process-wide setting.
    """
    from ..layers.helpers import parse_kernels
    _check_name(name)
    parse_kernels(kernels)
    if family_hooks(name).kernels:
        kwargs["kernels"] = kernels
    elif kernels == "custom":
        raise ValueError(f"model '{name}' has no custom kernels; use kernels: auto or composite")
    try:
        net = _MODELS[name](num_classes=num_classes, in_channels=in_channels, **kwargs)
    except TypeError as err:
        if "argument" not in str(err):
            raise
        raise _bad_argument(name, err) from err
    if pretrained_ckpt:
        from ..utils.checkpoint import load_weights
        load_weights(net, pretrained_ckpt)
    return net


def build_model(model_cfg, num_classes: Optional[int] = None):
    """The model of a config's ``model:`` section (name, classes, channels, drop rates, kernels,
    kwargs, pretrained weights with the chosen loading mode)."""
    from ..config import ConfigError
    if not model_cfg.name:
        raise ConfigError("the config has no 'model.name'")
    kwargs = dict(model_cfg.kwargs)
    for key in ("drop_rate", "drop_path_rate"):
        if model_cfg[key] is not None:
            kwargs[key] = model_cfg[key]
    net = create_model(model_cfg.name, num_classes=num_classes or model_cfg.num_classes,
                       in_channels=model_cfg.in_channels, kernels=model_cfg.kernels, **kwargs)
    if model_cfg.pretrained_ckpt:
        from ..utils.checkpoint import load_weights
        from .pretrain_surgery import adapt_pretrain_state
        report = load_weights(net, model_cfg.pretrained_ckpt, mode=model_cfg.pretrained_mode,
                              key_map=model_cfg.pretrained_key_map, adapt=adapt_pretrain_state)
        if report:
            print(f"loaded {len(report['loaded'])} tensors from {model_cfg.pretrained_ckpt} "
                  f"({model_cfg.pretrained_mode}); skipped from the checkpoint: "
                  f"{', '.join(report['skipped']) or 'none'}; left at initialisation: "
                  f"{', '.join(report['not_in_checkpoint']) or 'none'}", flush=True)
    return net
