"""The segmentation task: a short TokenFusion run on generated scenes trains, logs the metrics of
every branch and the exchanged fractions, restores its full state on resume, exports with two inputs and infers to PNGs."""
import os

import cv2
import numpy as np
import pytest

from mindcv_ext.config import ConfigError
from mindcv_ext.export import export_and_verify
from mindcv_ext.tasks import get_task, load_config

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tokenfusion", "tokenfusion_mit_tiny_scenes.yaml")
SMALL = ["data.image_size=32", "data.n_train=4", "data.n_val=4", "data.batch_size=4", "train.progress=false",
         "train.jit=false", "seg.warmup_iter=0", "seg.max_iter=20", "seg.lamda=1.0e-3"]


def _task(out, epochs, extra=()):
    cfg = load_config(CONFIG, SMALL + [f"train.output_dir={out}", f"train.epochs={epochs}"] + list(extra))
    return get_task(cfg.task)(cfg).build()


def _weights(task):
    return {p.name: p.asnumpy().copy() for p in task.net.get_parameters()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("seg_full"))
    task = _task(out, 2)
    task.fit()
    return task


def test_short_run_trains_and_logs_every_branch(trained):
    first, last = trained.history[0], trained.history[-1]
    assert last["train_loss"] < first["train_loss"]
    for name in ("rgb", "depth", "ensemble"):
        for metric in ("pixel_acc", "mean_acc", "miou"):
            assert 0.0 <= last[f"val_{name}_{metric}"] <= 100.0
    for modality in ("rgb", "depth"):
        assert 0.0 <= last[f"val_exchanged_{modality}"] <= 1.0
        assert all(f"val_exchanged_stage{k}_{modality}" in last for k in range(1, 5))
    assert os.path.isfile(os.path.join(trained.out_dir, "best.ckpt"))
    # alpha is trained (in the decoder group), so the ensemble weights moved from 1/1
    alpha = trained.net.alpha.asnumpy()
    assert not np.allclose(alpha, 1.0)


def test_resume_is_exact(trained, tmp_path):
    """One epoch, then a resumed second epoch in a fresh task: weights, optimizer step and history
    equal those of the uninterrupted two-epoch run bit for bit (no dropout stream in the tiny head)."""
    from mindcv_ext.engine.loop import resume_state
    out = str(tmp_path / "resumed")
    _task(out, 1).fit()
    probe = _task(out, 2)
    meta = resume_state(probe, "auto")
    assert int(meta["epoch"]) == 0 and len(meta["history"]) == 1
    assert int(probe.optimizers["optim"].global_step.asnumpy().reshape(-1)[0]) == probe.steps_per_epoch
    resumed = _task(out, 2)
    resumed.fit(resume="auto")
    want, got = _weights(trained), _weights(resumed)
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(want[k], got[k], err_msg=k)
    assert resumed.history[-1]["train_loss"] == trained.history[-1]["train_loss"]
    assert resumed.history[-1]["val_ensemble_miou"] == trained.history[-1]["val_ensemble_miou"]


def test_export_takes_two_inputs_and_verifies(trained, tmp_path):
    inputs = list(trained.example_inputs())
    assert len(inputs) == 2 and inputs[0].shape == inputs[1].shape
    report = export_and_verify(trained.export_cell(), inputs, str(tmp_path / "tf"), "MINDIR")
    assert report["verified"] and report["outputs"] == 3


def test_infer_writes_coloured_png_from_an_rgb_depth_pair(trained, tmp_path):
    src = trained.val_loader.source.arrays
    rgb = (src["rgb"][0].transpose(1, 2, 0) * 255).round().astype(np.uint8)
    depth_mm = (src["depth"][0, 0] * 10000).round().astype(np.uint16)  # channel = metres / 10
    cv2.imwrite(str(tmp_path / "scene_rgb.png"), rgb[..., ::-1])
    cv2.imwrite(str(tmp_path / "scene_depth.png"), depth_mm)
    res = trained.infer_files([str(tmp_path / "scene_rgb.png"), str(tmp_path / "none.png")])
    assert "error" not in res[0] and res[0]["depth"].endswith("scene_depth.png")
    png = cv2.imread(res[0]["png"])
    assert png.shape == (32, 32, 3)
    # the file read back gives the same inputs (hence prediction) as the dataset's arrays
    a, b = trained.read_pair(str(tmp_path / "scene_rgb.png"), str(tmp_path / "scene_depth.png"))
    np.testing.assert_allclose(a[0], src["rgb"][0], atol=1 / 255)
    np.testing.assert_allclose(b[0], src["depth"][0], atol=1e-4)
    assert "error" in res[1]


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError):
        load_config(CONFIG, ["seg.inputs=rgbd"])
    with pytest.raises(ConfigError):
        load_config(CONFIG, ["seg.lamda=-1.0"])
