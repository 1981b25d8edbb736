"""Optimizers with parameter groups (no weight decay on norms, biases and position embeddings),
a PyTorch-style AdamW and per-group gradient clipping.

``adamw`` is the bias-corrected AdamW of Loshchilov & Hutter as PyTorch's ``torch.optim.AdamW``
implements it (the optimizer of the official ViG and SNN-MLP recipes); ``adamw_nobias`` keeps
MindSpore's ``nn.AdamWeightDecay`` (no ``1 - beta^t`` terms: the first updates are several times
larger).
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import mindspore as ms
from mindspore import Tensor, nn, ops
from mindspore.ops import composite as C
from mindspore.ops import functional as F

NO_DECAY_KEYS = ("pos_embed", "relative_pos", "cls_token", "position")

# The accepted values of ``optim.name``.
OPTIMIZERS = ("sgd", "momentum", "adamw", "adamw_nobias", "adam", "rmsprop")


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


# --------------------------------------------------------------------------------------------
# AdamW (PyTorch form)
# --------------------------------------------------------------------------------------------
_adamw_update = C.MultitypeFuncGraph("adamw_update")


@_adamw_update.register("Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
                        "Tensor", "Tensor", "Tensor", "Bool", "Bool", "Bool")
def _adamw_param_update(beta1, beta2, eps, step, lr, weight_decay, param, m, v, grad, start, decay_flag,
                        delayed, optim_filter):
    """One AdamW update of one parameter; ``start``: steps the parameter sits out (its own count
    begins after them, as a separate optimizer that starts stepping late)."""
    if not optim_filter:
        return grad
    t = ops.maximum(step - start, 1.0)
    p32 = F.cast(param, ms.float32)
    g32 = F.cast(grad, ms.float32)
    next_m = beta1 * m + (1.0 - beta1) * g32
    next_v = beta2 * v + (1.0 - beta2) * ops.square(g32)
    bias1 = 1.0 - ops.pow(beta1, t)
    bias2 = 1.0 - ops.pow(beta2, t)
    next_p = p32
    if decay_flag:
        next_p = next_p * (1.0 - lr * weight_decay)
    next_p = next_p - (lr / bias1) * next_m / (ops.sqrt(next_v) / ops.sqrt(bias2) + eps)
    if delayed:
        active = step > start
        next_p = ops.select(ops.broadcast_to(active, p32.shape), next_p, p32)
        next_m = ops.select(ops.broadcast_to(active, p32.shape), next_m, m)
        next_v = ops.select(ops.broadcast_to(active, p32.shape), next_v, v)
    next_p = F.depend(next_p, F.assign(m, next_m))
    next_p = F.depend(next_p, F.assign(v, next_v))
    next_p = F.depend(next_p, F.assign(param, F.cast(next_p, F.dtype(param))))
    return F.cast(next_p, F.dtype(param))


class AdamW(nn.Optimizer):
    """AdamW with bias correction, decoupled weight decay applied as ``p <- p * (1 - lr * wd)``
    before the Adam step (``torch.optim.AdamW``)::

        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    Groups take ``params``, ``lr``, ``weight_decay`` and ``frozen_steps``: a group with
    ``frozen_steps = k`` is left untouched (parameters and moments) for the first ``k`` steps and
    counts its own ``t`` from step ``k + 1``, as the separate LIF optimizer of the official SNN-MLP
    recipe that first steps in epoch 1.
    """

    def __init__(self, params, learning_rate=1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        for name, value in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"AdamW: {name} must be in [0, 1), got {value}")
        if eps <= 0:
            raise ValueError(f"AdamW: eps must be positive, got {eps}")
        frozen: Dict[str, int] = {}
        if params and isinstance(params[0], dict):
            params = [dict(g) for g in params]
            for group in params:
                steps = group.pop("frozen_steps", 0)
                if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
                    raise ValueError(f"AdamW: frozen_steps must be a non-negative int, got {steps!r}")
                frozen.update({p.name: steps for p in group["params"]})
        super().__init__(learning_rate, params, weight_decay)
        self.beta1 = Tensor(beta1, ms.float32)
        self.beta2 = Tensor(beta2, ms.float32)
        self.eps = Tensor(eps, ms.float32)
        self.moments1 = self._parameters.clone(prefix="adamw_m", init="zeros")
        self.moments2 = self._parameters.clone(prefix="adamw_v", init="zeros")
        starts = [frozen.get(p.name, 0) for p in self._parameters]
        self.start_steps = tuple(Tensor(float(s), ms.float32) for s in starts)
        self.delayed = tuple(s > 0 for s in starts)
        self._decay_per_param = self.is_group  # weight_decay is a tuple (per parameter) in group mode
        self._count = len(self._parameters)

    def construct(self, gradients):
        weight_decay = self.get_weight_decay()
        lr = self.get_lr()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        step = F.cast(self.global_step, ms.float32).reshape(())
        if not self.is_group_lr:
            lr = (lr,) * self._count
        if not self._decay_per_param:
            weight_decay = (weight_decay,) * self._count
        return self.hyper_map(F.partial(_adamw_update, self.beta1, self.beta2, self.eps, step), lr, weight_decay,
                              self._parameters, self.moments1, self.moments2, gradients, self.start_steps,
                              self.decay_flags, self.delayed, self.optim_filter)


def create_optimizer(name: str, groups: List[dict], lr, momentum: float = 0.9, nesterov: bool = False,
                     eps: float = 1e-8, betas=(0.9, 0.999)) -> nn.Optimizer:
    """``lr`` is a per-step list (the schedule) or a float; group lrs override it. A group's
    ``frozen_steps`` (steps before its first update) is honoured by ``adamw`` only."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optim.name '{name}' ({', '.join(OPTIMIZERS)})")
    lr = Tensor(lr, ms.float32) if isinstance(lr, (list, tuple)) else lr
    groups = [dict(g) for g in groups]
    for g in groups:
        if isinstance(g.get("lr"), (list, tuple)):
            g["lr"] = Tensor(g["lr"], ms.float32)
        if name != "adamw" and g.pop("frozen_steps", 0):
            raise ValueError(f"a parameter group with frozen_steps needs optim.name 'adamw', not '{name}'")
    if name in ("sgd", "momentum"):
        return nn.SGD(groups, learning_rate=lr, momentum=momentum, nesterov=nesterov)
    if name == "adamw":
        return AdamW(groups, learning_rate=lr, beta1=betas[0], beta2=betas[1], eps=eps)
    if name == "adamw_nobias":
        return nn.AdamWeightDecay(groups, learning_rate=lr, beta1=betas[0], beta2=betas[1], eps=eps)
    if name == "adam":
        return nn.Adam(groups, learning_rate=lr, beta1=betas[0], beta2=betas[1], eps=eps)
    # TF-style RMSProp (as in the EfficientNet/GhostNet recipes): decay 0.9, eps inside the sqrt.
    return nn.RMSProp(groups, learning_rate=lr, decay=0.9, momentum=momentum, epsilon=eps)


# --------------------------------------------------------------------------------------------
# per-group gradient clipping
# --------------------------------------------------------------------------------------------
def param_group_ids(params: Sequence[ms.Parameter], filters: Sequence[Callable[[str], bool]]) -> Tuple[int, ...]:
    """Group index of every parameter: ``i + 1`` for the first ``filters[i]`` matching its name,
    0 for the rest (e.g. ``param_group_ids(opt.parameters, [lif_param_filter])``: LIF scalars 1)."""
    ids = []
    for p in params:
        ids.append(next((i + 1 for i, f in enumerate(filters) if f(p.name)), 0))
    return tuple(ids)


def check_group_clip(group_ids: Sequence[int], max_norms: Sequence[Optional[float]]) -> None:
    """Raise ``ValueError`` unless every group id indexes ``max_norms`` and every norm is positive or None."""
    for norm in max_norms:
        if norm is not None and not norm > 0:
            raise ValueError(f"clip norms must be positive or None, got {tuple(max_norms)}")
    bad = sorted({g for g in group_ids if not 0 <= g < len(max_norms)})
    if bad:
        raise ValueError(f"group ids {bad} have no clip norm ({len(max_norms)} norms given)")


def clip_by_group(grads, group_ids: Tuple[int, ...], max_norms: Tuple[Optional[float], ...]):
    """Clip each group of gradients to its own global L2 norm, the rule of PyTorch's
    ``clip_grad_norm_`` (``g * min(1, max_norm / (norm + 1e-6))``) applied per group.

    ``group_ids[i]`` is the group of ``grads[i]`` (see :func:`param_group_ids`); ``max_norms[k]``
    the norm of group ``k`` (None: not clipped). Both are static tuples, so the function runs
    inside a compiled graph (``ms.jit`` / GRAPH_MODE) as well as in PyNative mode.
    """
    sq = [ops.reduce_sum(ops.square(F.cast(g, ms.float32))) for g in grads]
    scales = []
    for k, max_norm in enumerate(max_norms):
        if max_norm is None:
            scales.append(None)
            continue
        total = ops.zeros((), ms.float32)
        for i, gid in enumerate(group_ids):
            if gid == k:
                total = total + sq[i]
        coef = max_norm / (ops.sqrt(total) + 1e-6)
        scales.append(ops.minimum(coef, 1.0))
    out = []
    for i, g in enumerate(grads):
        scale = scales[group_ids[i]]
        out.append(g if scale is None else g * F.cast(scale, F.dtype(g)))
    return tuple(out)


def optimizer_from_config(cfg, params: Sequence[ms.Parameter], steps_per_epoch: int,
                          param_filters: Optional[dict] = None, net=None):
    """``(optimizer, per-step lrs)`` from the ``optim``/``sched`` sections: the schedule over
    ``train.epochs`` (rebuilt from the config, also on resume), decay/no-decay groups and the
    optional ``optim.extra_group`` (a family's parameter filter with its own lr, frozen for
    ``frozen_epochs``)."""
    from .scheduler import lr_per_step
    o, s = cfg.optim, cfg.sched
    lrs = lr_per_step(s.name, o.lr, cfg.train.epochs, steps_per_epoch, s.warmup_epochs, s.warmup_lr_init, s.min_lr,
                      s.decay_epochs, s.decay_rate, per_epoch=s.per_epoch)
    extra_filter = extra_lr = None
    if o.extra_group:
        spec = o.extra_group
        unknown = set(spec) - {"filter", "lr", "frozen_epochs", "clip_grad"}
        if unknown or "filter" not in spec:
            raise ValueError(f"optim.extra_group takes filter, lr, frozen_epochs, clip_grad; got {sorted(spec)}")
        filters = param_filters or {}
        if spec["filter"] not in filters:
            raise ValueError(f"optim.extra_group.filter '{spec['filter']}': the model family of "
                             f"'{cfg.model.name}' declares {sorted(filters) or 'no parameter filters'}")
        scale = float(spec.get("lr", o.lr)) / o.lr
        frozen = int(spec.get("frozen_epochs", 0)) * steps_per_epoch
        extra_filter = filters[spec["filter"]]
        if o.name == "adamw":  # untouched (moments and step count too) while frozen, as the official code
            extra_lr = [lr * scale for lr in lrs]
        else:
            extra_lr = [0.0 if i < frozen else lr * scale for i, lr in enumerate(lrs)]
    if o.get("layer_decay") is not None:
        return _layer_decay_optimizer(cfg, params, lrs, net, extra_filter), lrs
    groups = param_groups(params, o.weight_decay, o.filter_bias_and_bn, lrs, extra_filter, extra_lr)
    if extra_filter is not None and o.name == "adamw" and any(extra_filter(p.name) for p in groups[-1]["params"]):
        groups[-1]["frozen_steps"] = frozen
    return create_optimizer(o.name, groups, lrs, o.momentum, o.nesterov, o.eps, o.betas), lrs


def _layer_decay_optimizer(cfg, params, lrs, net, extra_filter):
    """``optim.layer_decay``: one group per (layer scale, decay?) with the lr scaled by
    ``decay ** (num_layers - layer id)`` (:mod:`mindcv_ext.mim.lr_decay`, ViT and Swin rules)."""
    from ..mim.lr_decay import LayerDecayError, layer_decay_param_groups, model_layer_decay_scales
    o = cfg.optim
    if net is None or extra_filter is not None:
        raise ValueError("optim.layer_decay needs the model and does not combine with optim.extra_group")
    try:
        scales = model_layer_decay_scales(net, float(o.layer_decay))
    except LayerDecayError as err:
        raise ValueError(f"optim.layer_decay: {err}") from err
    groups = layer_decay_param_groups(params, scales, o.weight_decay, list(lrs),
                                      no_decay_names=NO_DECAY_KEYS + ("absolute_pos_embed",))
    for g in groups:
        g.pop("lr_scale", None)
    return create_optimizer(o.name, groups, lrs, o.momentum, o.nesterov, o.eps, o.betas)
