"""Adder ResNets: layout (which layers are adder, BN after each), parameter counts, head, shapes,
the adaptive gradient scaling, configs.

Reference facts: compression spec 1.2 (eta = 0.2 scaling), 1.3 (layout; ResNet-20 272,484 /
278,424 parameters), 1.4 (CIFAR-10 recipe).
"""
import math

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

import mindcv_ext
from mindcv_ext.tasks import load_config
from mindcv_ext.models import model_family
from mindcv_ext.models.adder_resnet import AdderHead
from mindcv_ext.layers.adder_conv import AdderConv2d
from mindcv_ext.utils.summary import count_params

ms.set_context(mode=ms.PYNATIVE_MODE)


def _x(shape, seed=0):
    return ms.Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _bn(c):
    return 2 * c


def _basic(cin, c, stride):
    n = 9 * cin * c + _bn(c) + 9 * c * c + _bn(c)
    if stride != 1 or cin != c:
        n += cin * c + _bn(c)
    return n


def _bottleneck(cin, c, stride):
    out = 4 * c
    n = cin * c + _bn(c) + 9 * c * c + _bn(c) + c * out + _bn(out)
    if stride != 1 or cin != out:
        n += cin * out + _bn(out)
    return n


def _cifar_params(depth, classes):
    """Independent count: stem 3x3 3->16 + BN, 3 stages of basic blocks, 1x1 conv head + BN."""
    n_blocks = (depth - 2) // 6
    total, cin = 3 * 9 * 16 + _bn(16), 16
    for i, c in enumerate((16, 32, 64)):
        for j in range(n_blocks):
            total += _basic(cin, c, 2 if (j == 0 and i > 0) else 1)
            cin = c
    return total + 64 * classes + _bn(classes)


def _imagenet_params(block, layers, classes):
    total, cin = 3 * 49 * 64 + _bn(64), 64
    for i, (c, n) in enumerate(zip((64, 128, 256, 512), layers)):
        for j in range(n):
            stride = 2 if (j == 0 and i > 0) else 1
            total += block(cin, c, stride)
            cin = c * (4 if block is _bottleneck else 1)
    return total + cin * classes + classes + _bn(classes)      # head conv with bias + BN


def test_registered_in_the_adder_family():
    names = mindcv_ext.list_models("adder_resnet*")
    assert names == ["adder_resnet18", "adder_resnet20", "adder_resnet32", "adder_resnet50"]
    assert all(model_family(n) == "adder_resnet" for n in names)


@pytest.mark.parametrize("name,classes,expected", [("adder_resnet20", 10, 272_484), ("adder_resnet20", 100, 278_424)])
def test_resnet20_parameter_count_matches_spec(name, classes, expected):
    assert count_params(mindcv_ext.create_model(name, num_classes=classes)) == expected
    assert _cifar_params(20, classes) == expected      # the independent formula agrees with the spec


def test_resnet32_parameter_count():
    assert count_params(mindcv_ext.create_model("adder_resnet32", num_classes=10)) == _cifar_params(32, 10)


@pytest.mark.parametrize("name,block,layers", [("adder_resnet18", _basic, [2, 2, 2, 2]),
                                               ("adder_resnet50", _bottleneck, [3, 4, 6, 3])])
def test_imagenet_parameter_counts(name, block, layers):
    expected = _imagenet_params(block, layers, 1000)
    # torchvision's float models have 11,689,512 / 25,557,032: the head adds BN(1000) = 2,000
    assert expected - 2000 == {"adder_resnet18": 11_689_512, "adder_resnet50": 25_557_032}[name]
    assert count_params(mindcv_ext.create_model(name)) == expected


def _parent(net, name):
    cells = dict(net.cells_and_names())
    return cells[name.rsplit(".", 1)[0]] if "." in name else net


@pytest.mark.parametrize("name,n_adder", [("adder_resnet20", 20), ("adder_resnet32", 32), ("adder_resnet18", 19),
                                          ("adder_resnet50", 52)])
def test_layout_adder_layers_with_bn_float_stem_and_head(name, n_adder):
    net = mindcv_ext.create_model(name, num_classes=10)
    adders = [(n, c) for n, c in net.cells_and_names() if isinstance(c, AdderConv2d)]
    convs = [(n, c) for n, c in net.cells_and_names() if isinstance(c, nn.Conv2d)]
    assert len(adders) == n_adder                               # every block conv + each 1x1 downsample
    assert [n for n, _ in convs] == ["conv1", "fc.conv"]        # stem and classifier stay float
    assert isinstance(net.fc, AdderHead) and isinstance(net.fc.bn, nn.BatchNorm2d)
    assert net.fc.bn.moving_mean.shape == (10,)
    assert net.fc.conv.has_bias == (name in ("adder_resnet18", "adder_resnet50"))
    for n, layer in adders:
        parent = _parent(net, n)
        leaf = n.rsplit(".", 1)[-1]
        if isinstance(parent, nn.SequentialCell):               # shortcut: [adder 1x1, BN]
            assert leaf == "0" and layer.kernel_size == (1, 1)
            follower = parent[1]
        else:
            follower = getattr(parent, "bn" + leaf[len("conv"):])
        assert isinstance(follower, nn.BatchNorm2d) and follower.moving_mean.shape == (layer.out_channels,)
        assert layer.adaptive_grad_eta == 0.2 and not layer.has_bias


def test_options_eta_and_backend():
    net = mindcv_ext.create_model("adder_resnet20", eta=None, kernels="composite")
    layers = [c for _, c in net.cells_and_names() if isinstance(c, AdderConv2d)]
    assert all(c.adaptive_grad_eta is None and c.backend == "composite" for c in layers)
    net = mindcv_ext.create_model("adder_resnet20", eta=0.1, kernels="custom")
    layers = [c for _, c in net.cells_and_names() if isinstance(c, AdderConv2d)]
    assert {c.adaptive_grad_eta for c in layers} == {0.1} and {c.backend for c in layers} == {"custom"}
    with pytest.raises(ValueError, match="eta"):
        mindcv_ext.create_model("adder_resnet20", eta=-0.2)
    with pytest.raises(ValueError, match="backend"):  # one option: kernels (no second spelling)
        mindcv_ext.create_model("adder_resnet20", kernels="composite", backend="custom")
    with pytest.raises(ValueError, match="kernels must be"):
        mindcv_ext.create_model("adder_resnet20", kernels="fast")
    with pytest.raises(ValueError, match="fixed by the adder layout"):
        mindcv_ext.create_model("adder_resnet20", head=nn.Dense)


def test_head_is_conv_then_bn():
    head = AdderHead(6, 4, has_bias=True)
    head.set_train(False)
    rng = np.random.default_rng(0)
    head.bn.moving_mean.set_data(ms.Tensor(rng.standard_normal(4).astype(np.float32)))
    head.bn.moving_variance.set_data(ms.Tensor(rng.uniform(0.5, 2, 4).astype(np.float32)))
    head.bn.gamma.set_data(ms.Tensor(rng.uniform(0.5, 2, 4).astype(np.float32)))
    x = rng.standard_normal((3, 6)).astype(np.float32)
    w = head.conv.weight.asnumpy().reshape(4, 6)
    z = x @ w.T + head.conv.bias.asnumpy()
    bn = head.bn
    ref = (z - bn.moving_mean.asnumpy()) / np.sqrt(bn.moving_variance.asnumpy() + 1e-5) * bn.gamma.asnumpy() \
        + bn.beta.asnumpy()
    assert np.allclose(head(ms.Tensor(x)).asnumpy(), ref, atol=1e-5)


@pytest.mark.parametrize("name,shape", [("adder_resnet20", (2, 3, 32, 32)), ("adder_resnet32", (1, 3, 16, 16)),
                                        ("adder_resnet18", (1, 3, 32, 32)), ("adder_resnet50", (1, 3, 32, 32))])
def test_forward_shapes(name, shape):
    net = mindcv_ext.create_model(name, num_classes=7, kernels="composite")
    net.set_train(False)
    y = net(_x(shape)).asnumpy()
    assert y.shape == (shape[0], 7) and np.all(np.isfinite(y))


def test_bad_input_is_named():
    net = mindcv_ext.create_model("adder_resnet20", kernels="composite")
    with pytest.raises(ValueError, match="expected input"):
        net(_x((1, 1, 32, 32)))


def test_adaptive_gradient_scaling_reaches_every_adder_layer():
    """With eta each adder weight gradient is the unscaled one rescaled to L2 norm eta * sqrt(numel)
    (spec 1.2, 6.1); the other gradients are untouched."""
    nets = {eta: mindcv_ext.create_model("adder_resnet20", num_classes=10, kernels="composite", eta=eta)
            for eta in (0.2, None)}
    ms.load_param_into_net(nets[None], {p.name: p for p in nets[0.2].get_parameters()})
    labels = ms.Tensor(np.array([1, 3], np.int32))
    loss_fn = nn.CrossEntropyLoss()
    grads = {}
    for eta, net in nets.items():
        net.set_train(True)
        params = net.trainable_params()
        g = ms.grad(lambda x, _n=net: loss_fn(_n(x), labels), grad_position=None, weights=params)(_x((2, 3, 8, 8)))
        grads[eta] = {p.name: v.asnumpy() for p, v in zip(params, g)}
    adder_names = {f"{n}.weight" for n, c in nets[0.2].cells_and_names() if isinstance(c, AdderConv2d)}
    assert len(adder_names) == 20
    for name in adder_names:
        g, raw = grads[0.2][name], grads[None][name]
        assert math.isclose(np.linalg.norm(g), 0.2 * math.sqrt(g.size), rel_tol=1e-4), name
        assert not math.isclose(np.linalg.norm(raw), 0.2 * math.sqrt(raw.size), rel_tol=1e-2), name
        assert np.allclose(g, raw / np.linalg.norm(raw) * 0.2 * math.sqrt(raw.size), rtol=1e-3, atol=1e-6), name
    for name in ("conv1.weight", "fc.conv.weight", "layer1.0.bn1.gamma"):
        assert np.allclose(grads[0.2][name], grads[None][name], rtol=1e-4, atol=1e-7), name


@pytest.mark.parametrize("path", ["configs/addernet/adder_resnet20_cifar10.yaml",
                                  "configs/addernet/adder_resnet20_cifar100.yaml",
                                  "configs/addernet/adder_resnet50_imagenet.yaml",
                                  "configs/addernet/adder_resnet20_digits.yaml"])
def test_configs_validate_and_build(path):
    cfg = load_config(path)
    assert cfg.model.name.startswith("adder_resnet") and cfg.model.kwargs["eta"] == 0.2
    assert cfg.optim.filter_bias_and_bn is False and cfg.quant.groups == 4
    if "cifar" in path:   # spec 1.4: SGD 0.9, wd 5e-4, cosine from 0.1 over 400 epochs, batch 256
        assert (cfg.optim.name, cfg.optim.momentum, cfg.optim.weight_decay) == ("sgd", 0.9, 5e-4)
        assert (cfg.optim.lr, cfg.sched.name, cfg.sched.min_lr, cfg.train.epochs) == (0.1, "cosine", 0.0, 400)
        assert cfg.data.batch_size == 256 and cfg.data.mean == [0.4914, 0.4822, 0.4465]
        assert cfg.quant.calib_batches == 202 and cfg.quant.act_quantile == 0.9997
        assert cfg.model.num_classes == (100 if "cifar100" in path else 10)
