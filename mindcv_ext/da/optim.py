"""Adaptation optimiser pieces (third-party SFDA-DE code CvNoob/SFDA-DE, ``solver/utils.py`` and configs).

* "inv" schedule: lr = lr0 * (1 + alpha * it) ** (-beta); defaults alpha = 1e-3, beta = 0.75
  (VisDA-2017 config: lr0 = 1e-4, alpha = 5e-4, beta = 2.25).
* parameter groups: the classifier is frozen (left out of the optimiser and marked
  ``requires_grad=False``), BatchNorm scale/shift get ``bn_lr_mult`` (10 when ``TRAIN_BN_MULT``).
  The third-party code finds BN parameters by the substring 'bn' in their names, which misses the
  downsample BNs of a torchvision ResNet; here every BatchNorm cell counts (the stated intent).
  Weight decay (5e-4 there) applies to all groups, as with its single SGD weight decay.
"""
from typing import List, Sequence, Union

import numpy as np
import mindspore as ms
from mindspore import nn


class AdaptationOptimError(ValueError):
    """Bad schedule or parameter-group arguments."""


def inv_lr(base_lr: float, iteration: int, alpha: float = 1e-3, beta: float = 0.75) -> float:
    if iteration < 0:
        raise AdaptationOptimError(f"iteration must be >= 0, got {iteration}")
    return base_lr * (1.0 + alpha * iteration) ** (-beta)


def inv_lr_schedule(base_lr: float, num_steps: int, alpha: float = 1e-3, beta: float = 0.75) -> List[float]:
    """Per-step learning rates for steps 0 .. num_steps-1 (a list MindSpore optimisers accept)."""
    if num_steps < 1:
        raise AdaptationOptimError(f"num_steps must be >= 1, got {num_steps}")
    return [inv_lr(base_lr, it, alpha, beta) for it in range(num_steps)]


def _bn_params(net: nn.Cell) -> set:
    ids = set()
    for _, cell in net.cells_and_names():
        if isinstance(cell, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            ids.update(id(p) for p in cell.get_parameters() if p.requires_grad)
    return ids


def freeze(net: nn.Cell, cells: Sequence[str] = ("classifier",)) -> List[ms.Parameter]:
    """Mark every parameter of the sub-cells ``net.<name>`` as not trainable; returns them.

    Sub-cells are looked up by attribute, not by parameter-name prefix: MindSpore prefixes
    parameter names once a network is wrapped (loss cell, train step).
    """
    frozen = []
    for name in cells:
        sub = getattr(net, name, None)
        if not isinstance(sub, nn.Cell):
            raise AdaptationOptimError(f"the network has no sub-cell '{name}' to freeze")
        for p in sub.get_parameters():
            p.requires_grad = False
            frozen.append(p)
    return frozen


def adaptation_param_groups(net: nn.Cell, lr: Union[float, Sequence[float]], weight_decay: float = 5e-4,
                            bn_lr_mult: float = 10.0, frozen: Sequence[str] = ("classifier",)) -> List[dict]:
    """Freeze the sub-cells ``frozen`` and return [{other params, lr}, {BN params, lr * bn_lr_mult}].

    ``lr`` is a float or a per-step list (e.g. ``inv_lr_schedule``); a list is scaled elementwise.
    """
    freeze(net, frozen)
    bn = _bn_params(net)
    params = net.trainable_params()
    is_list = isinstance(lr, (list, tuple, np.ndarray))
    base = [float(v) for v in lr] if is_list else float(lr)
    scaled = [v * bn_lr_mult for v in base] if is_list else base * bn_lr_mult
    groups = [{"params": [p for p in params if id(p) not in bn], "lr": base, "weight_decay": weight_decay},
              {"params": [p for p in params if id(p) in bn], "lr": scaled, "weight_decay": weight_decay}]
    return [g for g in groups if g["params"]]
