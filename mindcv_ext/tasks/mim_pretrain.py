"""The ``mim_pretrain`` task: FastMIM pre-training (Guo et al., arXiv 2212.06593; official code
ggjy/FastMIM.pytorch ``main_pretrain.py`` / ``engine_pretrain.py``) through the engine.

- The model is :class:`~mindcv_ext.mim.model.MIMModel` around ``model.name`` (with the recipe of
  :data:`~mindcv_ext.mim.model.RECIPES` where one exists, e.g. 6 heads for ViT-B as the official
  ``mim_vit_base``); any backbone with ``forward_features`` and a known output stride works.
- The labels of the dataset are ignored; block masks (exact count per sample) are drawn on the host
  from ``(seed, epoch, step)``, so a resumed run sees the same masks as an uninterrupted one.
- AdamW (``optim.betas`` 0.9, 0.95 in the recipes); the peak lr follows the scaling rule
  ``mim.blr * batch * world / 256``; per-step linear warm-up then half-cosine on the global epoch.
- FastMIM-P: ``mim.phases`` ``[[start epoch, resolution, batch], ...]`` switch crop size, batch and
  peak lr; each phase has its own loader and its own compiled step (one graph per phase).
- ``reconstruction.png`` (input, masked input, HOG target, HOG prediction) every
  ``mim.recon_interval`` epochs and at the end.
The weights (``best.ckpt`` / ``last.ckpt``) fine-tune through ``task: classification`` with
``model.pretrained_mode: backbone`` (see :mod:`mindcv_ext.models.pretrain_surgery`).
"""
import math
import os
import time
from typing import Dict, List

import numpy as np
import mindspore as ms

from ..config import Config, ConfigError
from ..data.loader import Loader
from ..engine.loop import TrainingDiverged, set_seed, show_step
from ..engine.optim import create_optimizer, param_groups
from ..engine.step import TrainStep, compiled
from ..mim.masking import block_mask
from ..mim.model import MIMConfigError, create_mim_model
from ..mim.phases import PhaseError, make_phases, pretrain_lr_per_step, scaled_lr
from .base import Task, TaskError
from .registry import register_task

MIM_KEYS = {
    "target": ((str,), "hog"),               # hog (FastMIM) | pixel (--mim_loss l2)
    "mask_ratio": ((float,), 0.75),
    "mask_block": ((int, type(None)), None),  # null: the backbone's output stride
    "stride": ((int, type(None)), None),      # null: backbone.output_stride
    "decoder_dim": ((int, type(None)), None),  # null: the recipe's (256 for ViT-B / Swin-B)
    "decoder_depth": ((int, type(None)), None),
    "hog_cell": ((int, type(None)), None),
    "norm_target": ((bool,), True),
    "blr": ((float,), 1.5e-4),               # base lr; peak = blr * batch * world / 256
    "bmin_lr": ((float,), 0.0),
    "phases": ((list, type(None)), None),     # FastMIM-P [[start_epoch, resolution, batch], ...]
    "recon_interval": ((int,), 1),            # epochs between reconstruction grids; 0 = only at the end
    "recon_samples": ((int,), 6),
}


@register_task
class MIMPretrainTask(Task):
    name = "mim_pretrain"
    sections = {"mim": MIM_KEYS}
    choices = {("mim", "target"): ("hog", "pixel")}
    ranges = {("mim", "mask_ratio"): (lambda v: 0 <= v < 1, "in [0, 1)"),
              ("mim", "blr"): (lambda v: v > 0, "positive"),
              ("mim", "recon_interval"): (lambda v: v >= 0, "0 or more"),
              ("mim", "recon_samples"): (lambda v: v >= 1, "at least 1")}
    default_monitor = "val_loss:min"

    # ------------------------------------------------------------------ building
    def phases(self):
        m, d = self.cfg.mim, self.cfg.data
        try:
            return make_phases(m.phases if m.phases else [(0, d.image_size, d.batch_size)])
        except (PhaseError, TypeError) as err:
            raise ConfigError(f"mim.phases: {err} (write [[start_epoch, resolution, batch], ...])") from err

    def _data_cfg(self, phase) -> Config:
        return Config(dict(self.cfg.data, image_size=int(phase.resolution), batch_size=int(phase.batch)))

    def build_model(self):
        m, model = self.cfg.mim, self.cfg.model
        kw = {k: m[k] for k in ("mask_block", "stride", "decoder_dim", "decoder_depth", "hog_cell") if m[k] is not None}
        bkw = dict(model.kwargs)
        for key in ("drop_rate", "drop_path_rate"):
            if model[key] is not None:
                bkw[key] = model[key]
        if model.kernels != "auto":
            bkw["kernels"] = model.kernels
        try:
            net = create_mim_model(model.name, bkw, target=m.target, norm_target=m.norm_target, **kw)
        except MIMConfigError as err:
            raise ConfigError(str(err)) from err
        if model.pretrained_ckpt:
            from ..models.pretrain_surgery import adapt_pretrain_state
            from ..utils.checkpoint import load_weights
            load_weights(net, model.pretrained_ckpt, mode=model.pretrained_mode, key_map=model.pretrained_key_map,
                         adapt=adapt_pretrain_state)
        return net

    def build_loaders(self) -> None:
        for p in self._phases:
            if p.resolution % self._block_hint:
                raise ConfigError(f"mim.phases: resolution {p.resolution} is not divisible by the mask block "
                                  f"{self._block_hint}")
        cfg = self.cfg
        self.loaders = [Loader(self._data_cfg(p), "train", cfg.train.seed, self.rank, self.world) for p in self._phases]
        self.val_loaders = {}
        self.train_loader = self.loaders[0]

    def val_loader_for(self, index: int) -> Loader:
        if index not in self.val_loaders:
            p = self._phases[index]
            self.val_loaders[index] = Loader(self._data_cfg(p), "val", self.cfg.train.seed,
                                             batch_size=self.cfg.data.batch_size)
        return self.val_loaders[index]

    def build(self) -> "MIMPretrainTask":
        cfg = self.cfg
        set_seed(cfg.train.seed)
        self._phases = self.phases()
        self.net = self.build_model()
        self._block_hint = self.net.mask_block
        self.build_loaders()
        if cfg.train.amp_level != "O0":
            ms.amp.auto_mixed_precision(self.net, cfg.train.amp_level)
        steps = [self.phase_steps(i) for i in range(len(self._phases))]
        by_batch = {p.batch: s for p, s in zip(self._phases, steps)}
        s, m = cfg.sched, cfg.mim
        per_epoch = pretrain_lr_per_step(self._phases, cfg.train.epochs, lambda b: by_batch[b], m.blr,
                                         s.warmup_epochs, m.bmin_lr, self.world)
        self.epoch_lrs = per_epoch
        lrs = [v for epoch in per_epoch for v in epoch]
        self.lrs = lrs
        groups = param_groups(self.net.trainable_params(), cfg.optim.weight_decay, cfg.optim.filter_bias_and_bn, lrs)
        o = cfg.optim
        opt = create_optimizer(o.name, groups, lrs, o.momentum, o.nesterov, o.eps, o.betas)
        self.optimizers = {"optim": opt}
        self.step_cell = TrainStep(self.net, opt, cfg.train.clip_grad)
        self._steps: Dict[int, object] = {}
        return self

    def phase_steps(self, index: int) -> int:
        steps = self.loaders[index].steps_per_epoch
        cap = self.cfg.train.max_steps_per_epoch
        return min(steps, cap) if cap else steps

    @property
    def steps_per_epoch(self) -> List[int]:
        """Steps of an epoch in each phase (what a resumed run must keep)."""
        return [self.phase_steps(i) for i in range(len(self._phases))]

    def phase_index(self, epoch: int) -> int:
        return max(i for i, p in enumerate(self._phases) if p.start_epoch <= epoch)

    def lr_at(self, epoch: int) -> float:
        return float(self.epoch_lrs[epoch][0]) if epoch < len(self.epoch_lrs) else float("nan")

    def peak_lr(self, epoch: int) -> float:
        p = self._phases[self.phase_index(epoch)]
        return scaled_lr(self.cfg.mim.blr, p.batch, 1, self.world)

    def describe(self) -> str:
        ph = ", ".join(f"epoch {p.start_epoch}: {p.resolution}px x {p.batch} (peak lr {self.peak_lr(p.start_epoch):.2e})"
                       for p in self._phases)
        return (f"{self.name}: FastMIM ({self.cfg.mim.target} target) on {self.cfg.model.name}, "
                f"{self.cfg.data.dataset}, phases {ph}; {self.world} worker(s)")

    # ------------------------------------------------------------------ training
    def masks(self, batch: int, height: int, width: int, epoch: int, step: int) -> np.ndarray:
        block = self.net.mask_block
        rng = np.random.default_rng([self.cfg.train.seed, epoch + 1, step])  # epoch -1: validation
        return block_mask(batch, (height // block, width // block), self.cfg.mim.mask_ratio, rng)

    def step_for_phase(self, index: int):
        """One compiled step per phase: each resolution and batch is its own static graph."""
        if index not in self._steps:
            cell = TrainStep(self.net, self.optimizers["optim"], self.cfg.train.clip_grad) if index else self.step_cell
            self._steps[index] = compiled(cell, self.cfg.train.jit)
        return self._steps[index]

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        cfg = self.cfg
        index = self.phase_index(epoch)
        self.train_loader = loader = self.loaders[index]
        step_fn, total = self.step_for_phase(index), self.phase_steps(index)
        losses, seen, start, bar = [], 0, time.time(), None
        if self.is_main and cfg.train.progress:
            from tqdm import tqdm
            bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{cfg.train.epochs} ({self._phases[index].resolution}px)",
                       unit="step", dynamic_ncols=True, leave=False)
        try:
            for i, batch in enumerate(loader.epoch(epoch)):
                if i >= total:
                    break
                images = batch[0]
                mask = ms.Tensor(self.masks(images.shape[0], images.shape[2], images.shape[3], epoch, i))
                loss = float(step_fn(images, mask).asnumpy())
                if not math.isfinite(loss):
                    raise TrainingDiverged(f"loss became {loss} at epoch {epoch + 1}, step {i + 1}; stopping "
                                           "(lower mim.blr or set train.clip_grad, then --resume)")
                losses.append(loss)
                seen += images.shape[0] * self.world
                show_step(self, bar, epoch, i, total, loss)
        finally:
            if bar is not None:
                bar.close()
        elapsed = time.time() - start
        self._epoch = epoch
        return {"train_loss": float(np.mean(losses)) if losses else float("nan"), "resolution": float(
            self._phases[index].resolution), "peak_lr": self.peak_lr(epoch),
            "images_per_s": seen / max(elapsed, 1e-9), "time_s": elapsed}

    def evaluate(self) -> Dict[str, float]:
        """Masked-unit loss on the validation split at the current phase's resolution, fixed masks;
        writes the reconstruction grid when due."""
        epoch = getattr(self, "_epoch", 0)
        index = self.phase_index(epoch)
        net, was = self.net, self.net.training
        net.set_train(False)
        total, n, first = 0.0, 0, None
        for i, batch in enumerate(self.val_loader_for(index).epoch(0)):
            images = batch[0]
            mask = self.masks(images.shape[0], images.shape[2], images.shape[3], -1, i)
            total += float(net(images, ms.Tensor(mask)).asnumpy()) * images.shape[0]
            n += images.shape[0]
            if first is None:
                first = (images, mask)
        net.set_train(was)
        every, last = self.cfg.mim.recon_interval, epoch == self.cfg.train.epochs - 1
        if self.is_main and first is not None and (last or (every and (epoch + 1) % every == 0)):
            self.save_reconstructions(*first)
        return {"val_loss": total / max(n, 1)}

    def save_reconstructions(self, images, mask) -> str:
        """``reconstruction.png`` in the run folder (HOG target only; a pixel run writes none)."""
        if self.cfg.mim.target != "hog":
            return ""
        from ..mim.targets import token_targets_to_map
        from ..mim.visualize import save_reconstruction_grid
        k = min(self.cfg.mim.recon_samples, images.shape[0])
        images, mask = images[:k], mask[:k]
        pred, target, _ = self.net.forward_pred(images, ms.Tensor(mask))
        h, w = images.shape[2] // self.net.stride, images.shape[3] // self.net.stride
        channels = self.net.hog.channels * self.net.hog.nbins
        to_map = lambda t: token_targets_to_map(t.asnumpy(), h, w, channels)  # noqa: E731
        os.makedirs(self.out_dir, exist_ok=True)
        return save_reconstruction_grid(os.path.join(self.out_dir, "reconstruction.png"), images.asnumpy(), mask,
                                        to_map(target), to_map(pred), self.net.mask_block,
                                        mean=self.cfg.data.mean, std=self.cfg.data.std)

    # ------------------------------------------------------------------ export / predict
    def example_inputs(self, batch: int = 2):
        p = self._phases[-1] if hasattr(self, "_phases") else None
        size = p.resolution if p else self.cfg.data.image_size
        rng = np.random.default_rng(0)
        images = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        return images, self.masks(batch, size, size, -1, 0)

    def load_for_inference(self, ckpt, use_ema: bool = False):
        self._phases = self.phases()
        return super().load_for_inference(ckpt, use_ema)

    def infer_files(self, paths, topk: int = 5):
        raise TaskError("task 'mim_pretrain' does not classify files; fine-tune with task: classification "
                        "and model.pretrained_mode: backbone")
