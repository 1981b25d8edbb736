"""Configs: YAML with nested sections, ``--set a.b=c`` overrides, validation against a schema.

Every core key is declared here with its type, default and range; a task declares its own
sections and extra data keys (``mindcv_ext.tasks``). Loading runs in two phases
(:func:`mindcv_ext.tasks.load_config`): :func:`read_raw` reads YAML + overrides, the task named by
``task:`` is imported, then :func:`validate` checks the raw mapping against the core schema plus
that task's sections. An unknown or misspelt key, a value of the wrong type or out of range, or a
missing file is a ``ConfigError`` naming the key, raised before any work starts.
"""
import copy
import difflib
import math
import os
import re
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import yaml

NoneType = type(None)

# section -> key -> (allowed types, default). A float key also takes an int.
SCHEMA: Dict[str, Dict[str, tuple]] = {
    "model": {
        "name": ((str, NoneType), None),
        "num_classes": ((int,), 1000),
        "in_channels": ((int,), 3),
        "drop_rate": ((float, NoneType), None),       # null: the model's own default
        "drop_path_rate": ((float, NoneType), None),
        "kernels": ((str,), "auto"),
        "pretrained_ckpt": ((str, NoneType), None),
        "pretrained_mode": ((str,), "strict"),       # strict | backbone | skip_head | key_map
        "pretrained_key_map": ((dict, NoneType), None),  # {old prefix: new prefix} for key_map
        "kwargs": ((dict,), {}),
    },
    "data": {
        "dataset": ((str,), "digits"),
        "root": ((str, NoneType), None),
        "image_size": ((int,), 224),
        "batch_size": ((int,), 32),
        "num_workers": ((int,), 1),
        "val_split": ((float,), 0.2),
        "mean": ((list,), [0.485, 0.456, 0.406]),
        "std": ((list,), [0.229, 0.224, 0.225]),
        "auto_augment": ((str, NoneType), None),
        "re_prob": ((float,), 0.0),
        "mixup": ((float,), 0.0),
        "cutmix": ((float,), 0.0),
        "hflip": ((float,), 0.5),
        "scale": ((list,), [0.08, 1.0]),
        "interpolation": ((str,), "bilinear"),
        "crop_pct": ((float,), 0.875),
        "max_samples": ((int, NoneType), None),
        "skip_bad_images": ((bool,), False),
        "crop_mode": ((str,), "rrc"),      # rrc (RandomResizedCrop) | pad_crop (CIFAR: pad 4 + random crop)
        "cutout": ((int,), 0),             # side of the Cutout square (16 for DARTS retraining); 0 = off
    },
    "train": {
        "epochs": ((int,), 10),
        "seed": ((int,), 42),
        "output_dir": ((str,), "runs/default"),
        "amp_level": ((str,), "O0"),
        "clip_grad": ((float, NoneType), None),
        "ema": ((bool,), False),
        "ema_decay": ((float,), 0.9998),
        "log_interval": ((int,), 10),
        "val_interval": ((int,), 1),
        "max_steps_per_epoch": ((int, NoneType), None),
        "progress": ((bool,), True),
        "jit": ((bool,), True),
        "ckpt_interval": ((int,), 1),
        "monitor": ((str, NoneType), None),  # "<metric>:max|min"; null: the task's default
    },
    "optim": {
        "name": ((str,), "sgd"),
        "lr": ((float,), 0.1),
        "momentum": ((float,), 0.9),
        "weight_decay": ((float,), 1e-4),
        "nesterov": ((bool,), False),
        "eps": ((float,), 1e-8),
        "betas": ((list,), [0.9, 0.999]),
        "filter_bias_and_bn": ((bool,), True),
        "extra_group": ((dict, NoneType), None),
        "layer_decay": ((float, NoneType), None),  # layer-wise lr decay (ViT / Swin, BEiT rule); null = off
    },
    "sched": {
        "name": ((str,), "cosine"),
        "warmup_epochs": ((float,), 0.0),
        "warmup_lr_init": ((float,), 1e-6),
        "min_lr": ((float,), 1e-6),
        "decay_epochs": ((float,), 30.0),
        "decay_rate": ((float,), 0.1),
        "per_epoch": ((bool,), False),     # the schedule moves once per epoch (official CIFAR scripts)
    },
    "loss": {
        "name": ((str,), "ce"),
        "label_smoothing": ((float,), 0.0),
    },
    "export": {
        "format": ((str,), "MINDIR"),
        "input_shape": ((list, NoneType), None),
        "file_name": ((str, NoneType), None),
    },
    "dist": {
        "enabled": ((bool, NoneType), None),   # null: on when launched with several workers (msrun)
        "save_rank_weights": ((bool,), False),  # every rank writes rank_<r>.ckpt at the end (sync checks)
    },
}
CORE_SECTIONS = tuple(SCHEMA)
TOP_LEVEL = {"task": ((str,), "classification")}
CHOICES = {
    ("optim", "name"): ("sgd", "momentum", "adamw", "adamw_nobias", "adam", "rmsprop"),
    ("sched", "name"): ("cosine", "step", "exponential", "constant"),
    ("loss", "name"): ("ce", "soft_target"),
    ("train", "amp_level"): ("O0", "O1", "O2", "O3"),
    ("export", "format"): ("MINDIR", "ONNX"),
    ("model", "kernels"): ("auto", "custom", "composite"),
    ("data", "interpolation"): ("bilinear", "bicubic", "nearest", "area"),
    ("model", "pretrained_mode"): ("strict", "backbone", "skip_head", "key_map"),
    ("data", "crop_mode"): ("rrc", "pad_crop"),
}


def _between(lo=None, hi=None, lo_open=False, hi_open=False) -> Tuple[Callable[[float], bool], str]:
    def ok(v):
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if lo is not None and (v <= lo if lo_open else v < lo):
            return False
        return not (hi is not None and (v >= hi if hi_open else v > hi))
    left = "" if lo is None else ("> " if lo_open else ">= ") + f"{lo:g}"
    right = "" if hi is None else ("< " if hi_open else "<= ") + f"{hi:g}"
    return ok, "a finite number " + " and ".join(t for t in (left, right) if t)


# (section, key) -> (check, what it must be); None values pass (nullable keys).
RANGES = {
    ("model", "num_classes"): _between(1), ("model", "in_channels"): _between(1),
    ("model", "drop_rate"): _between(0, 1, hi_open=True), ("model", "drop_path_rate"): _between(0, 1, hi_open=True),
    ("data", "image_size"): _between(1), ("data", "batch_size"): _between(1), ("data", "num_workers"): _between(1),
    ("data", "val_split"): _between(0, 1, hi_open=True), ("data", "re_prob"): _between(0, 1),
    ("data", "mixup"): _between(0), ("data", "cutmix"): _between(0), ("data", "hflip"): _between(0, 1),
    ("data", "crop_pct"): _between(0, 1, lo_open=True), ("data", "max_samples"): _between(1),
    ("data", "cutout"): _between(0),
    ("train", "epochs"): _between(1), ("train", "clip_grad"): _between(0, lo_open=True),
    ("train", "ema_decay"): _between(0, 1, lo_open=True, hi_open=True), ("train", "log_interval"): _between(1),
    ("train", "val_interval"): _between(1), ("train", "max_steps_per_epoch"): _between(1),
    ("train", "ckpt_interval"): _between(1),
    ("optim", "lr"): _between(0, lo_open=True), ("optim", "momentum"): _between(0, 1, hi_open=True),
    ("optim", "weight_decay"): _between(0), ("optim", "eps"): _between(0, lo_open=True),
    ("sched", "warmup_epochs"): _between(0), ("sched", "warmup_lr_init"): _between(0), ("sched", "min_lr"): _between(0),
    ("sched", "decay_epochs"): _between(0, lo_open=True), ("sched", "decay_rate"): _between(0, lo_open=True),
    ("loss", "label_smoothing"): _between(0, 1, hi_open=True),
}


class ConfigError(ValueError):
    """A config problem, naming the offending key."""


class Config(dict):
    """A dict whose keys read as attributes (``cfg.optim.lr``)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as err:
            raise AttributeError(f"config has no key '{key}'") from err

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, Config) else copy.deepcopy(v) for k, v in self.items()}


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _type_ok(value: Any, types: tuple) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _type_names(types: tuple) -> str:
    return " or ".join("null" if t is NoneType else t.__name__ for t in types)


def task_schema(sections: Optional[Dict[str, dict]] = None, data_keys: Optional[dict] = None,
                choices: Optional[Dict[tuple, Iterable]] = None, ranges: Optional[dict] = None):
    """The core schema extended by a task: its own ``sections`` and extra ``data_keys``."""
    schema = {name: dict(keys) for name, keys in SCHEMA.items()}
    for name, keys in (sections or {}).items():
        if name in CORE_SECTIONS:
            raise ValueError(f"a task cannot redeclare the core section '{name}'")
        schema[name] = dict(keys)
    clash = set(data_keys or {}) & set(SCHEMA["data"])
    if clash:
        raise ValueError(f"task data keys {sorted(clash)} are core data keys already")
    schema["data"].update(data_keys or {})
    all_choices = dict(CHOICES)
    all_choices.update({k: tuple(v) for k, v in (choices or {}).items()})
    all_ranges = dict(RANGES)
    all_ranges.update(ranges or {})
    return schema, all_choices, all_ranges


def validate(raw: dict, source: str = "config", schema=None) -> Config:
    """Check ``raw`` against ``schema`` (``task_schema(...)``; default: the core sections only) and
    fill in defaults. The result holds exactly the schema's sections."""
    schema, choices, ranges = schema or task_schema()
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a mapping of sections, got {type(raw).__name__}")
    out = Config()
    task = raw.get("task", TOP_LEVEL["task"][1])
    for key, value in raw.items():
        if key in TOP_LEVEL:
            continue
        if key not in schema:
            raise ConfigError(f"{source}: unknown section '{key}' for task '{task}'"
                              f"{_suggest(key, list(schema) + list(TOP_LEVEL))}")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: section '{key}' must be a mapping, got {type(value).__name__}")
    for key, (types, default) in TOP_LEVEL.items():
        value = raw.get(key, default)
        if not _type_ok(value, types):
            raise ConfigError(f"{source}: '{key}' must be {_type_names(types)}, got {value!r}")
        out[key] = value
    for section, keys in schema.items():
        given = raw.get(section) or {}
        sec = Config()
        for key, value in given.items():
            if key not in keys:
                raise ConfigError(f"{source}: unknown key '{section}.{key}'{_suggest(key, keys)}")
        for key, (types, default) in keys.items():
            value = given.get(key, copy.deepcopy(default))
            if not _type_ok(value, types):
                raise ConfigError(f"{source}: '{section}.{key}' must be {_type_names(types)}, "
                                  f"got {type(value).__name__} {value!r}")
            if isinstance(value, int) and not isinstance(value, bool) and float in types and int not in types:
                value = float(value)
            allowed = choices.get((section, key))
            if allowed and value is not None and value not in allowed:
                raise ConfigError(f"{source}: '{section}.{key}' is {value!r}; choose one of {', '.join(allowed)}"
                                  f"{_suggest(str(value), allowed)}")
            check = ranges.get((section, key))
            if check and value is not None and not isinstance(value, bool) and not check[0](value):
                raise ConfigError(f"{source}: '{section}.{key}' is {value!r}; it must be {check[1]}")
            sec[key] = value
        out[section] = sec
    return out


class _Loader(yaml.SafeLoader):
    """Safe YAML that reads ``1e-4`` as a float (YAML 1.1 wants a dot: ``1.0e-4``), so a quoted
    ``"0.1"`` stays a string and is refused where a number is expected."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def yaml_load(text_or_stream):
    return yaml.load(text_or_stream, Loader=_Loader)


def parse_override(text: str):
    """``a.b=c`` -> (["a", "b"], parsed c); values are read as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    path, value = text.split("=", 1)
    keys = [k for k in path.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override '{text}' names no key")
    try:
        parsed = yaml_load(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override '{text}': value is not valid YAML ({err})") from err
    return keys, parsed


def apply_overrides(raw: dict, overrides: Iterable[str]) -> dict:
    raw = copy.deepcopy(raw)
    for text in overrides or ():
        keys, value = parse_override(text)
        node = raw
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{text}': '{key}' is not a section")
        node[keys[-1]] = value
    return raw


def read_raw(path: Optional[str], overrides: Iterable[str] = ()) -> dict:
    """Phase one: the YAML file (or an empty mapping when ``path`` is None) with overrides applied."""
    raw = {}
    if path is not None:
        if not os.path.isfile(path):
            raise ConfigError(f"config file '{path}' does not exist")
        with open(path, "r", encoding="utf-8") as fh:
            try:
                raw = yaml_load(fh) or {}
            except yaml.YAMLError as err:
                raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(raw).__name__}")
    return apply_overrides(raw, overrides)


def save_config(cfg: Config, path: str) -> None:
    """Write the resolved config atomically (a temporary file renamed over ``path``)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    with open(tmp, "w", encoding="utf-8") as fh:
        yaml.safe_dump(cfg.to_dict(), fh, sort_keys=False)
    os.replace(tmp, path)
