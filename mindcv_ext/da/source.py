"""Loading a source model for adaptation: all of it, or only some sub-cells (e.g. the backbone
from a plain classifier checkpoint), with a clear error for every missing or misshapen key."""
import os
from typing import Dict, List, Optional, Sequence

import mindspore as ms
from mindspore import nn


class SourceCheckpointError(ValueError):
    """A source checkpoint that does not fit the requested parts of the model."""


def load_source_weights(net: nn.Cell, path: str, parts: Sequence[str] = ("backbone", "bottleneck", "classifier"),
                        checkpoint_prefixes: Optional[Dict[str, str]] = None) -> List[str]:
    """Copy the parameters of the sub-cells ``net.<part>`` from the checkpoint at ``path``.

    Checkpoint keys are ``<prefix><name inside the part>`` with prefix ``"<part>."`` unless
    ``checkpoint_prefixes`` says otherwise: ``{"backbone": ""}`` loads a plain ``resnet50``
    checkpoint (``conv1.weight``, ``layer1.0...``; its ``fc`` is ignored) into the backbone.
    Other checkpoint entries (optimizer state, other parts) are ignored. Returns the loaded keys.
    """
    if not os.path.isfile(path):
        raise SourceCheckpointError(f"source checkpoint '{path}' does not exist")
    params = ms.load_checkpoint(path)
    prefixes = checkpoint_prefixes or {}
    plan, missing, bad = [], [], []
    for part in parts:
        cell = getattr(net, part, None)
        if not isinstance(cell, nn.Cell):
            raise SourceCheckpointError(f"the model has no sub-cell '{part}'")
        prefix = prefixes.get(part, f"{part}.")
        for name, param in cell.parameters_and_names():
            key = prefix + name
            if key not in params:
                missing.append(key)
            elif tuple(params[key].shape) != tuple(param.shape):
                bad.append(f"{key} {tuple(params[key].shape)} vs {tuple(param.shape)}")
            else:
                plan.append((param, key))
    if missing or bad:
        detail = (f"missing {len(missing)}: {', '.join(missing[:6])}" if missing else "") + \
                 (f" shape mismatch: {'; '.join(bad[:6])}" if bad else "")
        raise SourceCheckpointError(f"source checkpoint '{path}' does not fit {list(parts)}: {detail.strip()}")
    for param, key in plan:
        param.set_data(params[key].data if isinstance(params[key], ms.Parameter) else params[key])
    return [key for _, key in plan]
