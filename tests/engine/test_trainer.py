import json
import os
import re

import numpy as np
import pytest

from mindcv_ext.engine.checkpoint import CheckpointError, load_weights, read_checkpoint
from mindcv_ext.engine.loop import TrainingDiverged
from mindcv_ext.engine.scheduler import lr_per_step
from mindcv_ext.models.registry import build_model
from mindcv_ext.tasks import get_task


def Trainer(cfg):
    """The config's task, built (what ``mindcv-ext train`` runs)."""
    return get_task(cfg.task)(cfg).build()


def last_ckpt(task):
    return os.path.join(task.out_dir, "last.ckpt")


def weights(net):
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


def test_loss_falls(tiny_cfg):
    # 4 epochs x 16 steps on real digits at their native 8x8: the loss falls from ~2.3 to well under
    # 1 here, so the bar (half the first epoch's loss) is far from the measured trajectory
    cfg = tiny_cfg("train.epochs=4", "data.max_samples=256", "data.image_size=8", "optim.lr=0.05",
                   "train.val_interval=4")
    trainer = Trainer(cfg)
    trainer.fit()
    losses = [r["train_loss"] for r in trainer.history]
    assert losses[-1] < 0.5 * losses[0], losses
    out = cfg.train.output_dir
    for name in ("last.ckpt", "best.ckpt", "metrics.csv", "log.json", "curves.png", "config.yaml"):
        assert os.path.isfile(os.path.join(out, name)), name
    with open(os.path.join(out, "log.json")) as fh:
        assert [r["epoch"] for r in json.load(fh)] == [0, 1, 2, 3]


@pytest.mark.parametrize("extra", [(), ("train.ema=true", "optim.name=adamw", "optim.lr=0.002")])
def test_resume_matches_uninterrupted(tiny_cfg, tmp_path, extra):
    extra = ("data.max_samples=48", "train.max_steps_per_epoch=2", "train.jit=false") + tuple(extra)
    full = Trainer(tiny_cfg("train.epochs=2", f"train.output_dir={tmp_path / 'full'}", *extra))
    full.fit()
    first = Trainer(tiny_cfg("train.epochs=2", f"train.output_dir={tmp_path / 'part'}", *extra))
    first.cfg.train.epochs = 1  # stop after one epoch, as an interrupted run would
    first.fit()
    resumed = Trainer(tiny_cfg("train.epochs=2", f"train.output_dir={tmp_path / 'part'}", *extra))
    resumed.fit("auto")
    a, b = weights(full.net), weights(resumed.net)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert [r["epoch"] for r in resumed.history] == [0, 1]


def test_corrupt_checkpoint_is_refused(tiny_cfg, tmp_path):
    cfg = tiny_cfg("train.epochs=1", "train.max_steps_per_epoch=1")
    trainer = Trainer(cfg)
    trainer.fit()
    good = last_ckpt(trainer)
    data = open(good, "rb").read()
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(data[: len(data) // 2] + b"\x00" * 64 + data[len(data) // 2 + 64:])
    with pytest.raises(CheckpointError, match="corrupt or not a MindSpore checkpoint"):
        read_checkpoint(str(bad))
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        read_checkpoint(str(tmp_path / "empty.ckpt"))
    other = build_model(tiny_cfg("model.num_classes=5").model)
    with pytest.raises(CheckpointError, match="does not fit the model.*shape mismatch.*fc.weight"):
        load_weights(other, good)


def test_nan_loss_stops_and_keeps_last_good(tiny_cfg):
    # epoch 1 trains normally; from epoch 2 the step schedule multiplies the lr by 1e30
    cfg = tiny_cfg("train.epochs=3", "train.max_steps_per_epoch=2", "data.max_samples=64", "train.jit=false", "sched.name=step",
                   "sched.decay_epochs=1", "sched.decay_rate=1.0e30",
                   "optim.lr=0.05", "sched.min_lr=0.0", "optim.weight_decay=0.0")
    trainer = Trainer(cfg)
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf|non-finite).*last good checkpoint is .*last\.ckpt") as err:
        trainer.fit()
    failed_epoch = int(re.search(r"at epoch (\d+)", str(err.value)).group(1))  # 1-based
    assert failed_epoch >= 2
    params = read_checkpoint(last_ckpt(trainer))
    from mindcv_ext.utils.checkpoint import read_meta
    assert read_meta(params)["epoch"] == failed_epoch - 2  # the epoch before, 0-based
    weights = {n: p for n, p in params.items() if not n.startswith(("optim.", "meta."))}
    assert weights and all(np.isfinite(p.asnumpy()).all() for p in weights.values())


def test_schedules():
    cos = lr_per_step("cosine", 1.0, 2, 5, warmup_epochs=1, warmup_lr_init=0.0, min_lr=0.0)
    assert cos[0] == 0.0 and cos[4] == pytest.approx(0.8) and cos[5] == pytest.approx(1.0)
    assert cos[-1] == pytest.approx(0.5 * (1 + np.cos(np.pi * 4 / 5)))
    step = lr_per_step("step", 1.0, 4, 2, decay_epochs=2, decay_rate=0.1, min_lr=0.0)
    assert step == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="unknown sched.name"):
        lr_per_step("linear", 1.0, 1, 1)


def test_no_weight_decay_groups():
    from mindcv_ext import create_model
    from mindcv_ext.engine.optim import param_groups
    net = create_model("resnet20", num_classes=10)
    decay, skip = param_groups(net.trainable_params(), 1e-4, True, 0.1)
    names = {p.name for p in skip["params"]}
    assert "fc.bias" in names and "bn1.gamma" in names and "bn1.beta" in names
    assert {p.name for p in decay["params"]} == {p.name for p in net.trainable_params()} - names
    assert decay["weight_decay"] == 1e-4 and skip["weight_decay"] == 0.0
    extra = param_groups(net.trainable_params(), 1e-4, True, 0.1, lambda n: n.startswith("fc."), [0.0])
    assert len(extra) == 3 and {p.name for p in extra[2]["params"]} == {"fc.weight", "fc.bias"}


def test_family_callbacks_set_per_epoch_state(tiny_cfg):
    # AdaBin's weight-gradient schedule (k, t) is a family callback the trainer must run
    from mindcv_ext.quant.binary import AdaBinWeightQuantizer
    cfg = tiny_cfg("model.name=adabin_resnet20", "model.kernels=composite", "train.epochs=2",
                   "train.max_steps_per_epoch=1", "data.max_samples=32")
    trainer = Trainer(cfg)
    trainer.fit()
    t_last = 10.0 ** (-3 + 4 * 1 / 2)  # official EDE schedule t = 10^(-3 + 4 e/E) at e = 1 of E = 2
    quantizers = [c for _, c in trainer.net.cells_and_names() if isinstance(c, AdaBinWeightQuantizer)]
    assert quantizers and all(np.isclose(float(q.t.asnumpy().ravel()[0]), t_last) for q in quantizers)
