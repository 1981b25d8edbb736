"""AdderNet post-training quantization: quantizers, plans, the integer layer, the pipeline.

Facts under test come from the compression spec, sections 2.2-2.4 (quantizer formulas, clustering,
lossless clamp, shared baseline), 6.1 (assertable checks) and 8 (energy figures).
"""
import json
import math
import os

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn, ops

from ascend_kernels.adder import numpy_reference
from mindcv_ext.config import ConfigError
from mindcv_ext.tasks import load_config
from mindcv_ext.layers.adder_conv import AdderConv2d
from mindcv_ext.quant import adder_ptq as ptq
from mindcv_ext.quant.adder_qlayer import QuantAdderConv2d
from mindcv_ext.tasks.adder_ptq import run_quantize
from mindcv_ext.quant.adder_quantizers import (ActivationQuantizer, WeightQuantizer, abs_quantile, clamp_to_plan,
                                               cluster_kernels, plan_redistribute, plan_shared)

ms.set_context(mode=ms.PYNATIVE_MODE)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _adder_np(x, w, stride=1, padding=0):
    """float64 adder forward (zero padding counts) from the kernel package's numpy reference."""
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, o = x.shape[0], w.shape[0]
    dummy = np.zeros((n, o, (xp.shape[2] - w.shape[2]) // stride + 1, (xp.shape[3] - w.shape[3]) // stride + 1))
    y, _, _ = numpy_reference(xp, np.asarray(w, np.float64), dummy, stride=stride)
    return y


def _int_distance_np(q_a, w2, stride=1, padding=0):
    """sum over taps of |q_a - w2| in int64, by brute force."""
    qp = np.pad(q_a.astype(np.int64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, _, hp, wp = qp.shape
    o, c, kh, kw = w2.shape
    ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    out = np.zeros((n, o, ho, wo), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = qp[:, :, i:i + (ho - 1) * stride + 1:stride, j:j + (wo - 1) * stride + 1:stride]
            out += np.abs(patch[:, None] - w2[None, :, :, i, j, None, None].astype(np.int64)).sum(2)
    return out


# ------------------------------------------------------------------------------------ quantizers
def test_mindspore_round_is_half_to_even():
    """The reference rounds half to even (NumPy / PyTorch); ops.round must do the same (spec 2.3)."""
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 2.4999, 2.5001], np.float32)
    assert np.array_equal(ops.round(ms.Tensor(x)).asnumpy(), np.round(x))
    assert np.array_equal(np.round(x)[:7], [-2, -2, 0, 0, 2, 2, 4])


@pytest.mark.parametrize("bits", [8, 6, 5, 4])
def test_weight_codes_round_trip_on_integer_grid(bits):
    wq = WeightQuantizer(bits)
    s = 1.7
    codes = np.arange(wq.qmin, wq.qmax + 1)
    values = wq.dequantize(codes, s)
    assert np.array_equal(wq.codes(values, s), codes)
    assert np.allclose(np.diff(values), 2 * s / (2 ** bits - 1))
    # +s rounds to 2^(b-1) and is clipped to 2^(b-1) - 1; -s (the tie -(2^b - 1)/2) rounds half to
    # even onto -2^(b-1) (spec 2.3); s = 2 keeps the tie exact in binary
    s = 2.0
    assert wq.codes(np.array([s]), s)[0] == 2 ** (bits - 1) - 1
    assert wq.codes(np.array([-s]), s)[0] == -(2 ** (bits - 1))
    if bits == 4:
        assert math.isclose(wq.dequantize(wq.codes(np.array([s]), s), s)[0], 7 * 2 * s / 15)  # 0.933 s
        assert math.isclose(wq.dequantize(wq.codes(np.array([-s]), s), s)[0], -8 * 2 * s / 15)  # -1.067 s


@pytest.mark.parametrize("bits", [8, 4])
def test_activation_codes_round_trip_numpy_and_tensor(bits):
    aq = ActivationQuantizer(bits)
    s = 2.5
    codes = np.arange(0, 2 ** bits)
    values = aq.dequantize(codes, s).astype(np.float32)
    assert np.array_equal(aq.codes(values, s), codes)
    assert np.array_equal(aq.codes(ms.Tensor(values), s).asnumpy(), codes)
    x = _rng(1).uniform(-1.0, 4.0, size=(3, 50)).astype(np.float32)
    q_np, q_ms = aq.codes(x, s), aq.codes(ms.Tensor(x), s).asnumpy()
    assert q_ms.dtype == np.int32 and np.array_equal(q_np, q_ms)
    assert q_np.min() == 0 and q_np.max() == 2 ** bits - 1       # negatives and x > s are clipped
    inside = (x >= 0) & (x <= s)
    assert np.abs(aq.dequantize(q_np, s)[inside] - x[inside]).max() <= s / (2 ** bits - 1) / 2 + 1e-6


def test_quantizer_rejects_bad_bits_and_scales():
    with pytest.raises(ValueError, match="bit width"):
        WeightQuantizer(1)
    with pytest.raises(ValueError, match="bit width"):
        ActivationQuantizer(4.0)
    with pytest.raises(ValueError, match="positive"):
        WeightQuantizer(4).codes(np.ones(3), 0.0)


def test_abs_quantile_index_rule():
    x = -np.arange(10000, dtype=np.float32)                  # |x| = 0..9999, sign irrelevant
    idx = int((round(10000 * 0.9997) - 1) * 0.9997)          # spec 2.2 step 1
    assert abs_quantile(x, 0.9997) == float(idx)
    assert abs_quantile(x, 1.0) == 9999.0
    y = _rng(2).standard_normal(5000).astype(np.float32)
    assert abs_quantile(y, 0.9997) == float(np.sort(np.abs(y))[int((round(5000 * 0.9997) - 1) * 0.9997)])
    with pytest.raises(ValueError, match="act_quantile"):
        abs_quantile(y, 1.5)


# ------------------------------------------------------------------------------------ clustering and plans
def _weights(seed=0, out=24, cin=8, k=3):
    """Kernels whose ranges come in clearly different bands (as trained adder weights do)."""
    rng = _rng(seed)
    w = rng.standard_normal((out, cin, k, k))
    w *= np.repeat([0.3, 1.0, 2.5, 6.0], out // 4)[:, None, None, None] / np.abs(w).reshape(out, -1).max(1)[
        :, None, None, None]
    return w * rng.uniform(0.8, 1.0, size=(out, 1, 1, 1))


def test_cluster_assignment_deterministic_nonempty_and_ordered():
    w = _weights()
    labels = cluster_kernels(w, 4, seed=3)
    assert np.array_equal(labels, cluster_kernels(w, 4, seed=3))
    counts = np.bincount(labels, minlength=4)
    assert counts.min() >= 1 and counts.sum() == w.shape[0]
    ranges = np.abs(w).reshape(w.shape[0], -1).max(1)
    means = [ranges[labels == g].mean() for g in range(4)]
    assert means == sorted(means)                               # groups numbered by increasing range
    # the clearly separated bands are found exactly
    assert np.array_equal(labels, np.repeat(np.arange(4), 6))


def test_cluster_errors_name_the_problem():
    with pytest.raises(ValueError, match="non-empty groups"):
        cluster_kernels(np.ones((3, 2, 1, 1)), 4)
    with pytest.raises(ValueError, match="non-empty groups"):
        cluster_kernels(np.ones((8, 2, 1, 1)), 2)               # one distinct range only
    with pytest.raises(ValueError, match="groups"):
        cluster_kernels(np.ones((8, 2, 1, 1)), 0)


def test_plans_shared_and_redistribute():
    w = _weights()
    a_r = 2.0
    shared = plan_shared(w, a_r)
    assert shared.groups == 1 and math.isclose(shared.scales[0], np.abs(w).max())
    assert math.isclose(plan_shared(w * 0.1, a_r).scales[0], a_r)          # activations wider
    red = plan_redistribute(w, a_r, groups=4, seed=0)
    ranges = np.abs(w).reshape(w.shape[0], -1).max(1)
    for g in range(4):
        m = ranges[red.labels == g].max()
        if m > a_r:
            assert red.clamped[g] and red.scales[g] == a_r
        else:
            assert not red.clamped[g] and math.isclose(red.scales[g], m)
    assert red.clamped.tolist() == [False, False, True, True]
    ablation = plan_redistribute(w, a_r, groups=4, seed=0, small_group_scale="act_range")
    assert np.allclose(ablation.scales, a_r)
    with pytest.raises(ValueError, match="small_group_scale"):
        plan_redistribute(w, a_r, small_group_scale="median")


def test_weight_clamp_is_lossless_for_inputs_in_range():
    """clamp + b_o reproduces every unclamped adder output for inputs in [0, s] (spec 2.3)."""
    rng = _rng(4)
    w = _weights(out=8, cin=4)
    a_r = 1.5
    plan = plan_redistribute(w, a_r, groups=4, seed=0)
    assert plan.clamped.any()
    w_c, bias = clamp_to_plan(w, plan)
    assert np.abs(w_c).max() <= a_r and np.all(bias <= 0) and np.any(bias < 0)
    s = plan.channel_scales
    x = rng.uniform(0.0, 1.0, size=(2, 4, 6, 6)) * s.min()         # inside every channel's range
    x[0, 0, 0, :3] = [0.0, s.min(), s.min()]                         # the range ends included
    ref = _adder_np(x, w, padding=1)
    got = _adder_np(x, w_c, padding=1) + bias.reshape(1, -1, 1, 1)
    assert np.allclose(got, ref, rtol=0, atol=1e-9)
    # through the float32 MindSpore layer as well
    layer = AdderConv2d(4, 8, 3, padding=1, backend="composite")
    layer.weight.set_data(ms.Tensor(w_c.astype(np.float32)))
    y = layer(ms.Tensor(x.astype(np.float32))).asnumpy() + bias.reshape(1, -1, 1, 1)
    assert np.allclose(y, ref, rtol=1e-5, atol=1e-3)
    # and it is *only* lossless in range: inputs beyond a clamped group's scale change the output
    x_out = x + 3.0 * a_r
    assert not np.allclose(_adder_np(x_out, w_c, padding=1) + bias.reshape(1, -1, 1, 1),
                           _adder_np(x_out, w, padding=1), atol=1e-3)


# ------------------------------------------------------------------------------------ the quantized layer
@pytest.mark.parametrize("bits,method,stride", [(8, "redistribute", 1), (4, "redistribute", 2), (5, "shared", 1)])
def test_integer_path_equals_fake_quant_and_int_reference(bits, method, stride):
    rng = _rng(bits)
    w = _weights(seed=bits, out=8, cin=4)
    x = np.maximum(rng.standard_normal((2, 4, 7, 7)), 0).astype(np.float32) * 1.5
    a_r = abs_quantile(x, 0.9997)
    plan = plan_redistribute(w, a_r, 4, seed=0) if method == "redistribute" else plan_shared(w, a_r)
    common = dict(stride=stride, padding=1, backend="composite")
    q_int = QuantAdderConv2d(w, plan, bits, integer=True, **common)
    q_fake = QuantAdderConv2d(w, plan, bits, integer=False, **common)
    y_int = q_int(ms.Tensor(x)).asnumpy()
    y_fake = q_fake(ms.Tensor(x)).asnumpy()

    # exact integer reference, channel by channel with the channel's own group scale
    aq = ActivationQuantizer(bits)
    expected = np.zeros_like(y_int, np.float64)
    for g in range(plan.groups):
        q_a = aq.codes(x, plan.scales[g])
        d = _int_distance_np(q_a, 2 * q_int.weight_codes, stride, 1)
        chans = plan.labels == g
        expected[:, chans] = -d[:, chans] * np.float32(plan.scales[g] / aq.levels)
        # the layer's own int32 distance is the exact integer
        got_d = q_int.integer_distance(q_int.input_codes(ms.Tensor(x), g), q_int.w2).asnumpy()
        assert got_d.dtype == np.int32 and np.array_equal(got_d, d)
    expected += q_int.clamp_bias.reshape(1, -1, 1, 1)
    assert np.allclose(y_int, expected, rtol=1e-6, atol=1e-4)
    assert np.allclose(y_fake, y_int, rtol=1e-5, atol=1e-3)
    assert q_int.weight_codes.min() >= -(2 ** (bits - 1)) and q_int.weight_codes.max() <= 2 ** (bits - 1) - 1


def test_quantized_layer_error_and_the_small_group_activation_clamp():
    """With every group at s_g = a_r the only loss is rounding (small at 8 bits, larger at 4); the
    official s_g = max|W_g| for narrow groups also clips inputs above that range (spec 2.3)."""
    rng = _rng(7)
    w = _weights(seed=7, out=8, cin=4)
    x = np.maximum(rng.standard_normal((2, 4, 6, 6)), 0).astype(np.float32)
    a_r = float(np.abs(x).max())
    ref = _adder_np(x, w, padding=1)

    def err(plan, bits):
        y = QuantAdderConv2d(w, plan, bits, padding=1, backend="composite")(ms.Tensor(x)).asnumpy()
        return np.abs(y - ref).mean(axis=(0, 2, 3))            # per output channel

    full = plan_redistribute(w, a_r, 4, seed=0, small_group_scale="act_range")
    official = plan_redistribute(w, a_r, 4, seed=0)
    e8, e4 = err(full, 8), err(full, 4)
    assert e8.mean() < 0.005 * np.abs(ref).mean() and e8.mean() < e4.mean()
    narrow = ~official.clamped[official.labels]               # channels whose group keeps s_g = max|W_g| < a_r
    assert narrow.any()
    e8_official = err(official, 8)
    assert np.all(e8_official[narrow] > 10 * e8[narrow])       # the activation clamp of narrow groups loses
    assert np.allclose(e8_official[~narrow], e8[~narrow])      # clamped groups: same scale a_r either way


def test_quantized_layer_rejects_mismatches():
    w = _weights(out=8, cin=4)
    plan = plan_shared(w, 1.0)
    with pytest.raises(ValueError, match="channel labels"):
        QuantAdderConv2d(w[:4], plan, 8)
    with pytest.raises(ValueError, match="2\\^24"):
        QuantAdderConv2d(np.ones((2, 4096, 3, 3)), plan_shared(np.ones((2, 4096, 3, 3)), 1.0), 16)


# ------------------------------------------------------------------------------------ model-level pipeline
class _TinyAdderNet(nn.Cell):
    """stem conv -> BN -> ReLU -> adder -> BN -> ReLU -> adder(stride 2) -> BN -> pool -> dense."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, pad_mode="pad", padding=1, has_bias=False)
        # momentum 0.1 (weight of the old statistics): BN settles within a few batches
        self.bn0, self.relu = nn.BatchNorm2d(8, momentum=0.1), nn.ReLU()
        self.body = nn.SequentialCell([AdderConv2d(8, 8, 3, padding=1, backend="composite"),
                                       nn.BatchNorm2d(8, momentum=0.1), nn.ReLU()])
        self.down = AdderConv2d(8, 8, 3, stride=2, padding=1, backend="composite")
        self.bn2 = nn.BatchNorm2d(8, momentum=0.1)
        self.fc = nn.Dense(8, 3)

    def construct(self, x):
        x = self.body(self.relu(self.bn0(self.stem(x))))
        x = self.bn2(self.down(x))
        return self.fc(ops.mean(x, (2, 3)))


class _ListLoader:
    split = "train"

    def __init__(self, batches):
        self.batches = batches

    def epoch(self, _e=0):
        return iter(self.batches)


def _tiny_batches(n=3, seed=0):
    rng = _rng(seed)
    return [(ms.Tensor(rng.standard_normal((4, 1, 6, 6)).astype(np.float32)),
             ms.Tensor(rng.integers(0, 3, 4).astype(np.int32))) for _ in range(n)]


def test_calibrate_quantize_recalibrate_and_export(tmp_path):
    from mindcv_ext.export import export_and_verify
    ms.set_seed(0)
    net = _TinyAdderNet()
    for _, layer in ptq.find_adder_layers(net):
        layer.weight.set_data(ms.Tensor(_rng(1).uniform(-3, 3, layer.weight.shape).astype(np.float32)))
    loader = _ListLoader(_tiny_batches())
    assert ptq.recalibrate_bn(net, loader, 3) == 3            # BN statistics of the float net first
    stats = ptq.calibrate_activations(net, loader, batches=5, quantile=0.9997)   # wraps around the 3 batches
    assert set(stats) == {"body.0", "down"} and all(s["batches"] == 5 for s in stats.values())
    assert all(0 < s["quantile"] <= s["max"] and s["min"] >= 0 for s in stats.values())
    x = _tiny_batches(1, seed=9)[0][0]
    net.set_train(False)
    ref = net(x).asnumpy()
    plans = ptq.quantize_adder_model(net, stats, "redistribute", 8, groups=2, seed=0, backend="composite")
    assert set(plans) == {"body.0", "down"}
    assert isinstance(net.body[0], QuantAdderConv2d) and isinstance(net.down, QuantAdderConv2d)
    assert not ptq.find_adder_layers(net)
    y8 = net(x).asnumpy()
    assert np.abs(y8 - ref).max() < 0.05 * np.abs(ref).max() + 0.05
    mean_before = net.bn2.moving_mean.asnumpy().copy()
    assert ptq.recalibrate_bn(net, loader, 2) == 2
    assert not np.allclose(net.bn2.moving_mean.asnumpy(), mean_before)
    assert not net.training
    report = export_and_verify(net, (1, 1, 6, 6), str(tmp_path / "tiny_q"), "MINDIR")
    assert report["verified"] and os.path.isfile(report["file"])


def test_pipeline_errors_are_clear():
    net = _TinyAdderNet()
    with pytest.raises(ValueError, match="no calibration statistics"):
        ptq.quantize_adder_model(net, {}, "shared", 8)
    with pytest.raises(ValueError, match="unknown quantization method"):
        ptq.quantize_adder_model(net, {}, "kmeans", 8)
    stats = {"body.0": {"quantile": 1.0, "max": 1.0, "min": -0.5, "batches": 1},
             "down": {"quantile": 1.0, "max": 1.0, "min": 0.0, "batches": 1}}
    with pytest.raises(ValueError, match="negative inputs"):
        ptq.quantize_adder_model(net, stats, "shared", 8)
    with pytest.raises(ValueError, match="no AdderConv2d"):
        ptq.calibrate_activations(nn.Dense(2, 2), _ListLoader([]), 1)


def test_run_quantize_argument_checks(tmp_path):
    cfg = load_config("configs/addernet/adder_resnet20_digits.yaml")
    with pytest.raises(ValueError, match="bit width"):
        run_quantize(cfg, "x.ckpt", [3.5], ["shared"])
    with pytest.raises(ValueError, match="above 8"):
        run_quantize(cfg, "x.ckpt", [16], ["shared"])
    with pytest.raises(ValueError, match="unknown quantization method"):
        run_quantize(cfg, "x.ckpt", [4], ["kmeans"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_quantize(cfg, str(tmp_path / "missing.ckpt"), [4], ["shared"])
    with pytest.raises(ConfigError, match="small_group_scale"):
        load_config("configs/addernet/adder_resnet20_digits.yaml", ["quant.small_group_scale=median"])


# ------------------------------------------------------------------------------------ energy
def test_energy_figures_and_op_counts():
    assert math.isclose(ptq.int_add_energy(8), 0.03) and math.isclose(ptq.int_add_energy(4), 0.015)
    assert math.isclose(ptq.int_add_energy(32), 0.1)
    e = ptq.energy_per_image(float_macs=1_000_000, adder_ops=10_000_000, bits=[8, 4])
    assert math.isclose(e["float_cnn"], 11e6 * 4.6e-6)
    assert math.isclose(e["float_adder"], (1e6 * 4.6 + 10e6 * 2.7) * 1e-6)
    assert math.isclose(e["adder_int8"], (1e6 * 4.6 + 10e6 * (0.06 + 0.1)) * 1e-6)
    assert e["float_cnn"] > e["float_adder"] > e["adder_int8"] > e["adder_int4"]
    net = _TinyAdderNet()
    counts = ptq.count_ops(net, (1, 1, 6, 6))
    # stem 1*9 per output x 8*36 outputs + dense 8*3; adders 8*9 taps x (8*36 + 8*9) outputs
    assert counts == {"float_macs": 9 * 8 * 36 + 24, "adder_ops": 72 * (8 * 36 + 8 * 9)}


def test_resnet20_op_counts():
    """adder_resnet20 at 32x32: 40,370,176 adder pairs (the 18 block layers and two 1x1 shortcuts)
    and 443,008 float MACs (stem 3x3 3->16 and the 64->10 classifier)."""
    import mindcv_ext
    net = mindcv_ext.create_model("adder_resnet20", num_classes=10, kernels="composite")
    per_stage = [(16, 16, 32, 32), (16, 32, 16, 16), (32, 64, 8, 8)]    # (in, out, output H, W) of the first conv
    adder = 0
    for cin, c, h, w in per_stage:
        adder += 9 * cin * c * h * w + 5 * 9 * c * c * h * w             # first conv + five more 3x3 layers
        if cin != c:
            adder += cin * c * h * w                                      # 1x1 shortcut
    assert adder == 40_370_176
    assert ptq.count_ops(net, (1, 3, 32, 32)) == {"float_macs": 27 * 16 * 32 * 32 + 64 * 10, "adder_ops": adder}


# ------------------------------------------------------------------------------------ trained on digits
@pytest.mark.slow  # trains adder_resnet20 on digits first (~2 min on 2 cores)
def test_demo_redistribute_beats_shared_at_4_bits(tmp_path, capsys):
    """`mindcv-ext demo addernet_ptq --quick`: the digits recipe, then 4-bit PTQ (8 calibration batches)."""
    from mindcv_ext.cli import main
    main(["demo", "addernet_ptq", "--quick", "--out", str(tmp_path)])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(line) == {"float_top1", "results"}
    top = {r["method"]: r["top1"] for r in line["results"] if r["bits"] == 4}
    print(f"digits adder_resnet20 float {line['float_top1']:.4f}, 4-bit shared {top['shared']:.4f}, "
          f"redistribute {top['redistribute']:.4f}")
    assert line["float_top1"] > 0.8                       # the recipe trains (0.95 measured)
    assert line["float_top1"] - top["redistribute"] < line["float_top1"] - top["shared"]
    report = json.load(open(tmp_path / "quant" / "adder_ptq.json"))
    for key in ("markdown", "json", "png"):
        assert os.path.getsize(report["files"][key]) > 0
    assert report["energy_uj"]["adder_int4"] < report["energy_uj"]["float_adder"] < report["energy_uj"]["float_cnn"]
