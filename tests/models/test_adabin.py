"""AdaBin models: layouts and counts (spec 3.5 / 6.1), official-checkpoint parity (fixture), the
binary sets per layer, bit-packed inference, MindIR export, and AdaBin vs sign-BNN training."""
import os

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

import ascend_kernels
from mindcv_ext import create_model, list_models
from mindcv_ext.tasks import load_config
from mindcv_ext.convert import ConversionError, convert_state_dict, load_state_dict_file
from mindcv_ext.models import adabin
from mindcv_ext.quant.binary import (AdaBinActivationQuantizer, AdaBinWeightQuantizer, BinaryConv2d,
                                     SignQuantizer, binary_layers, progressive_values)
from mindcv_ext.quant.inference import threshold_ties, to_inference
from mindcv_ext.utils.summary import count_params

ms.set_context(mode=ms.PYNATIVE_MODE)

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# shared/ sits beside the repository checkout (CI clones elsewhere and copies shared/ beside it)
FIXTURE = os.environ.get("ADABIN_FIXTURE") or next(
    (p for p in (os.path.join(_ROOT, "..", "shared", "fixtures", "adabin_resnet20_cifar10"),
                 os.path.join(_ROOT, "shared", "fixtures", "adabin_resnet20_cifar10"))
     if os.path.isdir(p)), os.path.join(_ROOT, "..", "shared", "fixtures", "adabin_resnet20_cifar10"))
HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, "..", "..", "configs", "adabin")
needs_fixture = pytest.mark.skipif(not os.path.isfile(os.path.join(FIXTURE, "state_dict.safetensors")),
                                   reason="AdaBin fixture not available")


@pytest.fixture(autouse=True)
def _composite():
    ascend_kernels.set_backend("composite")
    yield
    ascend_kernels.set_backend(None)


def _x(shape, seed=0):
    return Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _official_net(**kw):
    sd = load_state_dict_file(os.path.join(FIXTURE, "state_dict.safetensors"))
    mapped = convert_state_dict("adabin_resnet20", sd, num_classes=10)
    net = create_model("adabin_resnet20", num_classes=10, **kw)
    ms.load_param_into_net(net, {k: ms.Parameter(Tensor(v), name=k) for k, v in mapped.items()}, strict_load=True)
    net.set_train(False)
    return net


# ------------------------------------------------------------------ registry, layout, counts
def test_registered_names():
    for name in ("adabin_resnet20", "bnn_resnet20", "adabin_resnet18", "bnn_resnet18", "adabin_resnet34",
                 "adabin_vgg_small", "bnn_vgg_small"):
        assert name in list_models("*"), name


def test_resnet20_parameter_count_and_binary_layers():
    net = create_model("adabin_resnet20", num_classes=10)
    assert count_params(net) == 271_262  # spec 3.5 / 6.1 (official checkpoint's tensors)
    layers = binary_layers(net)
    assert len(layers) == 18 and all(n.startswith("layer") and n.endswith(("conv1", "conv2")) for n, _ in layers)
    assert all(c.kernel_size == (3, 3) and c.mac_kind == "binary" for _, c in layers)
    assert type(net.conv1) is nn.Conv2d and type(net.linear) is nn.Dense  # stem and classifier stay float
    assert isinstance(net.bn2, nn.BatchNorm1d)
    # option-A shortcut: no parameters
    assert net.layer2[0].shortcut is not None and not net.layer2[0].shortcut.trainable_params()
    sign = create_model("bnn_resnet20", num_classes=10)
    assert count_params(sign) == 271_262 - 18 * 2  # no alpha_a / beta_a
    assert all(isinstance(c.input_quantizer, SignQuantizer) for _, c in binary_layers(sign))


def test_resnet18_parameter_count():
    net = create_model("adabin_resnet18", num_classes=1000)
    unused = count_params(net.nonlinear2) + count_params(net.bn3)
    assert unused == 3_024
    assert count_params(net) - unused == 11_698_376  # spec 3.5 [Calc]
    assert len(binary_layers(net)) == 16
    down = net.layer2[0].downsample
    assert isinstance(down[0], nn.AvgPool2d) and type(down[1]) is nn.Conv2d  # float 1x1 conv
    y = net(_x((1, 3, 64, 64)))
    assert y.shape == (1, 1000)


def test_forward_shapes_and_bad_input():
    assert create_model("adabin_resnet20", num_classes=10)(_x((2, 3, 16, 16))).shape == (2, 10)
    vgg = create_model("bnn_vgg_small", num_classes=10, image_size=16)
    assert vgg(_x((2, 3, 16, 16))).shape == (2, 10)
    assert len(binary_layers(vgg)) == 5
    with pytest.raises(ValueError, match="expected input"):
        create_model("adabin_resnet20", num_classes=10)(_x((1, 1, 16, 16)))
    with pytest.raises(ValueError, match="image_size"):
        vgg(_x((1, 3, 32, 32)))
    with pytest.raises(ValueError, match="quantizer"):
        create_model("adabin_resnet20", quantizer="ternary")
    with pytest.raises(ValueError, match="nonlinearity"):
        create_model("adabin_resnet20", nonlinearity="gelu")


def test_progressive_kwarg_sets_epoch0_values():
    q = binary_layers(create_model("adabin_resnet20", num_classes=10))[0][1].kernel_quantizer
    assert (float(q.k.asnumpy()), float(q.t.asnumpy())) == pytest.approx(progressive_values(0, 400))
    q = binary_layers(create_model("adabin_resnet20", num_classes=10, progressive=False))[0][1].kernel_quantizer
    assert (float(q.k.asnumpy()), float(q.t.asnumpy())) == pytest.approx((10.0, 0.1))


# ------------------------------------------------------------------ official checkpoint
@needs_fixture
def test_fixture_parity():
    net = _official_net()
    x = np.load(os.path.join(FIXTURE, "input.npy"))
    ref = np.load(os.path.join(FIXTURE, "logits.npy"))
    out = net(Tensor(x)).asnumpy()
    assert out.shape == ref.shape
    err = np.abs(out - ref).max()
    assert err <= 1e-4, f"max |logits - reference| = {err}"
    assert sum(threshold_ties(net, Tensor(x)).values()) == 0  # no value on a sign threshold


@needs_fixture
def test_fixture_binary_sets():
    net = _official_net()
    q = net.layer1[0].conv1.input_quantizer
    assert float(q.alpha_a.asnumpy()) == pytest.approx(0.884, abs=1e-3)  # spec 3.3
    assert float(q.beta_a.asnumpy()) == pytest.approx(0.512, abs=1e-3)
    seen = {}
    for name, conv in binary_layers(net):
        # weights: exactly {mean -/+ std} per output channel
        w = conv.weight.asnumpy().astype(np.float64)
        wb = conv.kernel_quantizer(conv.weight).asnumpy()
        flat = w.reshape(w.shape[0], -1)
        for o in range(w.shape[0]):
            np.testing.assert_allclose(np.unique(wb[o]), [flat[o].mean() - flat[o].std(), flat[o].mean() + flat[o].std()],
                                       rtol=1e-5, atol=1e-6)

        def hook(cell, inputs, output, _name=name):
            seen[_name] = np.unique(output.asnumpy())
        conv.input_quantizer.register_forward_hook(hook)
    net(Tensor(np.load(os.path.join(FIXTURE, "input.npy"))))
    assert len(seen) == 18
    for name, conv in binary_layers(net):
        a, b = float(conv.input_quantizer.alpha_a.asnumpy()), float(conv.input_quantizer.beta_a.asnumpy())
        # activations: exactly two values per layer, alpha (beta -/+ 1)
        np.testing.assert_allclose(seen[name], [a * (b - 1), a * (b + 1)], rtol=1e-6, err_msg=name)


def test_converter_errors():
    sd = {"conv1.weight": np.zeros((16, 3, 3, 3), np.float32), "layer1.0.conv1.binary_a.gamma": np.zeros(())}
    with pytest.raises(ConversionError, match="no place"):
        adabin.convert_official_state_dict(sd, "adabin_resnet20")
    with pytest.raises(ConversionError, match="adabin_"):
        adabin.convert_official_state_dict(sd, "bnn_resnet20")
    with pytest.raises(ConversionError, match="no value"):
        convert_state_dict("adabin_resnet20", {"conv1.weight": np.zeros((16, 3, 3, 3), np.float32)}, num_classes=10)


# ------------------------------------------------------------------ packed inference, export
@needs_fixture
def test_packed_inference_matches_training_model():
    net, packed = _official_net(), to_inference(_official_net(), backend="custom")
    assert packed.packed_layers == 18
    assert type(packed.layer1[0].conv1).__name__ == "PackedBinaryConv2d"
    x = np.concatenate([np.load(os.path.join(FIXTURE, "input.npy")),
                        np.random.default_rng(7).standard_normal((60, 3, 32, 32)).astype(np.float32)])
    a, b = net(Tensor(x)).asnumpy(), packed(Tensor(x)).asnumpy()
    np.testing.assert_array_equal(a.argmax(1), b.argmax(1))  # same prediction for every image
    diffs = np.abs(a - b).max(1)
    # Logits agree to float rounding, except on images where an activation lies within rounding
    # error of a threshold (seen: 2.5e-7 from beta_a in layer1.0.conv2 while the two paths' conv
    # outputs differ by 3e-6), so that one sign flips and the difference is carried forward.
    assert np.mean(diffs <= 1e-4) >= 0.95, np.sort(diffs)[-8:]
    assert np.median(diffs) <= 2e-5


def test_packed_inference_sign_model_borders():
    net = create_model("bnn_resnet20", num_classes=10)
    net.set_train(False)
    other = create_model("bnn_resnet20", num_classes=10)
    ms.load_param_into_net(other, {p.name: p for p in net.get_parameters()})
    packed = to_inference(other, backend="custom")
    x = _x((3, 3, 9, 7), seed=5)  # odd sizes: stride-2 borders and padding on every side
    # sign(0) = +1 on both paths, so even the exact zeros of a fresh model (identity BN, integer conv
    # outputs passed on by the option-A zero channels) binarize the same way
    np.testing.assert_allclose(net(x).asnumpy(), packed(x).asnumpy(), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="no binary convolution"):
        to_inference(create_model("resnet20", num_classes=10))


def test_packed_rejects_paper_form():
    conv = BinaryConv2d(4, 4, 3, 1, 1, input_quantizer=AdaBinActivationQuantizer(form="paper"),
                        kernel_quantizer=AdaBinWeightQuantizer())
    with pytest.raises(ValueError, match="coded"):
        to_inference(nn.SequentialCell([conv]))


def test_export_mindir_verified(tmp_path):
    from mindcv_ext.export import export_and_verify
    net = create_model("adabin_resnet20", num_classes=10)
    report = export_and_verify(net, (1, 3, 16, 16), str(tmp_path / "adabin_resnet20"), "MINDIR")
    assert report["verified"] and report["max_abs_err"] <= 1e-4
    assert os.path.isfile(report["file"])


# ------------------------------------------------------------------ configs and training
@pytest.mark.parametrize("name", ["adabin_resnet20_digits", "sign_resnet20_digits", "adabin_resnet20_cifar10",
                                  "adabin_resnet18_imagenet"])
def test_configs_validate_and_build(name):
    cfg = load_config(os.path.join(CONFIGS, f"{name}.yaml"))
    assert cfg.model.name.startswith(("adabin_", "bnn_"))
    assert cfg.optim.filter_bias_and_bn is False  # weight decay on every parameter (spec 3.6)
    callbacks = adabin.FAMILY.train_callbacks(cfg)
    assert len(callbacks) == (0 if name.startswith("sign") else 1)


def test_digits_configs_differ_only_in_quantizer():
    a = load_config(os.path.join(CONFIGS, "adabin_resnet20_digits.yaml")).to_dict()
    s = load_config(os.path.join(CONFIGS, "sign_resnet20_digits.yaml")).to_dict()
    for section in ("data", "optim", "sched", "loss"):
        assert a[section] == s[section], section
    assert {k: v for k, v in a["train"].items() if k != "output_dir"} == \
        {k: v for k, v in s["train"].items() if k != "output_dir"}


@pytest.mark.slow
def test_adabin_beats_sign_bnn_on_digits(tmp_path):
    """Both digits configs with the same overrides (native 8x8 resolution, batch 64, two epochs, one
    validation at the end) to keep the run short; only the quantizers differ between the two."""
    from mindcv_ext.tasks import demo_runs
    overrides = ["data.image_size=8", "data.batch_size=64", "train.val_interval=2"]
    results = demo_runs.compare_binarizers(str(tmp_path), epochs=2, overrides=overrides)
    ada, sign = results["adabin"], results["sign"]
    print("\n" + demo_runs.format_table(results))
    assert ada["val_top1"] > sign["val_top1"] + 0.05, (ada["val_top1"], sign["val_top1"])
    assert ada["val_top1"] > 0.3  # well above chance (0.1)
    # the progressive EDE schedule ran: the last epoch trained with the epoch-1-of-2 values
    kq = binary_layers(ada["task"].net)[0][1].kernel_quantizer
    assert float(kq.t.asnumpy()) == pytest.approx(progressive_values(1, 2)[1], rel=1e-6)
    # the trained AdaBin model, bit-packed: every validation image gets the same prediction
    agree = demo_runs.packed_agreement(ada["task"])
    assert agree["n"] >= 350 and agree["agree"] == agree["n"], agree
