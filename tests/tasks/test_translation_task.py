"""The translation task: PSNR/SSIM against hand-derived cases, the generated shading/texture views,
a short GAN run whose L1 falls, exact resume of generator, discriminator and both optimizers, the
single-input baselines and the data-less Taskonomy config."""
import os
import shutil

import numpy as np
import pytest

from mindcv_ext.config import ConfigError
from mindcv_ext.data.registry import DatasetError
from mindcv_ext.seg import image_metrics as im
from mindcv_ext.seg import views
from mindcv_ext.tasks import get_task, load_config
from mindcv_ext.tasks.base import TaskError
from mindcv_ext.utils.checkpoint import read_checkpoint

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tokenfusion")
CONFIG = os.path.join(ROOT, "tokenfusion_gen_tiny_translation.yaml")
TASKONOMY = os.path.join(ROOT, "tokenfusion_gen_b2_taskonomy.yaml")
SMALL = ["data.image_size=32", "data.n_train=2", "data.n_val=2", "data.batch_size=2", "train.progress=false",
         "train.jit=false", "trans.samples=2"]


# ------------------------------------------------------------------------------ metrics
def test_psnr_of_a_constant_offset_is_derivable():
    x = np.random.default_rng(0).uniform(0.2, 0.8, (3, 16, 16))
    assert im.psnr(x, x + 0.1) == pytest.approx(20.0)          # MSE 0.01 -> 10 log10(1 / 0.01)
    assert im.psnr(x, x + 0.1, data_range=2.0) == pytest.approx(20.0 + 20 * np.log10(2))
    assert im.psnr(x, x) == float("inf")
    assert im.l1(x, x - 0.25) == pytest.approx(0.25)


def test_ssim_identity_constants_and_noise_monotonic():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (3, 32, 32))
    assert im.ssim(x, x) == pytest.approx(1.0)
    # two constant images: no variance, SSIM = (2 a b + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.3, 0.6, (0.01 * 1.0) ** 2
    assert im.ssim(np.full((20, 20), a), np.full((20, 20), b)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))
    noisy = [im.ssim(x, np.clip(x + rng.normal(0, s, x.shape), 0, 1)) for s in (0.02, 0.1, 0.3)]
    assert noisy[0] > noisy[1] > noisy[2]
    np.testing.assert_allclose(im.gaussian_window().sum(), 1.0)
    with pytest.raises(im.ImageMetricError, match="smaller than"):
        im.ssim(np.zeros((8, 8)), np.zeros((8, 8)))


# ------------------------------------------------------------------------------ views
def test_shading_of_planes_and_texture_edges_of_a_step():
    wall = views.shading(np.full((32, 32), 5.0))              # fronto-parallel plane: normal (0, 0, -1)
    np.testing.assert_allclose(wall, -views.LIGHT[2], atol=1e-9)
    albedo = np.zeros((16, 16, 3))
    albedo[:, 8:] = 0.5
    edges = views.texture_edges(albedo)
    assert edges[:, :7].max() == 0 and edges[:, 9:].max() == 0 and edges[:, 7:9].min() > 0
    v = views.render_views(2, 32, seed=3)
    assert {k: v[k].shape for k in ("shade", "texture", "rgb")} == {k: (2, 3, 32, 32) for k in ("shade", "texture", "rgb")}
    assert all(v[k].min() >= -1 and v[k].max() <= 1 for k in ("shade", "texture", "rgb"))
    # the target is shaded albedo: it is darkest where the shading is darkest
    shade, rgb = (v["shade"][0, 0] + 1) / 2, (v["rgb"][0] + 1) / 2
    assert np.corrcoef(shade.ravel(), rgb.mean(0).ravel())[0, 1] > 0
    with pytest.raises(views.ViewConfigError):
        views.render_views(1, 40)


# ------------------------------------------------------------------------------ task
def _task(out, epochs, extra=()):
    cfg = load_config(CONFIG, SMALL + [f"train.output_dir={out}", f"train.epochs={epochs}"] + list(extra))
    return get_task(cfg.task)(cfg).build()


def _weights(task):
    return {p.name: p.asnumpy().copy() for p in task.net.get_parameters()}


def _keep_first_checkpoint(task, epoch, record):
    """Callback: a copy of last.ckpt as written after the first epoch (to resume from later)."""
    if epoch == 0:
        shutil.copyfile(os.path.join(task.out_dir, "last.ckpt"), os.path.join(task.out_dir, "epoch1.ckpt"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("translation"))
    task = _task(out, 2)
    task.callbacks.append(_keep_first_checkpoint)
    task.fit()
    return task


def test_short_gan_run_lowers_the_l1_and_logs_every_branch(trained):
    first, last = trained.history[0], trained.history[-1]
    assert last["train_l1"] < first["train_l1"]
    assert np.isfinite(last["train_d_loss"])
    for branch in ("shade", "texture", "ensemble"):
        assert last[f"val_{branch}_l1"] >= 0 and np.isfinite(last[f"val_{branch}_psnr"])
        assert -1 <= last[f"val_{branch}_ssim"] <= 1
    for modality in ("shade", "texture"):
        assert 0 <= last[f"val_exchanged_{modality}"] <= 1
        assert all(f"val_exchanged_stage{k}_{modality}" in last for k in range(1, 6))
    for name in ("best.ckpt", "last.ckpt", "samples.png"):
        assert os.path.isfile(os.path.join(trained.out_dir, name))
    assert not np.allclose(trained.net.gen.alpha.asnumpy(), 1.0)   # alpha is trained with the generator
    names = set(read_checkpoint(os.path.join(trained.out_dir, "last.ckpt")))
    assert any(n.startswith("dis.") for n in names)                # the discriminator is saved
    assert any(n.startswith("dis_optim.") for n in names) and any(n.startswith("optim.") for n in names)


def test_resume_is_exact_for_both_networks_and_optimizers(trained, tmp_path):
    """The uninterrupted two-epoch run against a fresh task resumed from its first-epoch state."""
    resumed = _task(str(tmp_path / "resumed"), 2)
    resumed.fit(resume=os.path.join(trained.out_dir, "epoch1.ckpt"))
    want, got = _weights(trained), _weights(resumed)
    assert want.keys() == got.keys() and any(k.startswith("dis.") for k in want)
    for k in want:
        np.testing.assert_array_equal(want[k], got[k], err_msg=k)
    for key in ("optim", "dis_optim"):
        a = {p.name: p.asnumpy() for p in trained.optimizers[key].moment1}
        b = {p.name: p.asnumpy() for p in resumed.optimizers[key].moment1}
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert resumed.history[-1]["train_l1"] == trained.history[-1]["train_l1"]
    assert resumed.history[-1]["val_ensemble_psnr"] == trained.history[-1]["val_ensemble_psnr"]


def test_single_input_baselines_switch_the_exchange_off(tmp_path):
    cfg = load_config(CONFIG, SMALL + [f"train.output_dir={tmp_path}", "trans.inputs=texture"])
    task = get_task(cfg.task)(cfg)
    task.net = task.build_model()
    assert task.threshold == 0.0
    assert all(c.threshold == 0.0 for _, c in task.net.gen.cells_and_names() if type(c).__name__ == "TokenExchange")
    with pytest.raises(ConfigError, match="inputs"):
        load_config(CONFIG, ["trans.inputs=depth"])
    bad = load_config(CONFIG, SMALL + ["model.name=tokenfusion_mit_tiny"])
    with pytest.raises(TaskError, match="tokenfusion_gen_"):
        get_task(bad.task)(bad).build_model()


def test_taskonomy_config_names_what_is_missing(tmp_path):
    cfg = load_config(TASKONOMY, [f"data.root={tmp_path}"])
    with pytest.raises(DatasetError, match="train_domain.txt"):
        get_task(cfg.task)(cfg).build_loaders()
    cfg = load_config(TASKONOMY, [f"data.root={tmp_path / 'absent'}"])
    with pytest.raises(DatasetError, match="data.root"):
        get_task(cfg.task)(cfg).build_loaders()
