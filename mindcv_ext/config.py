"""Configs: YAML with nested sections, ``--set a.b=c`` overrides, validation against a schema.

Every key a config may hold is declared here with its type and default; an unknown or misspelt
key, a value of the wrong type, or a missing file is a ``ConfigError`` naming the key, raised
before any work starts. A task module can declare its own section with ``register_section``.
"""
import copy
import difflib
import os
from typing import Any, Dict, Iterable, Optional

import yaml

NoneType = type(None)
ANY_DICT = dict

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
    },
    "sched": {
        "name": ((str,), "cosine"),
        "warmup_epochs": ((float,), 0.0),
        "warmup_lr_init": ((float,), 1e-6),
        "min_lr": ((float,), 1e-6),
        "decay_epochs": ((float,), 30.0),
        "decay_rate": ((float,), 0.1),
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
TOP_LEVEL = {"task": ((str,), "classification")}
CHOICES = {
    ("optim", "name"): ("sgd", "momentum", "adamw", "adam", "rmsprop"),
    ("sched", "name"): ("cosine", "step", "exponential", "constant"),
    ("loss", "name"): ("ce", "soft_target"),
    ("train", "amp_level"): ("O0", "O1", "O2", "O3"),
    ("export", "format"): ("MINDIR", "ONNX"),
    ("model", "kernels"): ("auto", "custom", "composite"),
    ("data", "interpolation"): ("bilinear", "bicubic", "nearest", "area"),
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


def register_section(name: str, keys: Dict[str, tuple], choices: Optional[Dict[str, Iterable]] = None) -> None:
    """Declare a section for a task module (``{key: ((types...), default)}``)."""
    if name in SCHEMA and SCHEMA[name] != keys:
        raise ValueError(f"config section '{name}' is declared twice")
    SCHEMA[name] = keys
    for key, allowed in (choices or {}).items():
        CHOICES[(name, key)] = tuple(allowed)


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _type_ok(value: Any, types: tuple) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _yaml_float(value: Any, types: tuple) -> Any:
    """PyYAML reads '1e-4' (no dot, no sign on the exponent) as a string; accept it as a float."""
    if float in types and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _type_names(types: tuple) -> str:
    return " or ".join("null" if t is NoneType else t.__name__ for t in types)


def validate(raw: dict, source: str = "config") -> Config:
    """Check ``raw`` against the schema and fill in defaults."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a mapping of sections, got {type(raw).__name__}")
    out = Config()
    for key, value in raw.items():
        if key in TOP_LEVEL:
            continue
        if key not in SCHEMA:
            raise ConfigError(f"{source}: unknown section '{key}'{_suggest(key, list(SCHEMA) + list(TOP_LEVEL))}")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: section '{key}' must be a mapping, got {type(value).__name__}")
    for key, (types, default) in TOP_LEVEL.items():
        value = raw.get(key, default)
        if not _type_ok(value, types):
            raise ConfigError(f"{source}: '{key}' must be {_type_names(types)}, got {value!r}")
        out[key] = value
    for section, keys in SCHEMA.items():
        given = raw.get(section) or {}
        sec = Config()
        for key, value in given.items():
            if key not in keys:
                raise ConfigError(f"{source}: unknown key '{section}.{key}'{_suggest(key, keys)}")
        for key, (types, default) in keys.items():
            value = _yaml_float(given.get(key, copy.deepcopy(default)), types)
            if not _type_ok(value, types):
                raise ConfigError(f"{source}: '{section}.{key}' must be {_type_names(types)}, "
                                  f"got {type(value).__name__} {value!r}")
            if isinstance(value, int) and not isinstance(value, bool) and float in types and int not in types:
                value = float(value)
            allowed = CHOICES.get((section, key))
            if allowed and value is not None and value not in allowed:
                raise ConfigError(f"{source}: '{section}.{key}' is {value!r}; choose one of {', '.join(allowed)}"
                                  f"{_suggest(str(value), allowed)}")
            sec[key] = value
        out[section] = sec
    return out


def parse_override(text: str):
    """``a.b=c`` -> (["a", "b"], parsed c); values are read as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    path, value = text.split("=", 1)
    keys = [k for k in path.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override '{text}' names no key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
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


def load_config(path: Optional[str], overrides: Iterable[str] = ()) -> Config:
    """Read a YAML file (or start empty when ``path`` is None), apply overrides, validate."""
    raw = {}
    if path is not None:
        if not os.path.isfile(path):
            raise ConfigError(f"config file '{path}' does not exist")
        with open(path, "r", encoding="utf-8") as fh:
            try:
                raw = yaml.safe_load(fh) or {}
            except yaml.YAMLError as err:
                raise ConfigError(f"{path}: not valid YAML ({err})") from err
    return validate(apply_overrides(raw, overrides), source=path or "config")


def save_config(cfg: Config, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(cfg.to_dict(), fh, sort_keys=False)
