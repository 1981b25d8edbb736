"""Contracts over everything registered: every model builds, declares its metadata and runs
forward at a small input; the smallest model of each family round-trips through MindIR; every
shipped config validates and builds its model."""
import glob
import os

import numpy as np
import pytest
import mindspore as ms

from mindcv_ext.export import export_and_verify
from mindcv_ext.models import create_model, default_cfg, family_hooks, list_models, model_family
from mindcv_ext.models.registry import build_model
from mindcv_ext.tasks import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL_INPUT = 32
MODELS = [m for m in list_models() if not m.endswith("_test")]
# models whose smallest valid input is larger than SMALL_INPUT: (input size, build kwargs)
SMALL_SETTINGS = {"dropnas_imagenet": (64, {}), "darts_v2_imagenet": (64, {}),   # three stride-2 stem convs
                  **{m: (64, {"window_size": 4}) for m in list_models("swin_*")}}  # window 7 wants 224 px


@pytest.fixture(autouse=True)
def fast_truncated_normal(monkeypatch):
    """Clipped-and-redrawn NumPy draws in place of MindSpore's element-wise truncated normal
    (24 s for ViT-L's 304 M weights): these tests check shapes and finite outputs, not the
    initial distribution."""
    import mindspore.common.initializer as init

    def draw(a, b, mean, sigma, arr):
        rng = np.random.default_rng(arr.size)
        flat = arr.reshape(-1)
        flat[:] = rng.standard_normal(flat.size, dtype=np.float32)
        bad = np.flatnonzero((flat < (a - mean) / sigma) | (flat > (b - mean) / sigma))
        flat[bad] = np.clip(rng.standard_normal(bad.size, dtype=np.float32), (a - mean) / sigma, (b - mean) / sigma)
        flat *= sigma
        flat += mean
    monkeypatch.setattr(init, "_init_truncated_normal_inplace", draw)


def small_setting(name):
    """(input size, kwargs) that build ``name`` small: SMALL_INPUT, or less for models made for
    smaller inputs (8x8 MLPs), or its entry in SMALL_SETTINGS."""
    default = default_cfg(name)["input_size"][-1]
    return SMALL_SETTINGS.get(name, (min(SMALL_INPUT, default), {}))


@pytest.mark.parametrize("name", MODELS)
def test_model_builds_and_runs_forward(name):
    meta = default_cfg(name)
    assert meta["input_size"][0] == 3 and meta["family"] == model_family(name)
    size, kwargs = small_setting(name)
    net = create_model(name, num_classes=4, kernels="composite", **kwargs)
    net.set_train(False)
    make_inputs = family_hooks(name).example_inputs
    if make_inputs is not None:   # a model whose inputs are not one image (point clouds, ...)
        outs = net(*make_inputs(net))
        flat = [o for out in outs for o in (out if isinstance(out, (tuple, list)) else [out])]
        assert all(np.isfinite(o.asnumpy()).all() for o in flat)
        return
    x = ms.Tensor(np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32))
    out = net(x)
    assert tuple(out.shape[:2]) == (2, 4) and np.isfinite(out.asnumpy()).all()  # logits, or per-pixel logits


def test_family_hooks_are_declared_objects():
    for name in MODELS:
        hooks = family_hooks(name)
        assert all(callable(f) for f in hooks.param_filters.values())
        if hooks.kernels:
            create_model(name, num_classes=4, kernels="composite")
        else:
            with pytest.raises(ValueError, match="no custom kernels"):
                create_model(name, kernels="custom")


EXPORTED = ["resnet20", "ghostnet_100", "vig_ti_224_gelu", "snnmlp_t", "adder_resnet20", "adabin_resnet20",
            "maskgroup_tiny", "shot_mlp", "vit_pico_patch8_56", "swin_tiny_patch4_window7_224", "darts_v2",
            "segformer_mit_tiny", "tokenfusion_mit_tiny", "tokenfusion_gen_tiny"]  # smallest per family


@pytest.mark.parametrize("name", EXPORTED)
def test_smallest_of_each_family_round_trips_mindir(name, tmp_path):
    size, kwargs = small_setting(name)
    net = create_model(name, num_classes=4, kernels="composite", **kwargs)
    make_inputs = family_hooks(name).example_inputs
    inputs = [t.asnumpy() for t in make_inputs(net)] if make_inputs else (2, 3, size, size)
    report = export_and_verify(net, inputs, str(tmp_path / name), "MINDIR")
    assert report["verified"] and report["max_abs_err"] < 1e-4


def test_every_family_is_covered_by_the_export_contract():
    covered = {model_family(n) for n in EXPORTED}
    assert {model_family(n) for n in MODELS} <= covered


CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True))
_BUILT = {}


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(p, ROOT) for p in CONFIGS])
def test_config_validates_and_builds(path):
    cfg = load_config(path)
    key = (cfg.model.name, cfg.model.num_classes, cfg.model.in_channels, str(sorted(cfg.model.kwargs.items())))
    if key not in _BUILT:
        _BUILT[key] = sum(int(np.prod(p.shape)) for p in build_model(cfg.model).trainable_params())
    assert _BUILT[key] > 0
