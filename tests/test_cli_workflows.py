"""CLI workflows the README promises: resume from the CLI with compiled steps, EMA evaluation,
ONNX export, check-data; export that fails its check; clipping and AMP in the train step."""
import json
import os

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

import mindcv_ext
from mindcv_ext import export as export_mod
from mindcv_ext.cli import main
from mindcv_ext.engine.step import TrainStep, WithLoss
from mindcv_ext.utils.checkpoint import read_checkpoint, read_meta

SMALL = ["--set", "data.max_samples=48", "--set", "data.image_size=8", "--set", "data.batch_size=16",
         "--set", "train.progress=false", "--set", "data.num_workers=1", "--set", "train.jit=true"]


def test_resume_from_cli_with_jit_and_eval_ema(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["-c", "configs/resnet/resnet20_digits.yaml", *SMALL, "--set", f"train.output_dir={out}",
              "--set", "train.ema=true", "--set", "train.ema_decay=0.5"]
    main(["train", *common, "--set", "train.epochs=1"])
    main(["train", *common, "--set", "train.epochs=2", "--resume", "auto"])
    meta = read_meta(read_checkpoint(str(out / "last.ckpt")))
    assert meta["epoch"] == 1 and [r["epoch"] for r in meta["history"]] == [0, 1]
    capsys.readouterr()
    main(["eval", *common, "--ckpt", str(out / "last.ckpt"), "--json"])
    live = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    main(["eval", *common, "--ckpt", str(out / "last.ckpt"), "--ema", "--json"])
    ema = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ema["val_loss"] != live["val_loss"]  # different weights were evaluated
    # the validation of the last epoch ran on the EMA weights: it equals eval --ema of last.ckpt
    assert ema["val_loss"] == pytest.approx(meta["history"][-1]["val_loss"], rel=1e-5)


def test_onnx_export_from_cli_and_check_data(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from mindcv_ext.utils.checkpoint import save_weights
    ckpt = str(tmp_path / "w.ckpt")
    save_weights(mindcv_ext.create_model("resnet20", num_classes=10), ckpt)
    main(["export", "-c", "configs/resnet/resnet20_digits.yaml", *SMALL, "--ckpt", ckpt, "--format", "ONNX",
          "--out", str(tmp_path / "r20")])
    assert "reloaded and compared on 4 inputs" in capsys.readouterr().out and os.path.isfile(tmp_path / "r20.onnx")
    main(["check-data", "-c", "configs/resnet/resnet20_digits.yaml"])
    assert "0 unreadable" in capsys.readouterr().out


def test_failed_verification_sets_the_file_aside(tmp_path, monkeypatch):
    net = mindcv_ext.create_model("resnet20", num_classes=10)
    monkeypatch.setattr(export_mod, "_run_mindir", lambda path, inputs: [np.zeros((2, 10), np.float32)])
    with pytest.raises(export_mod.ExportMismatch, match="does not reproduce"):
        export_mod.export_and_verify(net, (2, 3, 8, 8), str(tmp_path / "m"), "MINDIR")
    assert not os.path.exists(tmp_path / "m.mindir") and os.path.exists(tmp_path / "m.mindir.unverified")


def _sgd_step(clip):
    net = nn.Dense(4, 3)
    opt = nn.SGD(net.trainable_params(), learning_rate=1.0, momentum=0.0)
    step = TrainStep(WithLoss(net, nn.MSELoss()), opt, clip_grad=clip)
    before = [p.asnumpy().copy() for p in net.trainable_params()]
    x = ms.Tensor(np.full((8, 4), 10.0, np.float32))
    y = ms.Tensor(np.full((8, 3), -10.0, np.float32))
    step(x, y)
    return np.sqrt(sum(((p.asnumpy() - b) ** 2).sum() for p, b in zip(net.trainable_params(), before)))


def test_clip_grad_bounds_the_update():
    ms.set_seed(0)
    free = _sgd_step(None)
    ms.set_seed(0)
    clipped = _sgd_step(0.5)
    assert free > 5.0 and clipped == pytest.approx(0.5, rel=1e-3)  # lr 1: the update is the clipped gradient


def test_amp_o2_step_trains(tiny_cfg):
    from mindcv_ext.tasks import get_task
    task = get_task("classification")(tiny_cfg("train.amp_level=O2", "data.image_size=8", "data.max_samples=64",
                                               "train.epochs=3", "train.jit=false")).build()
    task.fit()
    losses = [r["train_loss"] for r in task.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
