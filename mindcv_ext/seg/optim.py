"""Optimiser layout of the official TokenFusion segmentation recipe (``main.py``,
``utils/optimizer.py``): three AdamW groups (encoder non-norm wd 0.01, encoder norm wd 0, decoder
and the ensemble ``alpha`` with 10x LR, wd 0.01) and the poly schedule with linear warm-up.

``alpha`` joins the decoder group as in huawei-noah/noah-research/TokenFusion (the first release
left it out of every group, so it was never trained).
"""
from typing import Dict, List

import numpy as np


def param_groups(net, base_lr: float, weight_decay: float = 0.01, decoder_lr_mult: float = 10.0) -> List[Dict]:
    """Three parameter groups for ``nn.AdamWeightDecay``/``nn.AdamW``: encoder parameters whose
    name holds "norm" (the encoder LayerNorms, as upstream; the score predictors' own LayerNorms are
    in the first group there too), the other encoder parameters, and decoder + alpha."""
    enc, enc_norm, dec = [], [], []
    for p in net.trainable_params():
        if p.name.startswith("encoder."):
            (enc_norm if "norm" in p.name else enc).append(p)
        else:
            dec.append(p)
    return [{"params": enc, "lr": base_lr, "weight_decay": weight_decay},
            {"params": enc_norm, "lr": base_lr, "weight_decay": 0.0},
            {"params": dec, "lr": base_lr * decoder_lr_mult, "weight_decay": weight_decay}]


def poly_warmup_lr(base_lr: float, total_steps: int, warmup_iter: int = 1500, max_iter: int = 40000,
                   warmup_ratio: float = 1e-6, power: float = 1.0) -> np.ndarray:
    """Per-step LR (float32, length ``total_steps``): linear warm-up from ``warmup_ratio * base_lr``,
    then ``(1 - step / max_iter) ** power``; past ``max_iter`` the last value is kept (the official
    optimiser stops updating its LR there)."""
    if total_steps <= 0 or warmup_iter < 0 or max_iter <= 0:
        raise ValueError(f"poly_warmup_lr: total_steps and max_iter must be positive, warmup_iter >= 0; got "
                         f"{total_steps}, {max_iter}, {warmup_iter}")
    lrs, lr = [], base_lr
    for step in range(total_steps):
        if step < warmup_iter:
            lr = base_lr * (1 - (1 - step / warmup_iter) * (1 - warmup_ratio))
        elif step < max_iter:
            lr = base_lr * (1 - step / max_iter) ** power
        lrs.append(lr)
    return np.asarray(lrs, np.float32)
