"""Training checkpoints: model, every optimizer's state, EMA weights, counters and history, in one
atomic file (``last.ckpt``), restored exactly on resume.

Optimizer hyperparameters held as parameters (the per-step lr schedule, momentum) are not
restored: they come from the config of the resumed run, so more epochs or a lower ``optim.lr``
take effect.
"""
from typing import Dict, Optional

import mindspore as ms
from mindspore import nn

from ..utils.checkpoint import (EMA_PREFIX, META_PREFIX, OPTIM_PREFIX, CheckpointError, assign, atomic_save,  # noqa: F401
                                load_into,
                                load_weights, meta_entry, read_checkpoint, read_meta, save_param_dict, save_weights,
                                split_state, state_prefixes)


def _is_hyperparameter(name: str) -> bool:
    return name.startswith("learning_rate") or name == "momentum"


def _prefix(key: str) -> str:
    return OPTIM_PREFIX if key == "optim" else f"{key}."


def _own_state(opt: nn.Cell, taken: set) -> Dict[str, ms.Parameter]:
    return {n: p for n, p in opt.parameters_dict().items() if n not in taken and not _is_hyperparameter(n)}


def save_training_state(path: str, net: nn.Cell, optimizers: Dict[str, nn.Cell], ema_params: Optional[dict] = None,
                        meta: Optional[dict] = None) -> None:
    """``optimizers``: ``{name: optimizer}``; ``optim`` is stored as ``optim.<param>``, any other
    name as ``<name>.<param>`` (a NAS search keeps ``optim`` and ``arch_optim``)."""
    taken = set(net.parameters_dict())
    entries = [{"name": p.name, "data": p} for p in net.get_parameters()]
    for key, opt in optimizers.items():
        own = _own_state(opt, taken)
        entries += [{"name": _prefix(key) + n, "data": p} for n, p in own.items()]
    entries += [{"name": EMA_PREFIX + n, "data": p} for n, p in (ema_params or {}).items()]
    meta = dict(meta or {}, state_prefixes=[_prefix(k) for k in optimizers])
    entries.append(meta_entry(meta))
    atomic_save(entries, path)


def load_training_state(path: str, net: nn.Cell, optimizers: Dict[str, nn.Cell], ema=None) -> dict:
    """Restore what :func:`save_training_state` wrote; returns the meta dict (epoch, history, ...)."""
    params = read_checkpoint(path)
    meta = read_meta(params)
    if not meta:
        raise CheckpointError(f"checkpoint '{path}' holds weights only (or was written by an older version), "
                              "no training state to resume from")
    weights, parts = split_state(params, state_prefixes(params))
    load_into(net, weights, "model", path)
    taken = set(net.parameters_dict())
    for key, opt in optimizers.items():
        saved = parts.get(_prefix(key), {})
        own = _own_state(opt, taken)
        missing = [n for n in own if n not in saved]
        bad = [f"{n} {tuple(saved[n].shape)} vs {tuple(p.shape)}" for n, p in own.items()
               if n in saved and tuple(saved[n].shape) != tuple(p.shape)]
        if missing or bad:
            raise CheckpointError(f"checkpoint '{path}' does not fit optimizer '{key}': "
                                  + (f"no state for {', '.join(missing[:8])} (written with another optimizer?) "
                                     if missing else "") + (f"shape mismatch {'; '.join(bad[:4])}" if bad else ""))
        assign(own, saved)
    ema_w = parts.get(EMA_PREFIX, {})
    if ema is not None:
        if not ema_w:
            raise CheckpointError(f"checkpoint '{path}' has no EMA weights but train.ema is on")
        ema.load(ema_w)
    return meta
