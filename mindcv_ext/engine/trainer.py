"""The one training loop every model uses."""
import json
import math
import os
import time
from typing import Callable, Dict, Optional

import numpy as np
import mindspore as ms
from mindspore import nn, ops

from ..config import Config, ConfigError, save_config
from ..data.loader import Loader
from ..models import create_model, model_module
from .checkpoint import load_training_state, save_training_state, save_weights
from .distributed import init_distributed
from .ema import ModelEMA
from .loss import create_loss
from .metrics import evaluate
from .optim import create_optimizer, param_groups
from .scheduler import lr_per_step


class TrainStep(nn.TrainOneStepCell):
    """One optimizer step: loss, gradients (averaged across ranks under data parallel), optional
    global-norm clipping, update. Returns the loss."""

    def __init__(self, net_with_loss: nn.Cell, optimizer: nn.Optimizer, clip_grad: Optional[float] = None):
        super().__init__(net_with_loss, optimizer)
        self.clip_grad = clip_grad

    def construct(self, images, labels):
        loss = self.network(images, labels)
        grads = self.grad(self.network, self.weights)(images, labels, ops.ones_like(loss))
        grads = self.grad_reducer(grads)
        if self.clip_grad:
            grads = ops.clip_by_global_norm(grads, self.clip_grad)
        self.optimizer(grads)
        return loss


class TrainingDiverged(RuntimeError):
    """The loss stopped being finite."""


def set_seed(seed: int) -> None:
    ms.set_seed(seed)
    np.random.seed(seed % (2 ** 32))


def build_model(cfg: Config, num_classes: Optional[int] = None) -> nn.Cell:
    if not cfg.model.name:
        raise ConfigError("the config has no 'model.name'")
    kwargs = dict(cfg.model.kwargs)
    for key in ("drop_rate", "drop_path_rate"):
        if cfg.model[key] is not None:
            kwargs[key] = cfg.model[key]
    if cfg.model.kernels != "auto":  # force custom kernels or their composite twins
        import ascend_kernels
        ascend_kernels.set_backend(cfg.model.kernels)
    return create_model(cfg.model.name, num_classes=num_classes or cfg.model.num_classes,
                        in_channels=cfg.model.in_channels, pretrained_ckpt=cfg.model.pretrained_ckpt, **kwargs)


class Trainer:
    """Config in, trained model and run folder out (checkpoints, CSV/JSON log, curves PNG).

    ``on_epoch_end(trainer, epoch, record)`` callbacks may be passed for method-specific work.
    """

    def __init__(self, cfg: Config, net: Optional[nn.Cell] = None, callbacks=()):
        self.cfg = cfg
        self.rank, self.world = init_distributed(cfg.dist.enabled)
        set_seed(cfg.train.seed)
        self.train_loader = Loader(cfg.data, "train", cfg.train.seed, self.rank, self.world, cfg.loss.label_smoothing)
        self.val_loader = Loader(cfg.data, "val", cfg.train.seed)
        if self.train_loader.num_classes != cfg.model.num_classes:
            raise ValueError(f"model.num_classes is {cfg.model.num_classes} but dataset '{cfg.data.dataset}' has "
                             f"{self.train_loader.num_classes} classes")
        self.net = net if net is not None else build_model(cfg)
        if cfg.train.amp_level != "O0":
            ms.amp.auto_mixed_precision(self.net, cfg.train.amp_level)
        self.steps_per_epoch = self.train_loader.steps_per_epoch
        if cfg.train.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.train.max_steps_per_epoch)
        self.loss_fn = create_loss(cfg.loss.name, cfg.loss.label_smoothing)
        self.optimizer = self._build_optimizer()
        self.ema = ModelEMA(self.net, cfg.train.ema_decay) if cfg.train.ema else None
        family_callbacks = getattr(model_module(cfg.model.name), "train_callbacks", None)
        self.callbacks = list(callbacks) + (list(family_callbacks(cfg)) if family_callbacks else [])
        self.out_dir = cfg.train.output_dir
        self.is_main = self.rank == 0
        self.history = []
        self.start_epoch, self.best_top1 = 0, -1.0
        self._step = self._build_step()

    # -- set-up ------------------------------------------------------------------------------
    def _build_optimizer(self) -> nn.Optimizer:
        o, s = self.cfg.optim, self.cfg.sched
        lrs = lr_per_step(s.name, o.lr, self.cfg.train.epochs, self.steps_per_epoch, s.warmup_epochs,
                          s.warmup_lr_init, s.min_lr, s.decay_epochs, s.decay_rate)
        extra_filter, extra_lr = None, None
        if o.extra_group:
            extra_filter, extra_lr = self._extra_group(o.extra_group, lrs)
        groups = param_groups(self.net.trainable_params(), o.weight_decay, o.filter_bias_and_bn, lrs,
                              extra_filter, extra_lr)
        self.lrs = lrs
        return create_optimizer(o.name, groups, lrs, o.momentum, o.nesterov, o.eps, o.betas)

    def _extra_group(self, spec: Dict, base_lrs):
        """A second group (e.g. SNN-MLP's LIF tau/Vth) with its own lr, frozen for some epochs."""
        unknown = set(spec) - {"filter", "lr", "frozen_epochs"}
        if unknown or "filter" not in spec:
            raise ValueError(f"optim.extra_group takes filter, lr, frozen_epochs; got {sorted(spec)}")
        fn = getattr(model_module(self.cfg.model.name), f"{spec['filter']}_param_filter", None)
        if fn is None:
            raise ValueError(f"optim.extra_group.filter '{spec['filter']}': model family of "
                             f"'{self.cfg.model.name}' has no {spec['filter']}_param_filter")
        scale = float(spec.get("lr", self.cfg.optim.lr)) / self.cfg.optim.lr
        frozen = int(spec.get("frozen_epochs", 0)) * self.steps_per_epoch
        return fn, [0.0 if i < frozen else lr * scale for i, lr in enumerate(base_lrs)]

    def _build_step(self) -> Callable:
        step = TrainStep(nn.WithLossCell(self.net, self.loss_fn), self.optimizer, self.cfg.train.clip_grad)
        self._step_cell = step
        return ms.jit(step.construct) if self.cfg.train.jit else step

    # -- running -----------------------------------------------------------------------------
    @property
    def last_ckpt(self) -> str:
        return os.path.join(self.out_dir, "last.ckpt")

    def resume(self, path: str) -> None:
        """Continue from a training checkpoint (``auto`` = this run's last.ckpt)."""
        path = self.last_ckpt if path == "auto" else path
        meta = load_training_state(path, self.net, self.optimizer, self.ema)
        self.start_epoch = int(meta["epoch"]) + 1
        self.best_top1 = meta.get("best_top1", -1.0)
        history = os.path.join(os.path.dirname(path), "log.json")
        if os.path.isfile(history):
            with open(history, encoding="utf-8") as fh:
                self.history = [r for r in json.load(fh) if r["epoch"] < self.start_epoch]
        self._log(f"resumed from {path} at epoch {self.start_epoch}")

    def _log(self, text: str) -> None:
        if self.is_main:
            print(text, flush=True)

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        self.net.set_train(True)
        set_seed(self.cfg.train.seed * 1000 + epoch)
        total, losses, start = self.steps_per_epoch, [], time.time()
        bar = None
        if self.is_main and self.cfg.train.progress:
            from tqdm import tqdm
            bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{self.cfg.train.epochs}", unit="step",
                       dynamic_ncols=True, leave=False)
        seen = 0
        for i, (images, labels) in enumerate(self.train_loader.epoch(epoch)):
            if i >= total:
                break
            loss = float(self._step(images, labels).asnumpy())
            if not math.isfinite(loss):
                if bar is not None:
                    bar.close()
                raise TrainingDiverged(
                    f"loss became {loss} at epoch {epoch + 1}, step {i + 1}; stopping. The last good checkpoint "
                    f"is {self.last_ckpt if os.path.isfile(self.last_ckpt) else '(none yet)'}; lower optim.lr or "
                    f"set train.clip_grad")
            if self.ema is not None:
                self.ema.update()
            losses.append(loss)
            seen += images.shape[0] * self.world
            rate = seen / max(time.time() - start, 1e-9)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.1f}")
            elif self.is_main and (i + 1) % self.cfg.train.log_interval == 0:
                print(f"epoch {epoch + 1} step {i + 1}/{total} loss {loss:.4f} {rate:.1f} img/s", flush=True)
        if bar is not None:
            bar.close()
        elapsed = time.time() - start
        return {"train_loss": float(np.mean(losses)), "images_per_s": seen / max(elapsed, 1e-9), "time_s": elapsed}

    def validate(self) -> Dict[str, float]:
        if self.ema is not None:
            self.ema.swap()
        try:
            return evaluate(self.net, self.val_loader, self.loss_fn)
        finally:
            if self.ema is not None:
                self.ema.swap()

    def fit(self) -> Dict[str, float]:
        """Train from ``start_epoch`` to ``train.epochs``; returns the last epoch's record."""
        cfg = self.cfg
        if self.is_main:
            os.makedirs(self.out_dir, exist_ok=True)
            save_config(cfg, os.path.join(self.out_dir, "config.yaml"))
        self._log(f"training {cfg.model.name} on {cfg.data.dataset}: {len(self.train_loader.sampler)} images/rank, "
                  f"{self.steps_per_epoch} steps/epoch, {self.world} worker(s)")
        record = {}
        for cb in self.callbacks:  # e.g. schedules that set per-epoch state before the first epoch
            if hasattr(cb, "begin"):
                cb.begin(self.net, self.start_epoch)
        for epoch in range(self.start_epoch, cfg.train.epochs):
            record = {"epoch": epoch, "lr": self.lrs[min(epoch * self.steps_per_epoch, len(self.lrs) - 1)]}
            record.update(self.train_epoch(epoch))
            last = epoch == cfg.train.epochs - 1
            if (epoch + 1) % cfg.train.val_interval == 0 or last:
                val = self.validate()
                record.update({"val_top1": val["top1"], "val_top5": val["top5"], "val_loss": val["loss"]})
            self.history.append(record)
            self._end_epoch(epoch, record, last)
            for cb in self.callbacks:
                cb(self, epoch, record)
        if self.world > 1 and cfg.dist.save_rank_weights:
            save_weights(self.net, os.path.join(self.out_dir, f"rank_{self.rank}.ckpt"))
        return record

    def _check_finite(self, epoch: int) -> None:
        """A loss can stay finite while weights or BN statistics overflow; never save those."""
        bad = [p.name for p in self.net.get_parameters() if not np.isfinite(p.asnumpy()).all()]
        if bad:
            raise TrainingDiverged(
                f"loss became non-finite in the weights at epoch {epoch + 1} ({len(bad)} tensors, e.g. {bad[0]}); "
                f"stopping. The last good checkpoint is "
                f"{self.last_ckpt if os.path.isfile(self.last_ckpt) else '(none yet)'}")

    def _end_epoch(self, epoch: int, record: Dict, last: bool) -> None:
        self._check_finite(epoch)
        msg = f"epoch {epoch + 1}/{self.cfg.train.epochs} loss {record['train_loss']:.4f} " \
              f"{record['images_per_s']:.1f} img/s"
        if "val_top1" in record:
            msg += f" val_top1 {record['val_top1']:.4f} val_top5 {record['val_top5']:.4f} val_loss {record['val_loss']:.4f}"
        self._log(msg)
        if not self.is_main:
            return
        improved = record.get("val_top1", -1.0) > self.best_top1
        if improved:
            self.best_top1 = record["val_top1"]
        if (epoch + 1) % self.cfg.train.ckpt_interval == 0 or last:
            meta = {"epoch": epoch, "best_top1": self.best_top1}
            save_training_state(self.last_ckpt, self.net, self.optimizer,
                                self.ema.state() if self.ema else None, meta)
        if improved:
            if self.ema is not None:
                self.ema.swap()
            save_weights(self.net, os.path.join(self.out_dir, "best.ckpt"))
            if self.ema is not None:
                self.ema.swap()
        from .logging import write_logs
        write_logs(self.out_dir, self.history)


def run_classification(cfg: Config, args=None) -> Dict[str, float]:
    """The ``classification`` task: train, validate, keep checkpoints and logs."""
    trainer = Trainer(cfg)
    resume = getattr(args, "resume", None)
    if resume:
        trainer.resume(resume)
    record = trainer.fit()
    if trainer.is_main and record:
        print(f"done: {cfg.model.name} best val_top1 {trainer.best_top1:.4f}; run folder {trainer.out_dir}")
    return record
