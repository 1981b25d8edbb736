"""SNN-MLP: sizes against the spec's exact table, layout, checkpoint mapping, training, export.

Reference figures: specs/backbones.md section 0 (parameters, MACs at 3x224x224) and 3.6 (official
state_dict keys and shapes). Model tests use the composite LIF (the kernels have their own tests
in tests/kernels/test_lif.py).
"""
import os

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn

import ascend_kernels
import mindcv_ext
from mindcv_ext.tasks import load_config
from mindcv_ext.models import snnmlp
from mindcv_ext.utils.summary import count_macs, count_params

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SPEC_PARAMS = {"snnmlp_t": 28_335_736, "snnmlp_s": 49_703_080, "snnmlp_b": 87_897_288}
SPEC_MACS = {"snnmlp_t": 4.363e9, "snnmlp_s": 8.533e9, "snnmlp_b": 15.154e9}
SPEC_LIF_SCALARS = {"snnmlp_t": 48, "snnmlp_s": 96, "snnmlp_b": 96}
# official layout (specs/backbones.md 3.1): embed dim, depths
SPEC_LAYOUT = {"snnmlp_t": (96, (2, 2, 6, 2)), "snnmlp_s": (96, (2, 2, 18, 2)), "snnmlp_b": (128, (2, 2, 18, 2))}


@pytest.fixture(autouse=True)
def _pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ascend_kernels.set_backend(None)
    yield
    ascend_kernels.set_backend(None)


@pytest.fixture(scope="module")
def t_net():
    """One full-size snnmlp_t (composite LIF) shared by the read-only tests."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(0)
    net = mindcv_ext.create_model("snnmlp_t", kernels="composite")
    net.set_train(False)
    return net


def _rand(*shape, seed=0):
    return Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _tiny(num_classes=4, **kw):
    """snnmlp_t's code path at a test size: C=16, one block per stage."""
    kw.setdefault("kernels", "composite")
    return mindcv_ext.create_model("snnmlp_t", num_classes=num_classes, embed_dim=16, depths=(1, 1, 1, 1), **kw)


# ----------------------------------------------------------------------------------------------
# Sizes
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["snnmlp_t", "snnmlp_s", "snnmlp_b"])
def test_parameter_count_matches_spec(name, t_net):
    net = t_net if name == "snnmlp_t" else mindcv_ext.create_model(name, kernels="composite")
    assert count_params(net) == SPEC_PARAMS[name]
    assert count_params(net, trainable_only=False) == SPEC_PARAMS[name]  # no buffers
    lif = [p for p in net.trainable_params() if snnmlp.lif_param_filter(p.name)]
    assert len(lif) == SPEC_LIF_SCALARS[name]
    assert all(tuple(p.shape) == (1,) for p in lif)


def test_macs_snnmlp_t_within_one_percent(t_net):
    macs = count_macs(t_net, (1, 3, 224, 224))
    assert abs(macs - SPEC_MACS["snnmlp_t"]) / SPEC_MACS["snnmlp_t"] < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("name", ["snnmlp_s", "snnmlp_b"])
def test_macs_s_b_within_one_percent(name):
    net = mindcv_ext.create_model(name, kernels="composite")
    macs = count_macs(net, (1, 3, 224, 224))
    assert abs(macs - SPEC_MACS[name]) / SPEC_MACS[name] < 0.01


def test_block_parameter_formula():
    # spec 3.3: LIFBlock(d) = 12 d^2 + 29 d + 4, PatchMerging(d) = 8 d^2 + 8 d
    for d in (8, 24):
        assert count_params(snnmlp.LIFBlock(d, backend="composite")) == 12 * d * d + 29 * d + 4
        assert count_params(snnmlp.PatchMerging(d)) == 8 * d * d + 8 * d


# ----------------------------------------------------------------------------------------------
# Layout and shapes
# ----------------------------------------------------------------------------------------------
def test_variants_follow_the_official_layout():
    for name, (dim, depths) in SPEC_LAYOUT.items():
        cfg = snnmlp.MODEL_CFGS[name]
        assert cfg["embed_dim"] == dim and tuple(cfg["depths"]) == depths


def test_official_key_shapes_spot_check(t_net):
    shapes = {p.name: tuple(p.shape) for p in t_net.get_parameters()}
    expect = {
        "patch_embed.proj.weight": (96, 3, 4, 4), "patch_embed.proj.bias": (96,),
        "patch_embed.norm.gamma": (96,),
        "layers.0.blocks.1.lif_module.conv2_1.weight": (96, 96, 1, 1),
        "layers.1.blocks.0.lif_module.dw1.weight": (192, 1, 3, 3),
        "layers.2.blocks.5.lif_module.lif1.tau": (1,), "layers.2.blocks.5.lif_module.lif2.Vth": (1,),
        "layers.2.blocks.3.mlp.fc1.weight": (1536, 384, 1, 1), "layers.3.blocks.1.mlp.fc2.weight": (768, 3072, 1, 1),
        "layers.2.downsample.norm.beta": (1536,), "layers.2.downsample.reduction.weight": (768, 1536, 1, 1),
        "norm.gamma": (768,), "head.weight": (1000, 768), "head.bias": (1000,),
    }
    for key, shape in expect.items():
        assert shapes[key] == shape, key
    assert "layers.0.downsample.reduction.bias" not in shapes
    assert not any(k.startswith("layers.3.downsample") for k in shapes)


def test_every_norm_is_groupnorm_with_one_group():
    net = _tiny()
    norms = [c for _, c in net.cells_and_names() if isinstance(c, (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm2d))]
    assert norms and all(isinstance(c, nn.GroupNorm) and c.num_groups == 1 for c in norms)
    # five per block, one per merge, patch embed and final
    assert len(norms) == 5 * 4 + 3 + 2


def test_lif_directions_and_init():
    net = _tiny(lif_init_tau=0.3, lif_init_vth=0.05)
    module = net.layers[0].blocks[0].lif_module
    assert module.lif1.dim == 2 and module.lif2.dim == 3  # lif1 along H, lif2 along W
    assert module.lif1.lif == 4
    assert float(module.lif1.tau.asnumpy()[0]) == pytest.approx(0.3)
    assert float(module.lif2.Vth.asnumpy()[0]) == pytest.approx(0.05)
    # builder defaults are the training script's values
    default = _tiny().layers[1].blocks[0].lif_module.lif2
    assert float(default.tau.asnumpy()[0]) == pytest.approx(0.25)
    assert float(default.Vth.asnumpy()[0]) == pytest.approx(0.1)


@pytest.mark.parametrize("size", [60])  # 60 -> maps 15, 8, 4, 2: odd sizes are padded
def test_forward_shapes(size):
    net = _tiny(num_classes=7)
    net.set_train(False)
    assert net(_rand(2, 3, size, size)).shape == (2, 7)
    feats = _tiny(num_classes=0)
    feats.set_train(False)
    assert feats(_rand(2, 3, size, size)).shape == (2, 128)


def test_lif_changes_the_output_and_off_switch_removes_it():
    x = _rand(2, 3, 32, 32, seed=1)
    ms.set_seed(3)
    on = _tiny(lif_init_vth=0.5)
    ms.set_seed(3)
    off = _tiny(lif=-1)
    for a, b in zip(on.get_parameters(), off.get_parameters()):
        b.set_data(a.data.copy())
    on.set_train(False)
    off.set_train(False)
    assert not np.allclose(on(x).asnumpy(), off(x).asnumpy(), atol=1e-4)


def test_patch_merging_channel_order():
    # spec 3.3: [x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]] along channels
    pm = snnmlp.PatchMerging(3)
    pm.norm = nn.Identity()
    pm.reduction = nn.Identity()
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 10)).astype(np.float32)
    want = np.concatenate([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], 1)
    np.testing.assert_array_equal(pm(Tensor(x)).asnumpy(), want)


def test_head_init_and_drop_path_schedule(t_net):
    net = t_net
    w = net.head.weight.asnumpy()
    assert abs(w.std() - 0.02) < 0.002 and abs(w.mean()) < 0.002  # trunc-normal, std 0.02
    assert np.all(net.head.bias.asnumpy() == 0)
    rates = [blk.drop_path.drop_prob for layer in net.layers for blk in layer.blocks
             if hasattr(blk.drop_path, "drop_prob")]
    assert len(rates) == 11 and rates[-1] == pytest.approx(0.2)  # first block has rate 0 (Identity)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="drop"):
        mindcv_ext.create_model("snnmlp_t", drop_path_rate=1.5)
    with pytest.raises(ValueError, match="depths"):
        mindcv_ext.create_model("snnmlp_t", depths=(2, 0, 2, 2))
    with pytest.raises(ValueError, match="kernels must be one of"):
        mindcv_ext.create_model("snnmlp_t", kernels="gpu")


# ----------------------------------------------------------------------------------------------
# Official checkpoint conversion
# ----------------------------------------------------------------------------------------------
def _official_state_dict(embed_dim, depths, num_classes=1000, seed=0):
    """Random tensors under the official key names and shapes of specs/backbones.md 3.6."""
    rng = np.random.default_rng(seed)
    sd = {}

    def put(key, shape):
        sd[key] = rng.standard_normal(shape).astype(np.float32)

    put("patch_embed.proj.weight", (embed_dim, 3, 4, 4))
    put("patch_embed.proj.bias", (embed_dim,))
    for t in ("weight", "bias"):
        put(f"patch_embed.norm.{t}", (embed_dim,))
    for s, depth in enumerate(depths):
        d = embed_dim * 2 ** s
        for b in range(depth):
            p = f"layers.{s}.blocks.{b}"
            for t in ("weight", "bias"):
                put(f"{p}.norm1.{t}", (d,))
                put(f"{p}.norm2.{t}", (d,))
                for n in ("norm1", "norm2", "norm3"):
                    put(f"{p}.lif_module.{n}.{t}", (d,))
            for c in ("conv1", "conv2_1", "conv2_2", "conv3"):
                put(f"{p}.lif_module.{c}.weight", (d, d, 1, 1))
                put(f"{p}.lif_module.{c}.bias", (d,))
            put(f"{p}.lif_module.dw1.weight", (d, 1, 3, 3))
            put(f"{p}.lif_module.dw1.bias", (d,))
            for lif in ("lif1", "lif2"):
                put(f"{p}.lif_module.{lif}.tau", (1,))
                put(f"{p}.lif_module.{lif}.Vth", (1,))
            put(f"{p}.mlp.fc1.weight", (4 * d, d, 1, 1))
            put(f"{p}.mlp.fc1.bias", (4 * d,))
            put(f"{p}.mlp.fc2.weight", (d, 4 * d, 1, 1))
            put(f"{p}.mlp.fc2.bias", (d,))
        if s < len(depths) - 1:
            for t in ("weight", "bias"):
                put(f"layers.{s}.downsample.norm.{t}", (4 * d,))
            put(f"layers.{s}.downsample.reduction.weight", (2 * d, 4 * d, 1, 1))
    final = embed_dim * 2 ** (len(depths) - 1)
    for t in ("weight", "bias"):
        put(f"norm.{t}", (final,))
    put("head.weight", (num_classes, final))
    put("head.bias", (num_classes,))
    return sd


def test_converter_maps_every_official_key():
    from mindcv_ext.convert import convert_state_dict
    sd = _official_state_dict(96, (2, 2, 6, 2))
    assert sum(v.size for v in sd.values()) == SPEC_PARAMS["snnmlp_t"]
    wrapped = {"model": {"module." + k: v for k, v in sd.items()}}  # training-checkpoint form
    mapped = convert_state_dict("snnmlp_t", wrapped, kernels="composite")
    assert len(mapped) == len(sd)
    np.testing.assert_array_equal(mapped["layers.1.blocks.0.norm1.gamma"], sd["layers.1.blocks.0.norm1.weight"])
    np.testing.assert_array_equal(mapped["layers.2.blocks.4.lif_module.norm3.beta"],
                                  sd["layers.2.blocks.4.lif_module.norm3.bias"])
    np.testing.assert_array_equal(mapped["layers.0.downsample.norm.gamma"], sd["layers.0.downsample.norm.weight"])
    np.testing.assert_array_equal(mapped["layers.3.blocks.1.lif_module.lif2.Vth"],
                                  sd["layers.3.blocks.1.lif_module.lif2.Vth"])
    assert mapped["layers.0.blocks.0.lif_module.lif1.tau"].shape == (1,)
    np.testing.assert_array_equal(mapped["head.weight"], sd["head.weight"])

    # the mapped values load into the model and land where the names say
    net = mindcv_ext.create_model("snnmlp_t", kernels="composite")  # a fresh one: this test writes
    not_loaded, _ = ms.load_param_into_net(net, {k: ms.Parameter(Tensor(v), name=k) for k, v in mapped.items()})
    assert not not_loaded
    params = dict(net.parameters_and_names())
    np.testing.assert_array_equal(params["norm.gamma"].asnumpy(), sd["norm.weight"])
    np.testing.assert_array_equal(params["layers.2.blocks.5.lif_module.dw1.weight"].asnumpy(),
                                  sd["layers.2.blocks.5.lif_module.dw1.weight"])


def test_converter_names_bad_keys():
    from mindcv_ext.convert import ConversionError, convert_state_dict
    sd = _official_state_dict(96, (2, 2, 6, 2))
    with pytest.raises(ConversionError, match="layers.0.blocks.0.attn.qkv.weight"):
        snnmlp.convert_official_state_dict({**sd, "layers.0.blocks.0.attn.qkv.weight": np.zeros((3,), np.float32)},
                                           "snnmlp_t")
    broken = dict(sd)
    del broken["layers.1.blocks.1.lif_module.lif1.tau"]
    broken["layers.2.blocks.0.mlp.fc1.bias"] = np.zeros((7,), np.float32)
    with pytest.raises(ConversionError, match=r"layers\.1\.blocks\.1\.lif_module\.lif1\.tau") as err:
        convert_state_dict("snnmlp_t", broken, kernels="composite")
    assert "layers.2.blocks.0.mlp.fc1.bias" in str(err.value)


def test_lif_param_filter():
    assert snnmlp.lif_param_filter("layers.0.blocks.1.lif_module.lif1.tau")
    assert snnmlp.lif_param_filter("layers.3.blocks.0.lif_module.lif2.Vth")
    assert not snnmlp.lif_param_filter("layers.0.blocks.1.lif_module.conv1.weight")
    assert not snnmlp.lif_param_filter("layers.0.blocks.1.norm1.gamma")


# ----------------------------------------------------------------------------------------------
# Training and export
# ----------------------------------------------------------------------------------------------
def test_loss_falls_on_a_tiny_batch():
    # 16x16 input: stage 0 runs 4x4 maps (one LIF group along each axis), later stages are tails
    ms.set_seed(0)
    net = _tiny(num_classes=4, drop_path_rate=0.0)
    x = _rand(8, 3, 16, 16, seed=5)
    y = Tensor(np.array([0, 1, 2, 3, 0, 1, 2, 3], np.int32))
    loss_fn = nn.CrossEntropyLoss()
    opt = nn.AdamWeightDecay(net.trainable_params(), learning_rate=1e-3, weight_decay=0.0)
    grad_fn = ms.value_and_grad(lambda a, b: loss_fn(net(a), b), None, opt.parameters)
    net.set_train(True)
    losses = []
    for _ in range(6):
        loss, grads = grad_fn(x, y)
        opt(grads)
        losses.append(float(loss.asnumpy()))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0], losses


def test_lif_scalars_receive_gradients():
    net = _tiny(num_classes=4)
    lif = [p for p in net.trainable_params() if snnmlp.lif_param_filter(p.name)]
    grad_fn = ms.grad(lambda a: net(a).sum(), None, lif)
    grads = grad_fn(_rand(2, 3, 16, 16, seed=6))
    # stage 0 (4x4 maps) has one full group of 4 per line; stages 1-3 (2x2, 1x1) are all tail
    by_name = {p.name: float(np.abs(g.asnumpy()).sum()) for p, g in zip(lif, grads)}
    assert by_name["layers.0.blocks.0.lif_module.lif1.Vth"] > 0
    assert by_name["layers.0.blocks.0.lif_module.lif2.tau"] > 0
    assert by_name["layers.1.blocks.0.lif_module.lif1.Vth"] == 0
    assert by_name["layers.2.blocks.0.lif_module.lif2.tau"] == 0


def test_export_mindir_matches(tmp_path):
    # built with the global backend (set to custom here); export must take the composite twin
    ms.set_seed(0)
    ascend_kernels.set_backend("custom")
    net = mindcv_ext.create_model("snnmlp_t", num_classes=10)
    net.set_train(False)
    x = _rand(1, 3, 32, 32, seed=7)
    base = str(tmp_path / "snnmlp_t")
    with ascend_kernels.exporting():
        expected = net(x).asnumpy()
        ms.export(net, x, file_name=base, file_format="MINDIR")
    with open(base + ".mindir", "rb") as fh:
        assert b"Custom" not in fh.read()
    got = nn.GraphCell(ms.load(base + ".mindir"))(x).asnumpy()
    assert got.shape == (1, 10)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant,drop_path", [("t", 0.2), ("s", 0.3), ("b", 0.5)])
def test_imagenet_configs_hold_the_recipe(variant, drop_path):
    cfg = load_config(os.path.join(REPO, "configs", "snnmlp", f"snnmlp_{variant}_imagenet.yaml"))
    assert cfg.model.name == f"snnmlp_{variant}" and mindcv_ext.models.is_model(cfg.model.name)
    assert cfg.model.drop_path_rate == pytest.approx(drop_path)
    assert cfg.optim.name == "adamw" and cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.optim.weight_decay == pytest.approx(0.05) and cfg.optim.filter_bias_and_bn is False
    # the official LIF optimizer: its own lr, untouched in epoch 0, clipped on its own at norm 5
    assert cfg.optim.extra_group == {"filter": "lif", "lr": 1e-4, "frozen_epochs": 1, "clip_grad": 5.0}
    assert cfg.train.epochs == 300 and cfg.sched.warmup_epochs == 20 and cfg.train.clip_grad == 5.0
    assert cfg.data.batch_size * 8 == 1024 and cfg.loss.label_smoothing == pytest.approx(0.1)
    assert (cfg.data.mixup, cfg.data.cutmix, cfg.data.re_prob) == (0.8, 1.0, 0.25)


def test_digits_config_is_small():
    cfg = load_config(os.path.join(REPO, "configs", "snnmlp", "snnmlp_t_digits.yaml"))
    assert cfg.data.dataset == "digits" and cfg.data.image_size in (32, 64)
    assert cfg.model.num_classes == 10 and cfg.train.epochs <= 10
    assert cfg.optim.extra_group["filter"] == "lif"
