"""Schedules stepped per iteration (default) and per epoch (sched.per_epoch), against closed forms."""
import math

import numpy as np
import pytest

from mindcv_ext.engine.scheduler import lr_per_step


def test_per_step_cosine_is_unchanged_by_default():
    lrs = lr_per_step("cosine", 0.1, 4, 5, min_lr=0.0)
    want = [0.5 * 0.1 * (1 + math.cos(math.pi * s / 20)) for s in range(20)]
    np.testing.assert_allclose(lrs, want, rtol=1e-12)
    assert lrs[1] != lrs[0]  # moves within the first epoch


def test_per_epoch_cosine_is_torch_cosine_annealing_per_epoch():
    """CosineAnnealingLR(T_max=epochs, eta_min) stepped once per epoch: epoch e trains at
    eta_min + (base - eta_min) * (1 + cos(pi e / T)) / 2 for every one of its steps."""
    epochs, steps = 6, 4
    lrs = lr_per_step("cosine", 0.1, epochs, steps, min_lr=0.001, per_epoch=True)
    assert len(lrs) == epochs * steps
    for e in range(epochs):
        want = 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * e / epochs)) / 2
        np.testing.assert_allclose(lrs[e * steps:(e + 1) * steps], [want] * steps, rtol=1e-12)


def test_per_epoch_warmup_counts_whole_epochs():
    lrs = lr_per_step("cosine", 0.1, 6, 3, warmup_epochs=2, warmup_lr_init=0.0, min_lr=0.0, per_epoch=True)
    per_epoch = lrs[::3]
    np.testing.assert_allclose(per_epoch[:2], [0.0, 0.05])
    np.testing.assert_allclose(per_epoch[2:], [0.05 * (1 + math.cos(math.pi * i / 4)) for i in range(4)])


def test_step_schedule_per_epoch_holds_within_epochs():
    """A fractional decay period (GhostNet: x0.973 every 2.4 epochs) decays mid-epoch per step,
    at epoch starts only per epoch."""
    per_step = lr_per_step("step", 1.0, 6, 5, decay_epochs=2.4, decay_rate=0.5, min_lr=0.0)
    per_epoch = lr_per_step("step", 1.0, 6, 5, decay_epochs=2.4, decay_rate=0.5, min_lr=0.0, per_epoch=True)
    assert per_step[12] == 0.5 and per_step[11] == 1.0  # step 12 = epoch 2.4
    for e in range(6):
        assert per_epoch[e * 5:(e + 1) * 5] == [0.5 ** math.floor(e / 2.4)] * 5


def test_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="unknown sched.name 'poly'"):
        lr_per_step("poly", 0.1, 2, 2, per_epoch=True)
