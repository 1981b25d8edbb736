"""Checkpoints: atomic writes, clear errors for corrupt files, full training state for resume."""
import os
import tempfile
from typing import Dict, Optional

import numpy as np
import mindspore as ms
from mindspore import nn

OPTIM_PREFIX, EMA_PREFIX, META_PREFIX = "optim.", "ema.", "meta."


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupt, or does not fit the model."""


def _atomic_save(save_obj, path: str, append_dict: Optional[dict] = None) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".ckpt", dir=folder)
    os.close(fd)
    try:
        ms.save_checkpoint(save_obj, tmp, append_dict=append_dict, crc_check=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_param_dict(params: Dict[str, np.ndarray], path: str) -> None:
    """Save ``{name: array}`` as a MindSpore checkpoint, atomically."""
    _atomic_save([{"name": k, "data": ms.Tensor(np.asarray(v))} for k, v in params.items()], path)


def save_weights(net: nn.Cell, path: str) -> None:
    _atomic_save(net, path)


def read_checkpoint(path: str) -> Dict[str, ms.Parameter]:
    """Load a checkpoint file into ``{name: Parameter}``, refusing missing or corrupt files clearly."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint '{path}' is empty (an interrupted write?)")
    try:
        return ms.load_checkpoint(path, crc_check=True)
    except Exception as err:  # mindspore raises several types for damaged files
        raise CheckpointError(f"checkpoint '{path}' is corrupt or not a MindSpore checkpoint: "
                              f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from err


def _split(params: Dict[str, ms.Parameter]):
    weights, optim, ema, meta = {}, {}, {}, {}
    for name, value in params.items():
        for prefix, bucket in ((OPTIM_PREFIX, optim), (EMA_PREFIX, ema), (META_PREFIX, meta)):
            if name.startswith(prefix):
                bucket[name[len(prefix):]] = value
                break
        else:
            weights[name] = value
    return weights, optim, ema, meta


def load_into(cell: nn.Cell, params: Dict[str, ms.Parameter], what: str, path: str) -> None:
    """Load ``params`` into ``cell``; every parameter of the cell must be found with its shape."""
    own = cell.parameters_dict()
    missing = [n for n in own if n not in params]
    bad = [f"{n} {tuple(params[n].shape)} vs {tuple(p.shape)}" for n, p in own.items()
           if n in params and tuple(params[n].shape) != tuple(p.shape)]
    if missing or bad:
        detail = (f"missing {len(missing)}: {', '.join(missing[:10])}" if missing else "") + \
                 (f" shape mismatch: {'; '.join(bad[:10])}" if bad else "")
        raise CheckpointError(f"checkpoint '{path}' does not fit the {what}: {detail.strip()}")
    _assign(own, params)


def _assign(own: Dict[str, ms.Parameter], values: Dict[str, ms.Parameter]) -> None:
    """Copy values into parameters by exact name (mindspore's non-strict loader matches by suffix,
    which would pour optimizer moments such as 'accum.x' into the weight 'x')."""
    for name, param in own.items():
        value = values[name]
        param.set_data(value.data if isinstance(value, ms.Parameter) else value)


def load_weights(net: nn.Cell, path: str, use_ema: bool = False) -> None:
    """Load model weights from a weights-only or a full training checkpoint."""
    weights, _, ema, _ = _split(read_checkpoint(path))
    if use_ema and ema:
        weights = {**weights, **ema}
    load_into(net, weights, "model", path)


def save_training_state(path: str, net: nn.Cell, optimizer: nn.Cell, ema_params: Optional[dict] = None,
                        meta: Optional[dict] = None):
    """Model, optimizer (moments, step, lr), EMA weights and loop counters in one atomic file."""
    net_names = set(net.parameters_dict())
    entries = [{"name": p.name, "data": p} for p in net.get_parameters()]
    entries += [{"name": OPTIM_PREFIX + name, "data": p} for name, p in optimizer.parameters_dict().items()
                if name not in net_names]
    entries += [{"name": EMA_PREFIX + name, "data": p} for name, p in (ema_params or {}).items()]
    entries += [{"name": META_PREFIX + k, "data": ms.Tensor(np.asarray(v, np.float64))} for k, v in (meta or {}).items()]
    _atomic_save(entries, path)


def load_training_state(path: str, net: nn.Cell, optimizer: nn.Cell, ema=None) -> dict:
    """Restore what ``save_training_state`` wrote; returns the meta counters."""
    weights, optim, ema_w, meta = _split(read_checkpoint(path))
    if not meta:
        raise CheckpointError(f"checkpoint '{path}' holds weights only, no training state to resume from")
    load_into(net, weights, "model", path)
    own = optimizer.parameters_dict()
    net_names = set(net.parameters_dict())
    optim_own = {n: p for n, p in own.items() if n not in net_names}
    missing = [n for n in optim_own if n not in optim]
    if missing:
        raise CheckpointError(f"checkpoint '{path}' lacks optimizer state for: {', '.join(missing[:10])} "
                              "(was it written with another optimizer?)")
    _assign(optim_own, optim)
    if ema is not None:
        if not ema_w:
            raise CheckpointError(f"checkpoint '{path}' has no EMA weights but train.ema is on")
        ema.load(ema_w)
    return {k: float(v.asnumpy()) for k, v in meta.items()}
