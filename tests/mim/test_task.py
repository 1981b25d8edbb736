"""The mim_pretrain task end to end on CPU: FastMIM-P phases, per-step lr, reconstruction grid,
exact resume, fine-tuning through task: classification (backbone-only loading, layer decay), an own
backbone (GhostNetV2), and pre-trained vs random init on few labels."""
import os
import shutil

import numpy as np
import pytest

from mindcv_ext.config import ConfigError
from mindcv_ext.mim.phases import scaled_lr
from mindcv_ext.models.vit import sincos_table
from mindcv_ext.tasks import get_task, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PT = os.path.join(ROOT, "configs", "fastmim", "fastmim_vit_pico_digits_pretrain.yaml")
FT = os.path.join(ROOT, "configs", "fastmim", "fastmim_vit_pico_digits_finetune.yaml")
PT_SMALL = ["train.epochs=2", "train.max_steps_per_epoch=3", "data.max_samples=64", "mim.phases=[[0, 32, 16], [1, 48, 8]]",
            "train.val_interval=1", "train.progress=false", "sched.warmup_epochs=0.5", "mim.recon_interval=1"]


def _task(path, out, extra=()):
    cfg = load_config(path, PT_SMALL + list(extra) + [f"train.output_dir={out}"] if path == PT else
                      list(extra) + [f"train.output_dir={out}", "train.progress=false"])
    return get_task(cfg.task)(cfg).build()


class _KeepFirstEpoch:
    def __call__(self, task, epoch, record):
        if epoch == 0:
            shutil.copy(os.path.join(task.out_dir, "last.ckpt"), os.path.join(task.out_dir, "epoch1.ckpt"))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("mim_pt"))
    task = _task(PT, out)
    task.callbacks.append(_KeepFirstEpoch())
    task.fit()
    return task, out


def test_phases_switch_resolution_batch_and_peak_lr(pretrained):
    task, out = pretrained
    assert [r["resolution"] for r in task.history] == [32.0, 48.0]
    assert [r["peak_lr"] for r in task.history] == [scaled_lr(1.5e-3, 16), scaled_lr(1.5e-3, 8)]
    assert len(task._steps) == 2  # one compiled step per phase
    assert task.steps_per_epoch == [3, 3]
    # per-step warm-up over half an epoch, then the cosine with the second phase's (halved) peak
    lrs = task.epoch_lrs
    assert lrs[0][0] == 0.0 and lrs[0][1] > 0 and lrs[1][0] < scaled_lr(1.5e-3, 8)
    assert np.isfinite([r["train_loss"] for r in task.history]).all()
    assert os.path.getsize(os.path.join(out, "reconstruction.png")) > 1000


def test_resume_is_exact(pretrained, tmp_path):
    task, out = pretrained
    again = _task(PT, str(tmp_path))
    again.fit(resume=os.path.join(out, "epoch1.ckpt"))
    assert [r["epoch"] for r in again.history] == [0, 1]
    for p, q in zip(task.net.trainable_params(), again.net.trainable_params()):
        np.testing.assert_allclose(p.asnumpy(), q.asnumpy(), rtol=1e-5, atol=1e-6, err_msg=p.name)
    assert again.history[-1]["train_loss"] == pytest.approx(task.history[-1]["train_loss"], rel=1e-5)


def test_finetune_loads_backbone_only_with_layer_decay(pretrained, tmp_path):
    task, out = pretrained
    ft = _task(FT, str(tmp_path), [f"model.pretrained_ckpt={os.path.join(out, 'last.ckpt')}", "data.max_samples=40",
                                   "train.epochs=1", "train.max_steps_per_epoch=2", "data.batch_size=20"])
    src = {p.name: p.asnumpy() for p in task.net.get_parameters()}
    got = {p.name: p.asnumpy() for p in ft.net.get_parameters()}
    np.testing.assert_array_equal(got["blocks.0.attn.qkv.weight"], src["backbone.blocks.0.attn.qkv.weight"])
    # the sin-cos table of pre-training becomes the learned 7x7 embedding of the 56 px model
    np.testing.assert_allclose(got["pos_embed"][0], sincos_table(64, 7), atol=1e-6)
    # layer decay 0.75 over depth 4: six lr levels (ids 0..5), each 0.75 of the next
    peaks = sorted({float(lr.learning_rate.asnumpy().max()) for lr in ft.optimizers["optim"].learning_rate})
    assert len(peaks) == 6
    np.testing.assert_allclose(np.array(peaks[:-1]) / np.array(peaks[1:]), 0.75, rtol=1e-5)
    record = ft.fit()
    assert np.isfinite(record["train_loss"])


def test_bad_phases_and_blocks(tmp_path):
    with pytest.raises(ConfigError, match="mim.phases"):
        _task(PT, str(tmp_path), ["mim.phases=[[1, 32, 16]]"])
    with pytest.raises(ConfigError, match="divisible"):
        _task(PT, str(tmp_path), ["mim.phases=[[0, 36, 16]]"])


@pytest.mark.slow
def test_demo_pretrained_beats_random_init_on_few_labels(tmp_path):
    """The quick demo (fixed seed 0): 3 short pre-training epochs, then 100 labels at 56 px; measured
    0.21 vs 0.15 top-1 on this seed (a 6-point margin on 100 validation images)."""
    from mindcv_ext.tasks.demo_fastmim import fastmim_demo
    out = fastmim_demo(str(tmp_path), quick=True)
    assert out["pretrain_loss_last"] < 0.8 * out["pretrain_loss_first"]
    assert out["finetune_top1_pretrained"] > out["finetune_top1_scratch"]
    assert os.path.isfile(out["reconstruction"])
