"""Optimizers with parameter groups: no weight decay on norms, biases and position embeddings."""
from typing import Callable, List, Optional, Sequence

import mindspore as ms
from mindspore import nn

NO_DECAY_KEYS = ("pos_embed", "relative_pos", "cls_token", "position")


def no_weight_decay(param: ms.Parameter) -> bool:
    name = param.name
    return len(param.shape) <= 1 or name.endswith((".bias", ".gamma", ".beta")) or any(k in name for k in NO_DECAY_KEYS)


def param_groups(params: Sequence[ms.Parameter], weight_decay: float, filter_bias_and_bn: bool,
                 lr, extra_filter: Optional[Callable[[str], bool]] = None, extra_lr=None) -> List[dict]:
    """Split trainable params into decay / no-decay (/ extra, with its own lr) groups."""
    decay, skip, extra = [], [], []
    for p in params:
        if extra_filter is not None and extra_filter(p.name):
            extra.append(p)
        elif filter_bias_and_bn and no_weight_decay(p):
            skip.append(p)
        else:
            decay.append(p)
    groups = [g for g in ({"params": decay, "weight_decay": weight_decay, "lr": lr},
                          {"params": skip, "weight_decay": 0.0, "lr": lr}) if g["params"]]
    if extra:
        groups.append({"params": extra, "weight_decay": 0.0, "lr": extra_lr if extra_lr is not None else lr})
    return groups


def create_optimizer(name: str, groups: List[dict], lr, momentum: float = 0.9, nesterov: bool = False,
                     eps: float = 1e-8, betas=(0.9, 0.999)) -> nn.Optimizer:
    """``lr`` is a per-step list (the schedule) or a float; group lrs override it."""
    lr = ms.Tensor(lr, ms.float32) if isinstance(lr, (list, tuple)) else lr
    for g in groups:
        if isinstance(g.get("lr"), (list, tuple)):
            g["lr"] = ms.Tensor(g["lr"], ms.float32)
    if name in ("sgd", "momentum"):
        return nn.SGD(groups, learning_rate=lr, momentum=momentum, nesterov=nesterov)
    if name == "adamw":
        return nn.AdamWeightDecay(groups, learning_rate=lr, beta1=betas[0], beta2=betas[1], eps=eps)
    if name == "adam":
        return nn.Adam(groups, learning_rate=lr, beta1=betas[0], beta2=betas[1], eps=eps)
    if name == "rmsprop":
        # TF-style RMSProp (as in the EfficientNet/GhostNet recipes): decay 0.9, eps inside the sqrt.
        return nn.RMSProp(groups, learning_rate=lr, decay=0.9, momentum=momentum, epsilon=eps)
    raise ValueError(f"unknown optim.name '{name}' (sgd, adamw, adam, rmsprop)")


def optimizer_from_config(cfg, params: Sequence[ms.Parameter], steps_per_epoch: int,
                          param_filters: Optional[dict] = None):
    """``(optimizer, per-step lrs)`` from the ``optim``/``sched`` sections: the schedule over
    ``train.epochs`` (rebuilt from the config, also on resume), decay/no-decay groups and the
    optional ``optim.extra_group`` (a family's parameter filter with its own lr, frozen for
    ``frozen_epochs``)."""
    from .scheduler import lr_per_step
    o, s = cfg.optim, cfg.sched
    lrs = lr_per_step(s.name, o.lr, cfg.train.epochs, steps_per_epoch, s.warmup_epochs, s.warmup_lr_init, s.min_lr,
                      s.decay_epochs, s.decay_rate)
    extra_filter = extra_lr = None
    if o.extra_group:
        spec = o.extra_group
        unknown = set(spec) - {"filter", "lr", "frozen_epochs"}
        if unknown or "filter" not in spec:
            raise ValueError(f"optim.extra_group takes filter, lr, frozen_epochs; got {sorted(spec)}")
        filters = param_filters or {}
        if spec["filter"] not in filters:
            raise ValueError(f"optim.extra_group.filter '{spec['filter']}': the model family of "
                             f"'{cfg.model.name}' declares {sorted(filters) or 'no parameter filters'}")
        scale = float(spec.get("lr", o.lr)) / o.lr
        frozen = int(spec.get("frozen_epochs", 0)) * steps_per_epoch
        extra_filter = filters[spec["filter"]]
        extra_lr = [0.0 if i < frozen else lr * scale for i, lr in enumerate(lrs)]
    groups = param_groups(params, o.weight_decay, o.filter_bias_and_bn, lrs, extra_filter, extra_lr)
    return create_optimizer(o.name, groups, lrs, o.momentum, o.nesterov, o.eps, o.betas), lrs
