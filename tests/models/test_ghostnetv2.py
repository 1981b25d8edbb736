"""GhostNetV2 / GhostNet: layer table, counts, shapes, DFC placement, conversion, training, export.

Reference figures come from the backbone spec, section 1 (parameter and MAC totals tagged [V],
per-bottleneck counts and resolved widths of 1.3, key names and shapes of 1.6).
"""
import importlib
import math

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

import mindcv_ext
from mindcv_ext.convert import ConversionError, convert_state_dict
from mindcv_ext.models import ghostnetv2 as gnv2
from mindcv_ext.utils.summary import count_macs, count_params

ms.set_context(mode=ms.PYNATIVE_MODE)

V2_NAMES = ("ghostnetv2_100", "ghostnetv2_130", "ghostnetv2_160")

# spec 1.1 / section 0 table [V]
SPEC_PARAMS = {"ghostnetv2_100": 6_156_908, "ghostnetv2_130": 8_960_404, "ghostnetv2_160": 12_392_698}
SPEC_MACS = {"ghostnetv2_100": 167_048_288, "ghostnetv2_130": 269_322_976, "ghostnetv2_160": 398_607_224}

# spec 1.3: parameters of blocks.0.0 ... blocks.8.3 at 1.0x (weights + BN affine)
SPEC_BLOCK_PARAMS_100 = [464, 2_564, 5_232, 12_516, 20_392, 36_360, 37_020, 34_100, 34_100, 221_872,
                         393_008, 448_856, 329_840, 791_840, 329_840, 791_840]

# spec 1.3: (mid, out) per bottleneck, stem width, last conv width, SE reduced widths
SPEC_WIDTHS = {
    "ghostnetv2_100": (16, [(16, 16), (48, 24), (72, 24), (72, 40), (120, 40), (240, 80), (200, 80),
                            (184, 80), (184, 80), (480, 112), (672, 112), (672, 160)] + [(960, 160)] * 4,
                       960, [20, 32, 120, 168, 168, 240, 240]),
    "ghostnetv2_130": (20, [(20, 20), (64, 32), (92, 32), (92, 52), (156, 52), (312, 104), (260, 104),
                            (240, 104), (240, 104), (624, 144), (872, 144), (872, 208)] + [(1248, 208)] * 4,
                       1248, [24, 40, 156, 220, 220, 312, 312]),
    "ghostnetv2_160": (24, [(24, 24), (76, 40), (116, 40), (116, 64), (192, 64), (384, 128), (320, 128),
                            (296, 128), (296, 128), (768, 180), (1076, 180), (1076, 256)] + [(1536, 256)] * 4,
                       1536, [28, 48, 192, 268, 268, 384, 384]),
}

BLOCK_KEYS = ["blocks.0.0", "blocks.1.0", "blocks.2.0", "blocks.3.0", "blocks.4.0", "blocks.5.0",
              "blocks.6.0", "blocks.6.1", "blocks.6.2", "blocks.6.3", "blocks.6.4", "blocks.7.0",
              "blocks.8.0", "blocks.8.1", "blocks.8.2", "blocks.8.3"]


def _bottlenecks(net):
    return [block for stage in list(net.blocks)[:9] for block in stage]


def _n_params(cell):
    return sum(int(np.prod(p.shape)) for p in cell.trainable_params())


def _input(shape, seed=0):
    return ms.Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


_BUILT = {}


def _model(name):
    """One instance per model name for the structural tests (built once, ImageNet head)."""
    if name not in _BUILT:
        _BUILT[name] = mindcv_ext.create_model(name, kernels="composite")
        _BUILT[name].set_train(False)
    return _BUILT[name]


@pytest.fixture(scope="module")
def v2_100():
    return _model("ghostnetv2_100")


# ------------------------------------------------------------------------------ registry, table

def test_registered():
    for name in V2_NAMES + ("ghostnet_100",):
        assert mindcv_ext.models.is_model(name)
        assert mindcv_ext.models.model_family(name) == "ghostnetv2"


@pytest.mark.parametrize("name", V2_NAMES)
def test_param_count_matches_spec(name):
    net = _model(name)
    assert count_params(net) == SPEC_PARAMS[name]


def test_per_bottleneck_params_100(v2_100):
    assert [_n_params(b) for b in _bottlenecks(v2_100)] == SPEC_BLOCK_PARAMS_100


@pytest.mark.parametrize("name", V2_NAMES)
def test_resolved_widths(name):
    stem, rows, last, se_widths = SPEC_WIDTHS[name]
    net = _model(name)
    assert net.conv_stem.out_channels == stem
    got = [(b.ghost1.ghost_out, b.ghost2.ghost_out) for b in _bottlenecks(net)]
    assert got == rows
    assert net.num_features == last
    assert net.blocks[9][0].conv.out_channels == last
    assert net.conv_head.out_channels == 1280  # not width-scaled
    se = [b.se.rd_channels for b in _bottlenecks(net) if isinstance(b.se, gnv2.SqueezeExcite)]
    assert se == se_widths


def test_dfc_only_from_third_bottleneck(v2_100):
    kinds = [type(b.ghost1) for b in _bottlenecks(v2_100)]
    assert kinds[:2] == [gnv2.GhostModule] * 2
    assert kinds[2:] == [gnv2.DFCGhostModule] * 14
    assert all(type(b.ghost2) is gnv2.GhostModule for b in _bottlenecks(v2_100))
    v1 = _model("ghostnet_100")
    assert not any(isinstance(b.ghost1, gnv2.DFCGhostModule) for b in _bottlenecks(v1))
    # GhostNet V1 is V2 without the DFC branches: same parameters otherwise
    dfc = sum(_n_params(b.ghost1.short_conv) for b in _bottlenecks(v2_100)[2:])
    assert count_params(v1) == count_params(v2_100) - dfc
    v1_names = {p.name for p in v1.get_parameters()}
    v2_names = {p.name for p in v2_100.get_parameters() if ".short_conv." not in p.name}
    assert v1_names == v2_names


def test_batchnorm_matches_pytorch_defaults():
    # PyTorch momentum 0.1: running = 0.9 * running + 0.1 * batch statistic; eps 1e-5
    bn = gnv2._bn(3)
    bn.set_train(True)
    x = _input((4, 3, 5, 5), seed=1) + 2.0
    bn(x)
    batch_mean = x.asnumpy().mean(axis=(0, 2, 3))
    np.testing.assert_allclose(bn.moving_mean.asnumpy(), 0.1 * batch_mean, rtol=1e-5, atol=1e-6)
    assert abs(bn.eps - 1e-5) < 1e-12


def test_layer_details_follow_official(v2_100):
    # every BN as above; explicit symmetric padding; bias only in SE and conv_head
    reference = gnv2._bn(1)
    for name, cell in v2_100.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            assert cell.momentum == reference.momentum and cell.eps == reference.eps, name
        if isinstance(cell, nn.Conv2d):
            assert cell.pad_mode == "pad", name
            assert cell.has_bias == (name == "conv_head" or ".se.conv_" in name), name
    assert isinstance(v2_100.dropout, nn.Dropout)
    assert abs(v2_100.dropout.p - 0.2) < 1e-7
    assert isinstance(v2_100.classifier, nn.Dense) and v2_100.classifier.has_bias


def test_default_initialisation_is_pytorch_like(v2_100):
    # spec 1.2: no custom init, i.e. PyTorch defaults: conv/linear weights and biases uniform in
    # +-1/sqrt(fan_in); BN gamma 1, beta 0
    for cell, fan_in in ((v2_100.conv_head, 960), (v2_100.classifier, 1280)):
        bound = 1.0 / math.sqrt(fan_in)
        w, b = cell.weight.asnumpy(), cell.bias.asnumpy()
        assert np.abs(w).max() <= bound * (1 + 1e-5) and np.abs(b).max() <= bound * (1 + 1e-5)
        assert abs(w.std() * math.sqrt(3) / bound - 1.0) < 0.02  # uniform, not a narrower init
    np.testing.assert_array_equal(v2_100.bn1.gamma.asnumpy(), np.ones(16, np.float32))
    np.testing.assert_array_equal(v2_100.bn1.beta.asnumpy(), np.zeros(16, np.float32))


SPEC_SHAPES_100 = {  # spec 1.6
    "conv_stem.weight": (16, 3, 3, 3),
    "bn1.gamma": (16,),
    "blocks.1.0.ghost1.primary_conv.0.weight": (24, 16, 1, 1),
    "blocks.1.0.ghost1.primary_conv.1.moving_variance": (24,),
    "blocks.1.0.ghost1.cheap_operation.0.weight": (24, 1, 3, 3),
    "blocks.2.0.ghost1.short_conv.0.weight": (72, 24, 1, 1),
    "blocks.2.0.ghost1.short_conv.1.gamma": (72,),
    "blocks.2.0.ghost1.short_conv.2.weight": (72, 1, 1, 5),
    "blocks.2.0.ghost1.short_conv.3.beta": (72,),
    "blocks.2.0.ghost1.short_conv.4.weight": (72, 1, 5, 1),
    "blocks.2.0.ghost1.short_conv.5.moving_mean": (72,),
    "blocks.3.0.conv_dw.weight": (72, 1, 5, 5),
    "blocks.3.0.bn_dw.gamma": (72,),
    "blocks.3.0.se.conv_reduce.weight": (20, 72, 1, 1),
    "blocks.3.0.se.conv_reduce.bias": (20,),
    "blocks.3.0.se.conv_expand.weight": (72, 20, 1, 1),
    "blocks.3.0.se.conv_expand.bias": (72,),
    "blocks.6.3.se.conv_reduce.weight": (120, 480, 1, 1),
    "blocks.1.0.ghost2.primary_conv.0.weight": (12, 48, 1, 1),
    "blocks.1.0.ghost2.cheap_operation.0.weight": (12, 1, 3, 3),
    "blocks.1.0.shortcut.0.weight": (16, 1, 3, 3),
    "blocks.1.0.shortcut.1.gamma": (16,),
    "blocks.1.0.shortcut.2.weight": (24, 16, 1, 1),
    "blocks.1.0.shortcut.3.gamma": (24,),
    "blocks.9.0.conv.weight": (960, 160, 1, 1),
    "blocks.9.0.bn1.gamma": (960,),
    "conv_head.weight": (1280, 960, 1, 1),
    "conv_head.bias": (1280,),
    "classifier.weight": (1000, 1280),
    "classifier.bias": (1000,),
}


def test_parameter_names_and_shapes(v2_100):
    params = {p.name: tuple(p.shape) for p in v2_100.get_parameters()}
    for key, shape in SPEC_SHAPES_100.items():
        assert params.get(key) == shape, key
    # no DFC branch in the first two bottlenecks, no shortcut where the residual is identity
    assert not any(k.startswith(("blocks.0.0.ghost1.short_conv", "blocks.1.0.ghost1.short_conv")) for k in params)
    assert not any(k.startswith("blocks.2.0.shortcut") for k in params)


# ------------------------------------------------------------------------------ MACs

@pytest.mark.parametrize("name", V2_NAMES)
def test_macs_match_spec(name):
    net = _model(name)
    macs = count_macs(net, (1, 3, 224, 224))
    assert abs(macs - SPEC_MACS[name]) / SPEC_MACS[name] < 0.01
    # conv + linear + SE counted exactly as in the spec's table
    assert macs == SPEC_MACS[name]


def test_dfc_macs_use_pooled_resolution():
    module = gnv2.DFCGhostModule(8, 16, backend="composite")
    x = _input((2, 8, 7, 7))
    out = module(x)
    expected = 2 * 7 * 7 * (8 * 8 + 8 * 9)            # primary 1x1 + cheap 3x3 depthwise
    expected += 2 * 3 * 3 * 16 * (8 + 5 + 5)           # gate convs on the 2x2-pooled 3x3 map
    assert module.macs((x,), out) == expected


# ------------------------------------------------------------------------------ forward shapes

@pytest.mark.parametrize("name", V2_NAMES + ("ghostnet_100",))
def test_output_shapes(name):
    net = _model(name)
    x = _input((2, 3, 64, 64))
    feats = net.forward_features(x)
    assert feats.shape == (2, net.num_features, 2, 2)
    assert net.forward_head(feats).shape == (2, 1000)


def test_num_classes_and_in_channels():
    net = mindcv_ext.create_model("ghostnetv2_100", num_classes=7, in_channels=1, kernels="composite")
    net.set_train(False)
    assert net.classifier.weight.shape == (7, 1280)
    assert net(_input((2, 1, 64, 64))).shape == (2, 7)
    headless = gnv2.GhostNetV2(num_classes=0)
    assert isinstance(headless.classifier, nn.Identity)
    assert headless.forward_head(ms.Tensor(np.ones((2, 960, 1, 1), np.float32))).shape == (2, 1280)


@pytest.mark.parametrize("shape", [(1, 3, 65, 47), (2, 3, 32, 32), (1, 3, 33, 97)])
def test_odd_and_small_inputs(v2_100, shape):
    feats = v2_100.forward_features(_input(shape))
    assert feats.shape == (shape[0], 960, math.ceil(shape[2] / 32), math.ceil(shape[3] / 32))
    logits = v2_100.forward_head(feats).asnumpy()
    assert logits.shape == (shape[0], 1000) and np.isfinite(logits).all()


def test_odd_ghost_width_is_trimmed():
    module = gnv2.GhostModule(6, 7)
    assert module(_input((1, 6, 5, 5))).shape == (1, 7, 5, 5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_classes"):
        mindcv_ext.create_model("ghostnetv2_100", num_classes=-1)
    with pytest.raises(ValueError, match="in_channels"):
        mindcv_ext.create_model("ghostnetv2_100", in_channels=0)
    with pytest.raises(ValueError, match="drop_rate"):
        mindcv_ext.create_model("ghostnetv2_100", drop_rate=1.5)
    with pytest.raises(ValueError, match="drop_path_rate"):
        mindcv_ext.create_model("ghostnetv2_100", drop_path_rate=-0.1)
    with pytest.raises(ValueError, match="kernels"):
        mindcv_ext.create_model("ghostnetv2_100", kernels="fast")
    with pytest.raises(ValueError, match="backend"):  # one option: kernels (no second spelling)
        mindcv_ext.create_model("ghostnetv2_100", kernels="custom", backend="composite")
    with pytest.raises(ValueError, match="width"):
        gnv2.GhostNetV2(width=0)
    with pytest.raises(ValueError, match="version"):
        gnv2.GhostNetV2(version="v3")
    with pytest.raises(TypeError):
        mindcv_ext.create_model("ghostnetv2_100", no_such_option=1)


def test_drop_path_is_optional_and_linear():
    net = mindcv_ext.create_model("ghostnetv2_100", drop_path_rate=0.15, kernels="composite")
    rates = [b.drop_path.drop_prob if not isinstance(b.drop_path, nn.Identity) else 0.0
             for b in _bottlenecks(net)]
    assert rates[0] == 0.0 and abs(rates[-1] - 0.15) < 1e-9
    assert all(b > a for a, b in zip(rates, rates[1:]))
    assert count_params(net) == SPEC_PARAMS["ghostnetv2_100"]


# ------------------------------------------------------------------------------ shared layers

def test_make_divisible_rule():
    from mindcv_ext.layers.helpers import make_divisible
    # nearest multiple of 4, at least 4, plus 4 when rounding lost more than 10 % (spec 1.2)
    assert [make_divisible(v, 4) for v in (16 * 1.3, 48 * 1.3, 72 * 1.6, 1.0, 10.0, 962.0)] == \
        [20, 64, 116, 4, 12, 964]
    assert make_divisible(5.0, 8) == 8 and make_divisible(9.0, 8, min_value=16) == 16
    with pytest.raises(ValueError, match="divisor"):
        make_divisible(10, 0)
    with pytest.raises(ValueError, match="value"):
        make_divisible(-3, 4)


def test_squeeze_excite_hard_sigmoid_gate():
    se = gnv2.SqueezeExcite(12, rd_ratio=0.25, rd_divisor=4, gate="hard_sigmoid")
    assert se.rd_channels == 4 and se.conv_reduce.has_bias and se.conv_expand.has_bias
    x = _input((2, 12, 3, 5), seed=8)
    pooled = ms.Tensor(x.asnumpy().mean(axis=(2, 3), keepdims=True))
    z = se.conv_expand(nn.ReLU()(se.conv_reduce(pooled))).asnumpy() * 3.0  # reach both clip ends
    se.conv_expand.weight.set_data(se.conv_expand.weight * 3.0)
    se.conv_expand.bias.set_data(se.conv_expand.bias * 3.0)
    expected = x.asnumpy() * np.clip(z + 3.0, 0.0, 6.0) / 6.0
    np.testing.assert_allclose(se(x).asnumpy(), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="gate"):
        gnv2.SqueezeExcite(8, gate="swish")


# ------------------------------------------------------------------------------ DFC gate details

def test_dfc_gate_on_7x7_uses_3x3_nearest_map():
    # spec 1.5: on 7x7 the gate is computed on the floor-pooled 3x3 map, then resized with
    # nearest (source index floor(dst * 3 / 7) = [0, 0, 0, 1, 1, 2, 2])
    module = gnv2.DFCGhostModule(4, 6, backend="composite")
    module.set_train(False)
    x = _input((1, 4, 7, 7), seed=3)
    ones = ms.Tensor(np.ones((1, 6, 7, 7), np.float32))
    gate = gnv2.DFCAttention.construct(module, x, ones).asnumpy()
    pooled = x.asnumpy()[:, :, :6, :6].reshape(1, 4, 3, 2, 3, 2).mean(axis=(3, 5))
    small = gnv2.DFCAttention.construct(module, ms.Tensor(pooled.repeat(2, 2).repeat(2, 3)),
                                        ms.Tensor(np.ones((1, 6, 6, 6), np.float32))).asnumpy()[:, :, ::2, ::2]
    src = [0, 0, 0, 1, 1, 2, 2]
    np.testing.assert_allclose(gate, small[:, :, src][:, :, :, src], rtol=1e-5, atol=1e-6)
    assert np.abs(np.diff(gate[0, :, [2, 3], 0], axis=0)).max() > 0  # rows 2 and 3 come from different cells


def test_dfc_gate_on_one_pixel_map():
    # a 1x1 map cannot be 2x2-pooled; the pool is then the identity on that axis
    module = gnv2.DFCGhostModule(4, 6, backend="composite")
    module.set_train(False)
    x = _input((2, 4, 1, 1), seed=4)
    out = module(x).asnumpy()
    x1 = module.primary_conv(x)
    ghost = np.concatenate([x1.asnumpy(), module.cheap_operation(x1).asnumpy()], axis=1)
    gate = 1.0 / (1.0 + np.exp(-module.short_conv(x).asnumpy()))
    np.testing.assert_allclose(out, ghost * gate, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ conversion

_MS_TO_TORCH_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                   "moving_variance": "running_var"}


def _official_state_dict(net, seed=0):
    """Random official-style state dict for ``net`` (as the released files name their entries),
    plus the MindSpore name each entry must land on."""
    rng = np.random.default_rng(seed)
    bn_cells = {name for name, cell in net.cells_and_names() if isinstance(cell, nn.BatchNorm2d)}
    sd, where = {}, {}
    for p in net.get_parameters():
        prefix, leaf = p.name.rsplit(".", 1)
        key = f"{prefix}.{_MS_TO_TORCH_BN[leaf]}" if prefix in bn_cells else p.name
        value = rng.standard_normal(tuple(p.shape)).astype(np.float32)
        sd[key] = np.abs(value) + 0.5 if leaf == "moving_variance" else value
        where[key] = p.name
    for prefix in bn_cells:
        sd[f"{prefix}.num_batches_tracked"] = np.array(1000, np.int64)
    sd["total_ops"] = np.array([1.67e8])
    sd["total_params"] = np.array([6.16e6])
    sd["blocks.2.0.ghost1.total_ops"] = np.array([1.0])
    return sd, where


def test_converter_maps_every_entry(v2_100):
    sd, where = _official_state_dict(v2_100)
    # official key names from spec 1.6 are what the generated dict holds
    for key in ("blocks.2.0.ghost1.short_conv.1.weight", "blocks.2.0.ghost1.short_conv.1.running_var",
                "blocks.9.0.bn1.running_mean", "bn1.bias", "blocks.1.0.shortcut.3.weight"):
        assert key in sd
    mapped = convert_state_dict("ghostnetv2_100", {"state_dict": sd})
    assert set(mapped) == {p.name for p in v2_100.get_parameters()}
    for key, ms_name in where.items():
        np.testing.assert_array_equal(mapped[ms_name], sd[key])
    # spot checks from spec 1.6
    assert mapped["blocks.2.0.ghost1.short_conv.2.weight"].shape == (72, 1, 1, 5)
    np.testing.assert_array_equal(mapped["blocks.2.0.ghost1.short_conv.2.weight"],
                                  sd["blocks.2.0.ghost1.short_conv.2.weight"])
    np.testing.assert_array_equal(mapped["blocks.2.0.ghost1.short_conv.1.gamma"],
                                  sd["blocks.2.0.ghost1.short_conv.1.weight"])
    np.testing.assert_array_equal(mapped["blocks.2.0.ghost1.short_conv.5.moving_variance"],
                                  sd["blocks.2.0.ghost1.short_conv.5.running_var"])
    np.testing.assert_array_equal(mapped["blocks.9.0.bn1.beta"], sd["blocks.9.0.bn1.bias"])
    np.testing.assert_array_equal(mapped["blocks.3.0.se.conv_reduce.bias"], sd["blocks.3.0.se.conv_reduce.bias"])
    assert mapped["blocks.3.0.se.conv_reduce.weight"].shape == (20, 72, 1, 1)
    assert mapped["classifier.weight"].shape == (1000, 1280)
    # the converted values load into the model under the same names
    net = mindcv_ext.create_model("ghostnetv2_100", kernels="composite")
    not_loaded, _ = ms.load_param_into_net(net, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in mapped.items()})
    assert not not_loaded
    loaded = {p.name: p.asnumpy() for p in net.get_parameters()}
    np.testing.assert_array_equal(loaded["blocks.8.3.ghost1.short_conv.4.weight"],
                                  sd["blocks.8.3.ghost1.short_conv.4.weight"])
    np.testing.assert_array_equal(loaded["blocks.6.3.shortcut.1.moving_mean"],
                                  sd["blocks.6.3.shortcut.1.running_mean"])


def test_converter_v1_checkpoint():
    net = _model("ghostnet_100")
    sd, where = _official_state_dict(net, seed=1)
    mapped = convert_state_dict("ghostnet_100", sd)
    assert len(mapped) == len(where)
    np.testing.assert_array_equal(mapped["blocks.4.0.ghost1.primary_conv.1.moving_mean"],
                                  sd["blocks.4.0.ghost1.primary_conv.1.running_mean"])


def test_converter_reports_bad_checkpoints(v2_100):
    sd, _ = _official_state_dict(v2_100, seed=2)
    broken_bn = dict(sd)
    del broken_bn["blocks.4.0.ghost2.primary_conv.1.running_var"]
    with pytest.raises(ConversionError, match="blocks.4.0.ghost2.primary_conv.1"):
        convert_state_dict("ghostnetv2_100", broken_bn)
    # a missing entry, a module without its DFC branch and a classifier for another number of
    # classes are all named in one error
    bad = {k: v for k, v in sd.items()
           if k != "blocks.5.0.conv_dw.weight" and not k.startswith("blocks.2.0.ghost1.short_conv.")}
    with pytest.raises(ConversionError) as info:
        convert_state_dict("ghostnetv2_100", bad, num_classes=10)
    message = str(info.value)
    for name in ("blocks.5.0.conv_dw.weight", "blocks.2.0.ghost1.short_conv.4.weight", "classifier.weight"):
        assert name in message
    # V1 and V2 files are told apart before any model is built
    v1_like = {k: v for k, v in sd.items() if ".short_conv." not in k}
    with pytest.raises(ConversionError, match="GhostNet V1"):
        convert_state_dict("ghostnetv2_100", v1_like)
    with pytest.raises(ConversionError, match="GhostNetV2"):
        convert_state_dict("ghostnet_100", sd)
    with pytest.raises(ConversionError, match="does not look like"):
        convert_state_dict("ghostnetv2_100", {"backbone.0.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ConversionError, match="unknown model"):
        gnv2.convert_official_state_dict(sd, "resnet50")


def test_timm_parity():
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    if "ghostnetv2_100" not in timm.list_models("ghostnetv2*"):
        pytest.skip("this timm has no ghostnetv2_100")
    torch.manual_seed(0)
    ref = timm.create_model("ghostnetv2_100", pretrained=False, num_classes=10)
    with torch.no_grad():  # non-trivial BN statistics
        for module in ref.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    ref.eval()
    sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    mapped = convert_state_dict("ghostnetv2_100", sd, num_classes=10)
    net = mindcv_ext.create_model("ghostnetv2_100", num_classes=10, kernels="composite")
    ms.load_param_into_net(net, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in mapped.items()})
    net.set_train(False)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net(ms.Tensor(x)).asnumpy(), expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------ training, backends, export

@pytest.mark.slow
def test_train_steps_reduce_loss():
    ms.set_seed(0)
    net = mindcv_ext.create_model("ghostnetv2_100", num_classes=4, drop_rate=0.0, kernels="composite")
    x = _input((8, 3, 32, 32), seed=5)
    y = ms.Tensor(np.arange(8) % 4, ms.int32)
    opt = nn.SGD(net.trainable_params(), learning_rate=0.05, momentum=0.9)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.CrossEntropyLoss()), opt)
    step.set_train(True)
    losses = [float(step(x, y).asnumpy()) for _ in range(5)]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses


def _custom_dfc_unavailable():
    """Why the custom DFC kernel cannot run here, or None when it can."""
    try:
        importlib.import_module("ascend_kernels.dfc")
        from ascend_kernels import kind_available
    except ImportError as err:
        return f"custom DFC kernel backend not importable ({err})"
    if not kind_available("hybrid"):
        return "Hybrid-DSL kernels cannot compile on this device target (no AKG plugin)"
    return None


@pytest.mark.slow  # compiles one fused kernel per DFC layer shape (14) on first use
@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 224, 224)], ids=["64px", "224px"])  # 224: 7x7 gated on 3x3
def test_custom_and_composite_dfc_agree(shape):
    reason = _custom_dfc_unavailable()
    if reason:
        pytest.skip(reason)
    x = _input(shape, seed=6)
    composite = mindcv_ext.create_model("ghostnetv2_100", num_classes=5, kernels="composite")
    custom = mindcv_ext.create_model("ghostnetv2_100", num_classes=5, kernels="custom")
    rng = np.random.default_rng(6)
    values = {}
    for p in composite.get_parameters():  # non-trivial BN statistics, so BN folding is exercised
        value = p.asnumpy()
        if p.name.endswith("moving_mean"):
            value = rng.uniform(-0.2, 0.2, value.shape).astype(np.float32)
        elif p.name.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
        values[p.name] = ms.Parameter(ms.Tensor(value), name=p.name)
    for net in (composite, custom):
        not_loaded, _ = ms.load_param_into_net(net, dict(values))
        assert not not_loaded
        net.set_train(False)
    dfc_layers = [b.ghost1 for b in _bottlenecks(custom)[2:]]
    assert all(layer.use_custom() for layer in dfc_layers)
    assert not any(b.ghost1.use_custom() for b in _bottlenecks(composite)[2:])
    np.testing.assert_allclose(custom(x).asnumpy(), composite(x).asnumpy(), rtol=1e-4, atol=1e-5)


def test_export_mindir_round_trip(tmp_path):
    net = mindcv_ext.create_model("ghostnetv2_100", num_classes=6, kernels="composite")
    net.set_train(False)
    x = _input((1, 3, 64, 64), seed=7)
    expected = net(x).asnumpy()
    base = str(tmp_path / "ghostnetv2_100")
    ms.export(net, x, file_name=base, file_format="MINDIR")
    graph = nn.GraphCell(ms.load(base + ".mindir"))
    np.testing.assert_allclose(graph(x).asnumpy(), expected, rtol=1e-5, atol=1e-5)
    ms.set_context(mode=ms.PYNATIVE_MODE)


def test_configs_validate():
    from mindcv_ext.tasks import load_config
    import os
    root = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "ghostnetv2")
    for width in ("100", "130", "160"):
        cfg = load_config(os.path.join(root, f"ghostnetv2_{width}_imagenet.yaml"))
        assert cfg.model.name == f"ghostnetv2_{width}"
        # spec 1.8
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.eps, cfg.optim.weight_decay) == ("rmsprop", 0.064, 1e-3, 1e-5)
        assert (cfg.sched.name, cfg.sched.decay_epochs, cfg.sched.decay_rate, cfg.sched.warmup_epochs) == \
            ("step", 2.4, 0.973, 3.0)
        assert (cfg.train.epochs, cfg.train.ema, cfg.train.ema_decay) == (450, True, 0.9999)
        assert (cfg.model.drop_rate, cfg.loss.label_smoothing, cfg.data.re_prob) == (0.2, 0.1, 0.2)
        assert cfg.data.auto_augment == "rand-m9-mstd0.5"
    cfg = load_config(os.path.join(root, "ghostnetv2_100_digits.yaml"))
    assert (cfg.model.name, cfg.model.num_classes, cfg.data.dataset) == ("ghostnetv2_100", 10, "digits")
