"""FastMIM-P: progressive pre-training resolution, and the pre-training lr schedule.

Official behaviour (ggjy/FastMIM.pytorch ``main_pretrain.py``): parallel lists of start epochs,
resolutions, per-device batches and gradient-accumulation steps; at each epoch the active phase is
the last one whose start epoch <= epoch; the crop size and batch switch and the peak lr is
recomputed from the new effective batch, ``lr = blr * batch * accum * world / 256`` (same rule for
``min_lr`` from ``bmin_lr``), while the per-iteration warm-up + half-cosine (``util/lr_sched.py``)
keeps running on the global epoch counter. The released code gives no default schedule.
"""
import math
from typing import List, NamedTuple, Sequence


class PhaseError(ValueError):
    """A phase list that cannot be used."""


class Phase(NamedTuple):
    start_epoch: int
    resolution: int
    batch: int
    accum: int = 1


def make_phases(spec: Sequence) -> List[Phase]:
    """Validate ``[(start epoch, resolution, batch[, accum]), ...]`` (or dicts) into Phases."""
    phases = []
    for item in spec:
        p = Phase(**item) if isinstance(item, dict) else Phase(*item)
        if p.start_epoch < 0 or p.resolution < 1 or p.batch < 1 or p.accum < 1:
            raise PhaseError(f"bad phase {tuple(p)}: start >= 0, resolution, batch and accum >= 1")
        phases.append(p)
    if not phases:
        raise PhaseError("FastMIM-P needs at least one phase")
    starts = [p.start_epoch for p in phases]
    if starts != sorted(starts) or len(set(starts)) != len(starts):
        raise PhaseError(f"phase start epochs must be strictly increasing, got {starts}")
    if starts[0] != 0:
        raise PhaseError(f"the first phase must start at epoch 0, got {starts[0]}")
    return phases


def scaled_lr(base_lr: float, batch: int, accum: int = 1, world_size: int = 1) -> float:
    """The linear scaling rule: ``base_lr * batch * accum * world_size / 256``."""
    return base_lr * batch * accum * world_size / 256.0


def phase_for_epoch(phases: Sequence, epoch: int, blr: float, bmin_lr: float = 0.0, world_size: int = 1) -> dict:
    """Settings of the active phase at ``epoch``: index, resolution, batch, accum, lr, min_lr."""
    phases = make_phases(phases)
    if epoch < 0:
        raise PhaseError(f"epoch must be >= 0, got {epoch}")
    index = max(i for i, p in enumerate(phases) if p.start_epoch <= epoch)
    p = phases[index]
    return {"index": index, "resolution": p.resolution, "batch": p.batch, "accum": p.accum,
            "lr": scaled_lr(blr, p.batch, p.accum, world_size), "min_lr": scaled_lr(bmin_lr, p.batch, p.accum, world_size)}


def warmup_cosine_lr(epoch: float, lr: float, min_lr: float, warmup_epochs: float, epochs: float) -> float:
    """Official ``adjust_learning_rate``: linear from 0 over the warm-up, then half-cosine to min_lr."""
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    progress = (epoch - warmup_epochs) / max(epochs - warmup_epochs, 1e-12)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def pretrain_lr_per_step(phases: Sequence, epochs: int, steps_per_epoch, blr: float, warmup_epochs: float,
                         bmin_lr: float = 0.0, world_size: int = 1) -> List[List[float]]:
    """Per-epoch lists of per-step lrs; ``steps_per_epoch(batch) -> int`` (the loader length of a phase).

    The lr of step ``i`` of epoch ``e`` is ``warmup_cosine_lr(e + i / steps, ...)`` with the peak of
    the phase active at ``e``. One list per epoch, since the step count changes with the batch.
    """
    out = []
    for epoch in range(epochs):
        s = phase_for_epoch(phases, epoch, blr, bmin_lr, world_size)
        steps = int(steps_per_epoch(s["batch"]))
        if steps < 1:
            raise PhaseError(f"epoch {epoch}: a batch of {s['batch']} gives no step")
        out.append([warmup_cosine_lr(epoch + i / steps, s["lr"], s["min_lr"], warmup_epochs, epochs)
                    for i in range(steps)])
    return out
