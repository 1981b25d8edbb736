"""AdaBin CIFAR ResNet-18 (official BinaryNetworks/AdaBin cifar10/nets/resnet18.py): layout, count from
an independent formula, forward, and conversion of a state dict in the official naming."""
import numpy as np
import pytest
from mindspore import Tensor, nn

from mindcv_ext import create_model
from mindcv_ext.convert import convert_state_dict
from mindcv_ext.quant.binary import binary_layers
from mindcv_ext.utils.summary import count_params


pytestmark = pytest.mark.usefixtures("composite_kernels")


def _official_keys(num_classes=10):
    """Key -> shape of the official resnet18_1w1a state dict (BN buffers included)."""
    shapes = {"conv1.weight": (64, 3, 3, 3), "nonlinear1.neg_scale": (64,), "nonlinear1.pos_scale": (64,)}

    def bn(prefix, c):
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{leaf}"] = (c,)

    bn("bn1", 64)
    inp = 64
    for stage, planes in enumerate((64, 128, 256, 512), 1):
        for block in range(2):
            stride = 2 if (stage > 1 and block == 0) else 1
            p = f"layer{stage}.{block}"
            shapes[f"{p}.conv1.weight"] = (planes, inp, 3, 3)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            for c in ("conv1", "conv2"):
                shapes[f"{p}.{c}.binary_a.alpha_a"] = shapes[f"{p}.{c}.binary_a.beta_a"] = ()
            for i in (1, 2):
                bn(f"{p}.bn{i}", planes)
                shapes[f"{p}.nonlinear{i}.neg_scale"] = shapes[f"{p}.nonlinear{i}.pos_scale"] = (planes,)
            if stride != 1 or inp != planes:
                shapes[f"{p}.shortcut.0.weight"] = (planes, inp, 1, 1)
                bn(f"{p}.shortcut.1", planes)
            inp = planes
    shapes["linear.weight"], shapes["linear.bias"] = (num_classes, 512), (num_classes,)
    bn("bn2", 512)
    return shapes


def _expected_trainable(num_classes=10):
    """Trainable parameters: conv weights, 2 AdaBin scalars per binary conv, BN gamma/beta, Maxout."""
    n = 3 * 64 * 9 + 2 * 64 + 2 * 64
    inp = 64
    for stage, planes in enumerate((64, 128, 256, 512)):
        for block in range(2):
            n += 9 * inp * planes + 2 + 9 * planes * planes + 2 + 2 * (2 * planes + 2 * planes)
            if (stage > 0 and block == 0) or inp != planes:
                n += inp * planes + 2 * planes
            inp = planes
    return n + 2 * 512 + 512 * num_classes + num_classes


def test_layout_and_parameter_count():
    net = create_model("adabin_resnet18_cifar", num_classes=10)
    assert count_params(net) == _expected_trainable(10)
    assert count_params(net) == sum(
        int(np.prod(s)) for k, s in _official_keys().items() if not k.endswith(("running_mean", "running_var")))
    layers = binary_layers(net)
    assert len(layers) == 16 and all(c.kernel_size == (3, 3) for _, c in layers)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and type(net.conv1) is nn.Conv2d
    short = net.layer2[0].shortcut
    assert type(short[0]) is nn.Conv2d and short[0].stride == (2, 2) and isinstance(short[1], nn.BatchNorm2d)
    assert net.layer1[0].shortcut is None and net.layer1[0].downsample is None
    assert isinstance(net.bn2, nn.BatchNorm1d) and net.linear.in_channels == 512
    sign = create_model("bnn_resnet18_cifar", num_classes=10)
    assert count_params(sign) == _expected_trainable(10) - 16 * 2


def test_bad_input_is_named():
    # (a forward pass of the 11 M-parameter net takes ~20 s on the shared test CPUs; the blocks and
    # the head are the ones adabin_resnet20 / adabin_resnet18 run in their forward tests)
    net = create_model("adabin_resnet18_cifar", num_classes=10)
    with pytest.raises(ValueError, match="expected input"):
        net(Tensor(np.zeros((1, 1, 8, 8), np.float32)))
    with pytest.raises(ValueError, match="smaller than the 8x8"):
        net(Tensor(np.zeros((1, 3, 4, 4), np.float32)))


def test_official_state_dict_converts():
    rng = np.random.default_rng(1)
    sd = {"module." + k: (rng.random(s).astype(np.float32) + 0.5) for k, s in _official_keys().items()}
    sd["module.bn1.num_batches_tracked"] = np.array(3, np.int64)
    mapped = convert_state_dict("adabin_resnet18_cifar", sd, num_classes=10)
    np.testing.assert_array_equal(mapped["layer3.0.shortcut.0.weight"], sd["module.layer3.0.shortcut.0.weight"])
    np.testing.assert_array_equal(mapped["layer3.0.shortcut.1.moving_variance"],
                                  sd["module.layer3.0.shortcut.1.running_var"])
    assert mapped["layer4.1.conv2.input_quantizer.alpha_a"] == np.float32(sd["module.layer4.1.conv2.binary_a.alpha_a"])
