"""``mindcv-ext demo NAME``: each method's CPU demonstration (train on embedded or generated data,
evaluate, write pictures) that prints its headline metrics as one JSON line last."""
import difflib
import importlib
from typing import Callable, Dict

_DEMOS: Dict[str, Callable] = {}
_DESCRIPTIONS: Dict[str, str] = {}
BUILTIN = {
    "addernet_ptq": "mindcv_ext.tasks.demo_runs",
    "adabin": "mindcv_ext.tasks.demo_runs",
    "tokenfusion": "mindcv_ext.tasks.demo_tokenfusion",
    "maskgroup": "mindcv_ext.tasks.instance_seg3d",
    "fastmim": "mindcv_ext.tasks.demo_fastmim",
    "sfda": "mindcv_ext.tasks.sfda",
    "dropnas": "mindcv_ext.tasks.nas_search",
}


def register_demo(name: str, description: str):
    """Decorator for ``fn(out_dir: str, quick: bool) -> dict`` (the headline metrics)."""
    def deco(fn):
        _DEMOS[name], _DESCRIPTIONS[name] = fn, description
        return fn
    return deco


def list_demos() -> Dict[str, str]:
    for module in set(BUILTIN.values()):
        importlib.import_module(module)
    return dict(sorted(_DESCRIPTIONS.items()))


def get_demo(name: str) -> Callable:
    if name not in _DEMOS and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in _DEMOS:
        from ..config import ConfigError
        known = list_demos()
        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
        raise ConfigError(f"unknown demo '{name}'" + (f" (did you mean {', '.join(close)}?)" if close else "")
                          + f"; see `mindcv-ext demo --list` ({', '.join(known)})")
    return _DEMOS[name]
