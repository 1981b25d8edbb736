"""One DropNAS search iteration, exactly as the official one-level loop (wiljohnhong/DropNAS
``search.py``): weights and alphas train on the same batch.

1. draw one mask per cell type; remember each edge's kept softmax mass (``edge_kept_ratios``);
2. forward with the masks, cross-entropy, gradients of weights and alphas;
3. clip the weight gradients to norm 3, SGD step on weights, Adam step on alphas (skipped in warm-up);
4. partial decay loss ``wd_w * sum ||w||^2`` over weight tensors whose gradient's first element is
   non-zero plus ``wd_a * sum alpha^2`` over alpha entries with |grad| > 1e-7 (an explicit loss: its
   gradient is ``2 wd w``, not an optimizer's ``wd w``); its gradients, clipped to 3 again, go through
   a second SGD and Adam step (the second Adam step also runs in warm-up, as in the official loop);
5. ``adjust_alphas`` on every edge that dropped an op.

Plain one-level DARTS is the same step with r = 0. The weight optimizer is MindSpore SGD (first step
copies the gradient into the momentum, as PyTorch); the alpha optimizer MindSpore Adam, whose eps is
added to sqrt(v) before the bias correction (PyTorch adds it after; with eps = 1e-8 the two agree to
far below the alpha step size). Both see dense zero gradients for unused tensors, as PyTorch 1.0 did
(momentum keeps moving them).
"""
import math
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import numpy as np
import mindspore as ms
from mindspore import nn, ops

from .space import MaskSampler, adjust_alphas, edge_kept_ratios
from .supernet import SearchNetwork

__all__ = ["SearchStep", "search_lr", "clip_grad_norm", "synchronous_launch"]

_SYNCHRONOUS = False


def synchronous_launch() -> None:
    """Run PyNative ops synchronously on the CPU (``mindspore.runtime.launch_blocking``; process-wide,
    one way). The search step is hundreds of small ops whose backward graph is rebuilt every step
    (the masks change it); with asynchronous dispatch each op is handed between MindSpore's runtime
    threads, and on a small CPU those hand-offs cost more than the ops: a 3-cell supernet step took
    2.6 s asynchronously and 0.8 s synchronously on an idle 2-core machine (~9 s and ~1 s under load),
    same results bit for bit. Compiled (``ms.jit``) steps are not affected measurably."""
    global _SYNCHRONOUS
    if not _SYNCHRONOUS and ms.get_context("device_target") == "CPU":
        ms.runtime.launch_blocking()
        _SYNCHRONOUS = True


def search_lr(epoch: int, epochs: int = 76, lr_max: float = 0.0375, lr_min: float = 0.0015) -> float:
    """Cosine weight learning rate of ``epoch`` (0-based). The official loop calls the scheduler's
    ``step()`` at the start of each epoch, so epoch e uses the cosine value at e + 1."""
    t = min(epoch + 1, epochs)
    return lr_min + (lr_max - lr_min) * (1.0 + math.cos(math.pi * t / epochs)) / 2.0


def clip_grad_norm(grads: Sequence, max_norm: float):
    """PyTorch ``clip_grad_norm_``: scale by ``max_norm / (norm + 1e-6)`` when that is below 1.
    Returns (clipped grads as Tensors, host copies as NumPy arrays, the norm before clipping).
    Done on the host: a compiled version recompiled for every new gradient tuple here."""
    host = [g.asnumpy() for g in grads]
    total = math.sqrt(sum(float(np.square(h, dtype=np.float64).sum()) for h in host))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        host = [(h * np.float32(coef)).astype(h.dtype) for h in host]
        grads = [ms.Tensor(h) for h in host]
    return tuple(grads), host, total


class SearchStep:
    """Callable ``step(images, labels) -> loss`` (CE + partial decay) running one iteration.

    ``drop_rate`` is r for both groups unless ``drop_rate_np`` gives the non-parametric one;
    ``exponent_sizes`` overrides the group sizes in ``p = r ** (1 / size)``. Per epoch call
    ``set_epoch(epoch, epochs)`` (cosine learning rate, warm-up flag). ``state_dict`` /
    ``load_state_dict`` (or ``save`` / ``load``) hold the network with its alphas, both optimizers'
    states and the mask generator, so a resumed search repeats the same steps.
    """

    def __init__(self, net: SearchNetwork, drop_rate: float = 3e-5, drop_rate_np: Optional[float] = None,
                 exponent_sizes=None, w_lr: float = 0.0375, w_lr_min: float = 0.0015, w_momentum: float = 0.9,
                 w_weight_decay: float = 3e-4, w_grad_clip: float = 3.0, alpha_lr: float = 3e-4,
                 alpha_betas=(0.5, 0.999), alpha_weight_decay: float = 1e-3, warmup_epochs: int = 0,
                 seed: int = 666):
        if not isinstance(net, SearchNetwork):
            raise TypeError("SearchStep needs a SearchNetwork")
        self.net = net
        synchronous_launch()
        self.sampler = MaskSampler(net.space, drop_rate, drop_rate_np, seed, exponent_sizes)
        self.w_params, self.a_params = net.weights(), net.alphas()
        self.n_w = len(self.w_params)
        self.w_opt = nn.SGD(self.w_params, learning_rate=w_lr, momentum=w_momentum, weight_decay=0.0)
        self.a_opt = nn.Adam(self.a_params, learning_rate=alpha_lr, beta1=alpha_betas[0], beta2=alpha_betas[1],
                             eps=1e-8, weight_decay=0.0)
        self.w_lr, self.w_lr_min = w_lr, w_lr_min
        self.wd_w, self.wd_a, self.clip = float(w_weight_decay), float(alpha_weight_decay), float(w_grad_clip)
        self.warmup_epochs, self.in_warmup = int(warmup_epochs), False
        self.loss_fn = nn.CrossEntropyLoss()
        params = ms.ParameterTuple(self.w_params + self.a_params)
        self._ce_grad = ms.value_and_grad(self._ce, None, params, has_aux=True)
        self._decay_grad = ms.value_and_grad(self._decay, None, params)
        self.masks = None
        self.last: Dict = {}

    # schedule -------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int, epochs: int) -> float:
        """Learning rate and warm-up state of ``epoch`` (0-based); returns the learning rate.
        In warm-up epochs no op is dropped and the first Adam step is skipped (official loop)."""
        self.in_warmup = epoch < self.warmup_epochs
        self.sampler.enabled = not self.in_warmup
        lr = search_lr(epoch, epochs, self.w_lr, self.w_lr_min)
        ops.assign(self.w_opt.learning_rate, ms.Tensor(lr, ms.float32))  # in place (see the alpha adjust)
        return lr

    # losses ---------------------------------------------------------------------------------------
    def _ce(self, images, labels):
        logits = self.net(images, self.masks["normal"], self.masks["reduce"])
        return self.loss_fn(logits, labels), logits

    def _decay(self, w_used: Sequence[bool], a_used: Sequence):
        loss = None
        for p, used in zip(self.w_params, w_used):
            if used:
                t = self.wd_w * (p * p).sum()
                loss = t if loss is None else loss + t
        for p, m in zip(self.a_params, a_used):
            t = self.wd_a * ((p * m) ** 2).sum()
            loss = t if loss is None else loss + t
        return loss

    def _split(self, grads):
        return tuple(grads[:self.n_w]), tuple(grads[self.n_w:])

    # one iteration --------------------------------------------------------------------------------
    def __call__(self, images, labels) -> float:
        net = self.net
        net.set_train(True)
        n = net.nodes
        self.masks = {"normal": self.sampler.sample(n), "reduce": self.sampler.sample(n)}
        a_normal, a_reduce = net.alpha_values()
        alpha_now = a_normal + a_reduce
        masks = self.masks["normal"] + self.masks["reduce"]
        ratios = [edge_kept_ratios(a, m) for a, m in zip(alpha_now, masks)]

        (ce, logits), grads = self._ce_grad(images, labels)
        g_w, g_a = self._split(grads)
        g_w, host_w, _ = clip_grad_norm(g_w, self.clip)
        self.w_opt(g_w)
        if not self.in_warmup:
            self.a_opt(g_a)

        w_used = [bool(h.reshape(-1)[0] != 0) for h in host_w]
        a_used = [ms.Tensor((np.abs(g.asnumpy()) > 1e-7).astype(np.float32)) for g in g_a]
        decay, grads = self._decay_grad(w_used, a_used)
        g_w, g_a = self._split(grads)
        g_w, _, _ = clip_grad_norm(g_w, self.clip)
        self.w_opt(g_w)
        self.a_opt(g_a)

        for p, a_mask, ratio in zip(self.a_params, masks, ratios):
            if not a_mask.all():
                # in place: ``set_data`` with a new tensor detaches the parameter from the buffer the
                # Adam kernel updates in PyNative, which froze the alphas after the first adjust
                ops.assign(p, ms.Tensor(adjust_alphas(p.asnumpy(), a_mask, ratio).astype(np.float32)))
        ce, decay = float(ce.asnumpy()), float(decay.asnumpy())
        self.last = {"ce": ce, "decay": decay, "logits": logits, "masks": self.masks,
                     "weights_decayed": int(sum(w_used))}
        return ce + decay

    # checkpoint -----------------------------------------------------------------------------------
    def _opt_states(self):
        own = {id(p) for p in self.w_params + self.a_params}
        for prefix, opt in (("w_opt.", self.w_opt), ("a_opt.", self.a_opt)):
            for name, p in opt.parameters_and_names():
                if id(p) not in own:
                    yield prefix + name, p

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        state = OrderedDict((p.name, p.asnumpy().copy()) for p in self.net.get_parameters())
        state.update((name, p.asnumpy().copy()) for name, p in self._opt_states())
        state["sampler.rng"] = self.sampler.get_state()
        return state

    def load_state_dict(self, state) -> None:
        targets = OrderedDict((p.name, p) for p in self.net.get_parameters())
        targets.update(self._opt_states())
        missing = [k for k in targets if k not in state]
        if missing or "sampler.rng" not in state:
            raise KeyError(f"search checkpoint lacks {len(missing)} entries, e.g. {missing[:3]}")
        for name, p in targets.items():
            value = np.asarray(state[name])
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(f"search checkpoint: '{name}' has shape {value.shape}, expected {p.shape}")
            p.set_data(ms.Tensor(value.astype(ms.dtype_to_nptype(p.dtype))))
        self.sampler.set_state(state["sampler.rng"])

    def save(self, path: str) -> None:
        ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in self.state_dict().items()], path)

    def load(self, path: str) -> None:
        self.load_state_dict({k: v.asnumpy() for k, v in ms.load_checkpoint(path).items()})
