"""The task registry and the two-phase config loader.

A task is a :class:`~mindcv_ext.tasks.base.Task` subclass registered with ``@register_task``.
Built-in tasks are imported lazily by name; ``task: package.module:ClassName`` imports a task
defined anywhere else.
"""
import difflib
import importlib
from typing import Dict, Iterable, Optional

from ..config import Config, ConfigError, read_raw, task_schema, validate

_TASKS: Dict[str, type] = {}
BUILTIN = {
    "classification": "mindcv_ext.tasks.classification",
    "adder_ptq": "mindcv_ext.tasks.adder_ptq",
    "segmentation": "mindcv_ext.tasks.segmentation",
    "instance_seg3d": "mindcv_ext.tasks.instance_seg3d",
    "mim_pretrain": "mindcv_ext.tasks.mim_pretrain",
    "nas_search": "mindcv_ext.tasks.nas_search",
    "sfda": "mindcv_ext.tasks.sfda",
    "translation": "mindcv_ext.tasks.translation",
}


def register_task(cls):
    """Class decorator: register a task under ``cls.name``."""
    if not getattr(cls, "name", None):
        raise ValueError(f"task class {cls.__name__} has no name")
    if cls.name in _TASKS and _TASKS[cls.name] is not cls:
        raise ValueError(f"task '{cls.name}' is registered twice")
    _TASKS[cls.name] = cls
    return cls


def list_tasks():
    return sorted(set(_TASKS) | set(BUILTIN))


def get_task(name: str) -> type:
    """The task class named ``name`` (importing its module on first use)."""
    if name in _TASKS:
        return _TASKS[name]
    if name in BUILTIN:
        importlib.import_module(BUILTIN[name])
        return _TASKS[name]
    if ":" in str(name):
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"task '{name}' cannot be imported: {err}") from err
        return register_task(cls) if cls.name not in _TASKS else _TASKS[cls.name]
    close = difflib.get_close_matches(str(name), list_tasks(), n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise ConfigError(f"unknown task '{name}'{hint}; known tasks: {', '.join(list_tasks())}")


def load_config(path: Optional[str], overrides: Iterable[str] = (), task: Optional[str] = None) -> Config:
    """Read YAML + ``--set`` overrides, import the task named by ``task:`` (or ``task``), then
    validate against the core sections plus that task's sections and data keys."""
    raw = read_raw(path, overrides)
    if task is not None:
        raw["task"] = task
    name = raw.get("task", "classification")
    if not isinstance(name, str):
        raise ConfigError(f"{path or 'config'}: 'task' must be a task name, got {name!r}")
    cls = get_task(name)
    schema = task_schema(cls.sections, cls.data_keys, cls.choices, cls.ranges)
    return validate(raw, source=path or "config", schema=schema)
