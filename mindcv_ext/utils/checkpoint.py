"""Checkpoint files: atomic writes, clear errors for corrupt or foreign files, strict or partial
loading of model weights.

A training checkpoint (``mindcv_ext.engine.checkpoint``) holds the model weights under their own
names and everything else under a prefix (``optim.``, ``ema.``, ``meta.``, ...); the helpers here
read the model part of any checkpoint.
"""
import json
import os
import tempfile
from typing import Dict, List, Optional

import numpy as np
import mindspore as ms
from mindspore import nn

OPTIM_PREFIX, EMA_PREFIX, META_PREFIX = "optim.", "ema.", "meta."
STATE_PREFIXES = (OPTIM_PREFIX, EMA_PREFIX, META_PREFIX)
LOAD_MODES = ("strict", "backbone", "skip_head", "key_map")


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupt, or does not fit the model."""


def atomic_save(save_obj, path: str, append_dict: Optional[dict] = None) -> None:
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
    atomic_save([{"name": k, "data": ms.Tensor(np.asarray(v))} for k, v in params.items()], path)


def save_weights(net: nn.Cell, path: str) -> None:
    atomic_save(net, path)


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


def split_state(params: Dict[str, ms.Parameter], prefixes=STATE_PREFIXES):
    """``(weights, {prefix: {name: value}})``: the model part and each prefixed part."""
    weights, parts = {}, {p: {} for p in prefixes}
    for name, value in params.items():
        for prefix in prefixes:
            if name.startswith(prefix):
                parts[prefix][name[len(prefix):]] = value
                break
        else:
            weights[name] = value
    return weights, parts


def assign(own: Dict[str, ms.Parameter], values: Dict[str, ms.Parameter]) -> None:
    """Copy values into parameters by exact name (mindspore's non-strict loader matches by suffix,
    which would pour optimizer moments such as 'accum.x' into the weight 'x')."""
    for name, param in own.items():
        value = values[name]
        param.set_data(value.data if isinstance(value, ms.Parameter) else value)


def _listing(names: List[str], limit: int = 8) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_into(cell: nn.Cell, params: Dict[str, ms.Parameter], what: str, path: str) -> None:
    """Strict: every parameter of ``cell`` found with its shape, and no checkpoint entry left over
    (a checkpoint of another model must not load silently)."""
    own = cell.parameters_dict()
    missing = [n for n in own if n not in params]
    unexpected = [n for n in params if n not in own]
    bad = [f"{n} {tuple(params[n].shape)} vs {tuple(p.shape)}" for n, p in own.items()
           if n in params and tuple(params[n].shape) != tuple(p.shape)]
    if missing or bad or unexpected:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)}: {_listing(missing)}")
        if bad:
            detail.append(f"shape mismatch: {'; '.join(bad[:8])}")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (another model?): {_listing(unexpected)}")
        raise CheckpointError(f"checkpoint '{path}' does not fit the {what}: {' | '.join(detail)}")
    assign(own, params)


def _head_names(net: nn.Cell) -> List[str]:
    """Parameters of the last Dense layer: the classifier head a fine-tuning run replaces."""
    dense = [cell for _, cell in net.cells_and_names() if isinstance(cell, nn.Dense)]
    return [p.name for p in dense[-1].get_parameters()] if dense else []


def load_partial(net: nn.Cell, params: Dict[str, ms.Parameter], mode: str, path: str,
                 key_map: Optional[Dict[str, str]] = None, adapt=None) -> Dict[str, List[str]]:
    """Load what fits and report the rest: ``{"loaded", "skipped", "not_in_checkpoint"}``.

    ``backbone``: every entry whose name and shape match, after the FastMIM fine-tuning surgery
    (``encoder.``/``backbone.`` prefixes, position embedding and relative-position-bias resizing,
    ``adapt(net, params)``, :func:`mindcv_ext.models.pretrain_surgery.adapt_pretrain_state` from the model
    builders); ``skip_head``: strict except the last
    Dense layer (a new classifier); ``key_map``: rename checkpoint prefixes (``{"encoder.": ""}``)
    first, then as ``backbone``.
    """
    if mode not in LOAD_MODES:
        raise CheckpointError(f"unknown loading mode '{mode}' (choose {', '.join(LOAD_MODES)})")
    if mode == "key_map":
        if not key_map:
            raise CheckpointError("loading mode 'key_map' needs a key map {old prefix: new prefix}")
        renamed = {}
        for name, value in params.items():
            for old, new in key_map.items():
                if name.startswith(old):
                    name = new + name[len(old):]
                    break
            renamed[name] = value
        params = renamed
    if mode == "backbone" and adapt is not None:  # e.g. prefixes stripped, position terms resized
        params = adapt(net, params)
    own = net.parameters_dict()
    fits = {n: v for n, v in params.items() if n in own and tuple(v.shape) == tuple(own[n].shape)}
    if mode == "skip_head":
        head = set(_head_names(net))
        fits = {n: v for n, v in fits.items() if n not in head}
        missing = [n for n in own if n not in fits and n not in head]
        if missing:
            raise CheckpointError(f"checkpoint '{path}' lacks body parameters of the model: {_listing(missing)}")
    if not fits:
        raise CheckpointError(f"checkpoint '{path}': no entry matches the model by name and shape")
    assign({n: own[n] for n in fits}, fits)
    return {"loaded": sorted(fits), "skipped": sorted(n for n in params if n not in fits),
            "not_in_checkpoint": sorted(n for n in own if n not in fits)}


def load_weights(net: nn.Cell, path: str, use_ema: bool = False, mode: str = "strict",
                 key_map: Optional[Dict[str, str]] = None, adapt=None) -> Optional[Dict[str, List[str]]]:
    """Load model weights from a weights-only or a full training checkpoint.

    ``mode="strict"`` (the default, and what resume uses) refuses missing, mismatched and unexpected
    entries; the partial modes return what they skipped (see :func:`load_partial`).
    """
    params = read_checkpoint(path)
    weights, parts = split_state(params, state_prefixes(params))
    ema = parts.get(EMA_PREFIX, {})
    if use_ema:
        if not ema:
            raise CheckpointError(f"checkpoint '{path}' holds no EMA weights (train.ema was off)")
        weights = {**weights, **ema}
    if mode == "strict":
        load_into(net, weights, "model", path)
        return None
    return load_partial(net, weights, mode, path, key_map, adapt)


def state_prefixes(params: Dict[str, ms.Parameter]) -> tuple:
    """Every state prefix of a loaded checkpoint: the fixed ones plus those of extra optimizers and
    cells (recorded in ``meta.json``), so that they are not mistaken for model weights."""
    meta = read_meta(params)
    return STATE_PREFIXES + tuple(p for p in meta.get("state_prefixes", []) if p not in STATE_PREFIXES)


def read_meta(params: Dict[str, ms.Parameter]) -> dict:
    """The ``meta.json`` entry of a training checkpoint (``{}`` for weights-only files)."""
    blob = params.get(META_PREFIX + "json")
    if blob is None:
        return {}
    return json.loads(bytes(blob.asnumpy().astype(np.uint8).tolist()).decode("utf-8"))


def meta_entry(meta: dict) -> dict:
    """The checkpoint entry that stores ``meta`` (counters, history, monitor) as UTF-8 JSON bytes."""
    data = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8).copy()
    return {"name": META_PREFIX + "json", "data": ms.Tensor(data)}
