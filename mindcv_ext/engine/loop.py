"""The one epoch loop every task runs, and the run bookkeeping around it.

``fit(task, resume)``: seed, output folder, resolved config, exact resume, one ``task.train_epoch``
per epoch, ``task.evaluate`` every ``train.val_interval`` epochs, NaN guard, ``last.ckpt`` (every
optimizer, EMA, counters and history) and ``best.ckpt`` by ``train.monitor``, logs and curves,
callbacks. The task decides what a step and an evaluation are.
"""
import math
import os
import time
from typing import Dict, Optional, Tuple

import numpy as np
import mindspore as ms

from ..config import ConfigError, save_config
from .checkpoint import load_training_state, save_training_state, save_weights
from .logging import write_logs


class TrainingDiverged(RuntimeError):
    """The loss or the weights stopped being finite."""


def set_seed(seed: int) -> None:
    ms.set_seed(seed)
    np.random.seed(seed % (2 ** 32))


def parse_monitor(text: str) -> Tuple[str, str]:
    """``"val_top1:max"`` -> ``("val_top1", "max")``."""
    name, _, mode = str(text).partition(":")
    if not name or mode not in ("max", "min"):
        raise ConfigError(f"train.monitor is {text!r}; write <metric>:max or <metric>:min (e.g. val_top1:max)")
    return name, mode


def _improves(value, best, mode: str) -> bool:
    if value is None or not math.isfinite(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)


def show_step(task, bar, epoch: int, step: int, total: int, loss: float, rate: Optional[float] = None) -> None:
    """Progress of one step: the bar's postfix, or a log line every ``train.log_interval`` steps."""
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", **({} if rate is None else {"samples_s": f"{rate:.1f}"}))
    elif task.is_main and (step + 1) % task.cfg.train.log_interval == 0:
        speed = "" if rate is None else f" {rate:.1f} samples/s"
        print(f"epoch {epoch + 1} step {step + 1}/{total} loss {loss:.4f}{speed}", flush=True)


def run_epoch(task, epoch: int) -> Dict[str, float]:
    """The default epoch: every batch of ``task.train_loader`` through ``task.train_step(*batch)``,
    with a progress bar (or a log line every ``train.log_interval`` steps) and the NaN guard."""
    cfg = task.cfg
    total, losses, seen, start = task.steps_per_epoch, [], 0, time.time()
    bar = None
    if task.is_main and cfg.train.progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", unit="step", dynamic_ncols=True,
                   leave=False)
    try:
        for i, batch in enumerate(task.train_loader.epoch(epoch)):
            if i >= total:
                break
            loss = float(task.train_step(*batch).asnumpy())
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss} at epoch {epoch + 1}, step {i + 1}; stopping. The last good checkpoint "
                    f"is {_last_good(task)}; lower optim.lr or set train.clip_grad (then --resume works)")
            if task.ema is not None:
                task.ema.update()
            losses.append(loss)
            seen += batch[0].shape[0] * task.world
            show_step(task, bar, epoch, i, total, loss, seen / max(time.time() - start, 1e-9))
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.time() - start
    return {"train_loss": float(np.mean(losses)) if losses else float("nan"),
            "images_per_s": seen / max(elapsed, 1e-9), "time_s": elapsed}


def _last_good(task) -> str:
    path = os.path.join(task.out_dir, "last.ckpt")
    return path if os.path.isfile(path) else "(none yet)"


def _check_finite(task, epoch: int) -> None:
    """A loss can stay finite while weights or BN statistics overflow; never save those."""
    bad = [p.name for p in task.net.get_parameters() if not np.isfinite(p.asnumpy()).all()]
    if bad:
        raise TrainingDiverged(
            f"loss became non-finite in the weights at epoch {epoch + 1} ({len(bad)} tensors, e.g. {bad[0]}); "
            f"stopping. The last good checkpoint is {_last_good(task)}; lower optim.lr or set train.clip_grad")


def resume_state(task, path: str) -> dict:
    """Load a training checkpoint into the built task; refuse what the new config cannot honour."""
    path = os.path.join(task.out_dir, "last.ckpt") if path == "auto" else path
    meta = load_training_state(path, task.net, task.optimizers, task.ema)
    saved_steps = meta.get("steps_per_epoch")
    if saved_steps is not None and saved_steps != task.steps_per_epoch:
        raise ConfigError(
            f"cannot resume from '{path}': it ran {saved_steps} steps per epoch, this config runs "
            f"{task.steps_per_epoch} (data.batch_size, data.max_samples, train.max_steps_per_epoch or the number "
            f"of workers changed); keep them as they were or start a new run")
    if meta.get("task", task.name) != task.name:
        raise ConfigError(f"cannot resume from '{path}': it was written by task '{meta['task']}', not '{task.name}'")
    task.log(f"resumed from {path} at epoch {int(meta['epoch']) + 2}")
    return meta


def fit(task, resume: Optional[str] = None) -> Dict[str, float]:
    """Train the built ``task`` from its first (or resumed) epoch to ``train.epochs``; returns the
    last epoch's record. Nothing in the run folder changes before the resume state has loaded."""
    cfg = task.cfg
    monitor, mode = parse_monitor(cfg.train.monitor or task.default_monitor)
    start_epoch, best, history = 0, None, []
    if resume:
        meta = resume_state(task, resume)
        start_epoch, best = int(meta["epoch"]) + 1, meta.get("best")
        history = [r for r in meta.get("history", []) if r["epoch"] < start_epoch]
    if task.is_main:
        os.makedirs(task.out_dir, exist_ok=True)
        save_config(cfg, os.path.join(task.out_dir, "config.yaml"))
    task.log(task.describe())
    for cb in task.callbacks:  # e.g. schedules that set per-epoch state before the first epoch
        if hasattr(cb, "begin"):
            cb.begin(task.net, start_epoch)
    record = {}
    for epoch in range(start_epoch, cfg.train.epochs):
        task.net.set_train(True)
        set_seed(cfg.train.seed * 1000 + epoch)
        record = {"epoch": epoch, "lr": task.lr_at(epoch)}
        record.update(task.train_epoch(epoch))
        last = epoch == cfg.train.epochs - 1
        if (epoch + 1) % cfg.train.val_interval == 0 or last:
            record.update(task.evaluate())
        _check_finite(task, epoch)
        history.append(record)
        task.log(f"epoch {epoch + 1}/{cfg.train.epochs} " + " ".join(
            f"{k} {v:.4f}" for k, v in record.items() if k not in ("epoch", "time_s") and isinstance(v, float)))
        improved = _improves(record.get(monitor), best, mode)
        if improved:
            best = record[monitor]
        if task.is_main:
            if (epoch + 1) % cfg.train.ckpt_interval == 0 or last:
                meta = {"epoch": epoch, "best": best, "monitor": f"{monitor}:{mode}", "history": history,
                        "steps_per_epoch": task.steps_per_epoch, "task": task.name}
                save_training_state(os.path.join(task.out_dir, "last.ckpt"), task.net, task.optimizers,
                                    task.ema.state() if task.ema else None, meta)
            if improved:
                task.save_best(os.path.join(task.out_dir, "best.ckpt"))
            write_logs(task.out_dir, history)
        for cb in task.callbacks:
            cb(task, epoch, record)
    task.best, task.history = best, history
    if task.world > 1 and cfg.dist.save_rank_weights:
        save_weights(task.net, os.path.join(task.out_dir, f"rank_{task.rank}.ckpt"))
    return record
