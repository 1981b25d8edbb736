"""Per-step learning-rate schedules with linear warm-up."""
import math
from typing import List

SCHEDULES = ("cosine", "step", "exponential", "constant")


def lr_per_step(name: str, lr: float, epochs: int, steps_per_epoch: int, warmup_epochs: float = 0.0,
                warmup_lr_init: float = 1e-6, min_lr: float = 1e-6, decay_epochs: float = 30.0,
                decay_rate: float = 0.1, per_epoch: bool = False) -> List[float]:
    """One learning rate for every optimizer step of the run.

    ``per_epoch``: the schedule moves once per epoch, at the epoch's start, and holds within it
    (``torch.optim.lr_scheduler.CosineAnnealingLR`` / ``StepLR`` stepped after each epoch, as the
    official AdderNet, AdaBin and DropNAS/DARTS CIFAR scripts do); epoch ``e`` of a cosine gets
    ``min_lr + (lr - min_lr) * (1 + cos(pi * (e - warmup) / (epochs - warmup))) / 2``; warm-up is
    then counted in whole epochs. Otherwise every step gets its own value.
    """
    if steps_per_epoch <= 0 or epochs <= 0:
        raise ValueError(f"need at least one epoch and one step, got epochs={epochs}, steps={steps_per_epoch}")
    if name not in SCHEDULES:
        raise ValueError(f"unknown sched.name '{name}' ({', '.join(SCHEDULES)})")
    if per_epoch:
        values = lr_per_step(name, lr, epochs, 1, warmup_epochs, warmup_lr_init, min_lr, decay_epochs, decay_rate)
        return [v for v in values for _ in range(steps_per_epoch)]
    total = epochs * steps_per_epoch
    warmup = int(round(warmup_epochs * steps_per_epoch))
    out = []
    for step in range(total):
        if step < warmup:
            out.append(warmup_lr_init + (lr - warmup_lr_init) * step / warmup)
            continue
        epoch = step / steps_per_epoch
        if name == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            out.append(min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress)))
        elif name == "step":
            out.append(max(min_lr, lr * decay_rate ** math.floor(epoch / decay_epochs)))
        elif name == "exponential":
            out.append(max(min_lr, lr * decay_rate ** (epoch / decay_epochs)))
        else:
            out.append(lr)
    return out
