"""AdaBin binary networks (ECCV 2022) and their plain sign-BNN twins.

Layouts follow the official AdaBin code (
huawei-noah/Efficient-Computing ``BinaryNetworks/AdaBin``):

* ``adabin_resnet20`` (CIFAR): float stem conv3x3(3, 16) + BN + Maxout; three stages of three
  blocks (16/32/64 channels, strides 1/2/2); each block puts a shortcut around *each* binary conv::

      out = Maxout(BN(BinConv3x3(x)) + shortcut(x));  out = Maxout(BN(BinConv3x3(out)) + out)

  with the parameter-free option-A shortcut (stride-2 subsampling, channels zero-padded by
  planes/4 on each side); global average pool, BatchNorm1d(64), float Linear. 271,262 trainable
  parameters, the count of the official checkpoint's tensors.
* ``adabin_resnet18_cifar`` (CIFAR, official ``cifar10/nets/resnet18.py``): float stem conv3x3(3, 64)
  stride 1 + BN + Maxout; the same blocks (64/128/256/512, two per stage, strides 1/2/2/2) with a
  float 1x1 conv(stride) + BN shortcut where the shape changes; average pool, BatchNorm1d(512),
  Linear; PyTorch default init.
* ``adabin_resnet18`` (ImageNet): float stem conv7x7/2 + BN + Maxout + max pool 3/2; the same
  blocks (64/128/256/512, two per stage); downsample shortcut = AvgPool2d(2) -> float conv1x1 -> BN;
  global average pool, BatchNorm1d(512), Linear. The official model also builds a ``nonlinear2``
  (Maxout 512) and a ``bn3`` (BatchNorm1d 1000) that its forward never uses; they are kept here
  (unused too) so an official state dict converts by renaming: 11,698,376 used + 3,024 unused
  trainable parameters.
* ``adabin_vgg_small`` (CIFAR): *not in the official code*; the LQ-Net / IR-Net layout
  conv128-conv128-MP-conv256-conv256-MP-conv512-conv512-MP-FC with float first conv and classifier.
  The placement of BN and Maxout (conv -> [pool] -> BN -> Maxout) is this project's choice, not
  verified against the paper.

Binary layers are every 3x3 conv inside the blocks (weights and inputs); stem, downsample 1x1
convs, classifier, BN, Maxout and the quantizer scalars stay float. ``bnn_*`` models are the same
architectures with the plain sign quantizer on inputs and weights (the BNN baseline);
``quantizer="adabin"|"sign"`` selects either on any builder.

Names mirror the official state-dict keys (``layer1.0.conv1.weight``, ``...nonlinear1.pos_scale``);
the activation scalars live at ``conv.input_quantizer.alpha_a`` (official: ``conv.binary_a.alpha_a``).
"""
import math
from typing import Callable, Dict, Optional

import numpy as np
import mindspore as ms
from ascend_kernels.padding import ZeroPad
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import HeNormal, HeUniform, Normal, initializer

from ..layers.helpers import parse_kernels
from ..quant.binary import (AdaBinActivationQuantizer, AdaBinWeightQuantizer, BinaryConv2d,
                            ProgressiveSchedule, SignQuantizer, model_size_bits, model_size_summary,
                            set_progressive)
from .registry import Family, register_model

__all__ = ["Maxout", "AdaBinBasicBlock", "AdaBinCifarResNet", "AdaBinCifarResNet18", "AdaBinResNet",
           "AdaBinVGGSmall",
           "convert_official_state_dict", "model_size_bits", "model_size_summary", "train_callbacks",
           "set_progressive"]

NONLINEARITIES = ("maxout", "relu", "identity")


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------
class Maxout(nn.Cell):
    """The official "Maxout": per channel ``pos * relu(x) - neg * relu(-x)`` (a two-sided PReLU)."""

    def __init__(self, channels: int, pos_init: float = 1.0, neg_init: float = 0.25):
        super().__init__()
        self.channels = channels
        self.pos_scale = Parameter(Tensor(np.full((channels,), pos_init, np.float32)), name="pos_scale")
        self.neg_scale = Parameter(Tensor(np.full((channels,), neg_init, np.float32)), name="neg_scale")

    def construct(self, x):
        shape = (1, self.channels) + (1,) * (x.ndim - 2)
        return self.pos_scale.reshape(shape) * ops.relu(x) - self.neg_scale.reshape(shape) * ops.relu(-x)

    def extend_repr(self):
        return f"channels={self.channels}"


def _nonlinearity(kind: str, channels: int) -> nn.Cell:
    if kind == "maxout":
        return Maxout(channels)
    if kind == "relu":
        return nn.ReLU()
    if kind == "identity":
        return nn.Identity()
    raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {kind!r}")


def _bn(ch: int) -> nn.Cell:
    return nn.BatchNorm2d(ch, momentum=0.9, eps=1e-5)  # PyTorch momentum 0.1


def _bn1d(ch: int) -> nn.Cell:
    return nn.BatchNorm1d(ch, momentum=0.9, eps=1e-5)


class ShortcutA(nn.Cell):
    """Option-A shortcut: subsample by 2 and zero-pad ``pad`` channels on each side (no parameters)."""

    def __init__(self, pad: int, stride: int = 2):
        super().__init__()
        self.pad, self.stride = pad, stride
        self.zero_pad = ZeroPad((0, 0, 0, 0, pad, pad))

    def construct(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        return self.zero_pad(x)


def binary_conv_factory(quantizer: str = "adabin", form: str = "coded", weight_init="fan_in",
                        kernels: Optional[str] = None) -> Callable:
    """``conv(in, out, k, stride, padding) -> BinaryConv2d`` with fresh quantizers of ``quantizer``.

    ``kernels`` (auto | custom | composite | None = global choice) picks the shared binarizer's backend.
    """
    backend = parse_kernels(kernels)
    quantizer = str(quantizer).lower()
    if quantizer not in ("adabin", "sign"):
        raise ValueError(f"quantizer must be 'adabin' or 'sign', got {quantizer!r}")

    def make(in_ch, out_ch, k, stride=1, padding=0):
        if quantizer == "adabin":
            iq, kq = AdaBinActivationQuantizer(form=form, backend=backend), AdaBinWeightQuantizer()
        else:
            iq, kq = SignQuantizer(backend=backend), SignQuantizer(backend=backend)
        init = _init(weight_init, k, out_ch)
        return BinaryConv2d(in_ch, out_ch, k, stride, padding, input_quantizer=iq, kernel_quantizer=kq,
                            weight_init=init)
    return make


def _init(weight_init: str, k: int, out_ch: int):
    """``fan_in``: Kaiming normal (fan in); ``fan_out``: N(0, sqrt(2 / (k k out))); ``torch_default``:
    PyTorch's default conv init, Kaiming uniform with a = sqrt(5) (bound 1 / sqrt(fan_in))."""
    if weight_init == "fan_in":
        return HeNormal(mode="fan_in", nonlinearity="relu")
    if weight_init == "torch_default":
        return HeUniform(negative_slope=math.sqrt(5), mode="fan_in", nonlinearity="leaky_relu")
    return Normal(sigma=float(np.sqrt(2.0 / (k * k * out_ch))))


def _float_conv(in_ch, out_ch, k, stride=1, padding=0, weight_init="fan_in"):
    init = _init(weight_init, k, out_ch)
    return nn.Conv2d(in_ch, out_ch, k, stride=stride, pad_mode="pad", padding=padding, has_bias=False,
                     weight_init=init)


class AdaBinBasicBlock(nn.Cell):
    """Two binary 3x3 convs, each with BN, its own shortcut and a non-linearity (official AdaBin code)."""

    def __init__(self, in_planes: int, planes: int, stride: int, conv: Callable, shortcut: str = "A",
                 nonlinearity: str = "maxout", weight_init: str = "fan_in"):
        super().__init__()
        self.conv1, self.bn1 = conv(in_planes, planes, 3, stride, 1), _bn(planes)
        self.nonlinear1 = _nonlinearity(nonlinearity, planes)
        self.conv2, self.bn2 = conv(planes, planes, 3, 1, 1), _bn(planes)
        self.nonlinear2 = _nonlinearity(nonlinearity, planes)
        self.shortcut = self.downsample = None
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                if planes - in_planes != 2 * (planes // 4) or stride != 2:
                    raise ValueError(f"option-A shortcut needs stride 2 and planes = 2 x in_planes, got "
                                     f"{in_planes}->{planes} stride {stride}")
                self.shortcut = ShortcutA(planes // 4, stride)
            elif shortcut == "conv":  # CIFAR ResNet-18: float 1x1 conv with the block's stride, then BN
                self.shortcut = nn.SequentialCell([_float_conv(in_planes, planes, 1, stride, 0, weight_init),
                                                   _bn(planes)])
            elif shortcut == "avgpool_conv":
                layers = []
                if stride != 1:
                    layers.append(nn.AvgPool2d(2, 2, pad_mode="valid", ceil_mode=True, count_include_pad=False))
                else:
                    layers.append(nn.Identity())
                layers += [_float_conv(in_planes, planes, 1, 1, 0, weight_init), _bn(planes)]
                self.downsample = nn.SequentialCell(layers)
            else:
                raise ValueError(f"shortcut must be 'A', 'conv' or 'avgpool_conv', got {shortcut!r}")

    def construct(self, x):
        if self.shortcut is not None:
            identity = self.shortcut(x)
        elif self.downsample is not None:
            identity = self.downsample(x)
        else:
            identity = x
        out = self.nonlinear1(self.bn1(self.conv1(x)) + identity)
        return self.nonlinear2(self.bn2(self.conv2(out)) + out)


def _check_input(x, in_channels: int, min_size: int, name: str):
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{name}: expected input (N, {in_channels}, H, W), got {tuple(x.shape)}")
    if x.shape[2] < min_size or x.shape[3] < min_size:
        raise ValueError(f"{name}: input {tuple(x.shape)} is smaller than the {min_size}x{min_size} minimum")


# --------------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------------
class AdaBinCifarResNet(nn.Cell):
    """CIFAR-layout binary ResNet (ResNet-20: depth 20, option-A shortcuts)."""

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3, quantizer: str = "adabin",
                 form: str = "coded", nonlinearity: str = "maxout", drop_rate: float = 0.0,
                 kernels: Optional[str] = None):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.in_channels, self.quantizer = in_channels, quantizer
        conv = binary_conv_factory(quantizer, form, kernels=kernels)
        self.conv1, self.bn1 = _float_conv(in_channels, 16, 3, 1, 1), _bn(16)
        self.nonlinear1 = _nonlinearity(nonlinearity, 16)
        planes, stages = 16, []
        for i, width in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                blocks.append(AdaBinBasicBlock(planes, width, 2 if (j == 0 and i > 0) else 1, conv, "A", nonlinearity))
                planes = width
            stages.append(nn.SequentialCell(blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.num_features = planes
        self.bn2 = _bn1d(planes)
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.linear = nn.Dense(planes, num_classes, weight_init=HeNormal(mode="fan_in", nonlinearity="relu"))

    def forward_features(self, x):
        x = self.nonlinear1(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def construct(self, x):
        _check_input(x, self.in_channels, 4, "AdaBinCifarResNet")
        x = ops.mean(self.forward_features(x), (2, 3))
        return self.linear(self.dropout(self.bn2(x)))


class AdaBinCifarResNet18(nn.Cell):
    """CIFAR-layout binary ResNet-18 (official ``cifar10/nets/resnet18.py``): float conv3x3(3, 64)
    stride 1 + BN + Maxout; four stages of two blocks (64/128/256/512, strides 1/2/2/2) with a float
    1x1 conv + BN shortcut (``shortcut.0`` / ``shortcut.1``) where the shape changes; average pool,
    BatchNorm1d(512), Linear. PyTorch default init throughout (the official file sets none).

    The official head pools with ``avg_pool2d(out, 4)``, the global mean at the 32x32 input (4x4
    maps); here the global mean is taken for any input size.
    """

    def __init__(self, layers=(2, 2, 2, 2), num_classes: int = 10, in_channels: int = 3, quantizer: str = "adabin",
                 form: str = "coded", nonlinearity: str = "maxout", drop_rate: float = 0.0,
                 kernels: Optional[str] = None):
        super().__init__()
        self.in_channels, self.quantizer = in_channels, quantizer
        conv = binary_conv_factory(quantizer, form, weight_init="torch_default", kernels=kernels)
        self.conv1, self.bn1 = _float_conv(in_channels, 64, 3, 1, 1, "torch_default"), _bn(64)
        self.nonlinear1 = _nonlinearity(nonlinearity, 64)
        planes, stages = 64, []
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(AdaBinBasicBlock(planes, width, 2 if (j == 0 and i > 0) else 1, conv, "conv",
                                               nonlinearity, "torch_default"))
                planes = width
            stages.append(nn.SequentialCell(blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = planes
        self.bn2 = _bn1d(planes)
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.linear = nn.Dense(planes, num_classes)  # MindSpore's Dense default init is PyTorch's Linear init

    def forward_features(self, x):
        x = self.nonlinear1(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def construct(self, x):
        _check_input(x, self.in_channels, 8, "AdaBinCifarResNet18")
        x = ops.mean(self.forward_features(x), (2, 3))
        return self.linear(self.dropout(self.bn2(x)))


class AdaBinResNet(nn.Cell):
    """ImageNet-layout binary ResNet-18/34 (7x7 stem, max pool, four stages, Bi-Real shortcuts)."""

    def __init__(self, layers=(2, 2, 2, 2), num_classes: int = 1000, in_channels: int = 3,
                 quantizer: str = "adabin", form: str = "coded", nonlinearity: str = "maxout",
                 drop_rate: float = 0.0, kernels: Optional[str] = None):
        super().__init__()
        self.in_channels, self.quantizer = in_channels, quantizer
        conv = binary_conv_factory(quantizer, form, weight_init="fan_out", kernels=kernels)
        self.conv1, self.bn1 = _float_conv(in_channels, 64, 7, 2, 3, "fan_out"), _bn(64)
        self.nonlinear1 = _nonlinearity(nonlinearity, 64)
        self.maxpool = nn.MaxPool2d(3, 2, pad_mode="pad", padding=1)
        planes, stages = 64, []
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(AdaBinBasicBlock(planes, width, 2 if (j == 0 and i > 0) else 1, conv, "avgpool_conv",
                                               nonlinearity, "fan_out"))
                planes = width
            stages.append(nn.SequentialCell(blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = planes
        self.bn2 = _bn1d(planes)
        # built but unused in the official forward (kept so the official state dict maps 1:1)
        self.nonlinear2 = Maxout(planes)
        self.bn3 = _bn1d(num_classes)
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Dense(planes, num_classes)

    def forward_features(self, x):
        x = self.maxpool(self.nonlinear1(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def construct(self, x):
        _check_input(x, self.in_channels, 32, "AdaBinResNet")
        x = ops.mean(self.forward_features(x), (2, 3))
        return self.fc(self.dropout(self.bn2(x)))


class AdaBinVGGSmall(nn.Cell):
    """VGG-small (literature layout; BN/Maxout placement unverified, see the module docstring)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, quantizer: str = "adabin",
                 form: str = "coded", nonlinearity: str = "maxout", image_size: int = 32,
                 drop_rate: float = 0.0, kernels: Optional[str] = None):
        super().__init__()
        if image_size % 8 or image_size < 8:
            raise ValueError(f"VGG-small needs image_size divisible by 8 (three 2x2 pools), got {image_size}")
        self.in_channels, self.image_size, self.quantizer = in_channels, image_size, quantizer
        conv = binary_conv_factory(quantizer, form, kernels=kernels)
        widths = (128, 128, 256, 256, 512, 512)
        self.conv0, self.bn0 = _float_conv(in_channels, widths[0], 3, 1, 1), _bn(widths[0])
        self.nonlinear0 = _nonlinearity(nonlinearity, widths[0])
        self.pool_after = (1, 3, 5)
        for i in range(1, 6):
            setattr(self, f"conv{i}", conv(widths[i - 1], widths[i], 3, 1, 1))
            setattr(self, f"bn{i}", _bn(widths[i]))
            setattr(self, f"nonlinear{i}", _nonlinearity(nonlinearity, widths[i]))
        self.pool = nn.MaxPool2d(2, 2)
        self.num_features = widths[-1] * (image_size // 8) ** 2
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Dense(self.num_features, num_classes, weight_init=HeNormal(mode="fan_in", nonlinearity="relu"))

    def forward_features(self, x):
        x = self.nonlinear0(self.bn0(self.conv0(x)))
        x = self.nonlinear1(self.bn1(self.pool(self.conv1(x))))
        x = self.nonlinear2(self.bn2(self.conv2(x)))
        x = self.nonlinear3(self.bn3(self.pool(self.conv3(x))))
        x = self.nonlinear4(self.bn4(self.conv4(x)))
        return self.nonlinear5(self.bn5(self.pool(self.conv5(x))))

    def construct(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] != self.image_size \
                or x.shape[3] != self.image_size:
            raise ValueError(f"AdaBinVGGSmall: expected input (N, {self.in_channels}, {self.image_size}, "
                             f"{self.image_size}) (set image_size=...), got {tuple(x.shape)}")
        x = self.forward_features(x)
        return self.fc(self.dropout(x.reshape(x.shape[0], -1)))


# --------------------------------------------------------------------------------------------
# registered builders
# --------------------------------------------------------------------------------------------
def _build(cls, *args, progressive: bool = True, **kw):
    """``progressive``: EDE ``k``/``t`` start at the schedule's epoch-0 values (k = 1000, t = 1e-3) and
    :func:`train_callbacks` advances them each epoch; otherwise the layer defaults k = 10, t = 0.1;
    ``kernels`` (from ``model.kernels``): backend of the shared binarizers (auto | custom | composite)."""
    if not isinstance(progressive, bool):
        raise ValueError(f"progressive must be true or false, got {progressive!r}")
    net = cls(*args, **kw)
    net.progressive = progressive
    if progressive:  # epoch-0 values of the schedule (the same for any number of epochs)
        set_progressive(net, 0, 1)
    return net


@register_model
def adabin_resnet20(num_classes=10, in_channels=3, quantizer="adabin", **kw):
    return _build(AdaBinCifarResNet, 20, num_classes, in_channels, quantizer=quantizer, **kw)


@register_model
def bnn_resnet20(num_classes=10, in_channels=3, **kw):
    return _build(AdaBinCifarResNet, 20, num_classes, in_channels, quantizer="sign", **kw)


@register_model
def adabin_resnet18_cifar(num_classes=10, in_channels=3, quantizer="adabin", **kw):
    """AdaBin ResNet-18, CIFAR layout (the official CIFAR-10 table's ResNet-18 1w1a)."""
    return _build(AdaBinCifarResNet18, (2, 2, 2, 2), num_classes, in_channels, quantizer=quantizer, **kw)


@register_model
def bnn_resnet18_cifar(num_classes=10, in_channels=3, **kw):
    return _build(AdaBinCifarResNet18, (2, 2, 2, 2), num_classes, in_channels, quantizer="sign", **kw)


@register_model
def adabin_resnet18(num_classes=1000, in_channels=3, quantizer="adabin", **kw):
    return _build(AdaBinResNet, (2, 2, 2, 2), num_classes, in_channels, quantizer=quantizer, **kw)


@register_model
def bnn_resnet18(num_classes=1000, in_channels=3, **kw):
    return _build(AdaBinResNet, (2, 2, 2, 2), num_classes, in_channels, quantizer="sign", **kw)


@register_model
def adabin_resnet34(num_classes=1000, in_channels=3, quantizer="adabin", **kw):
    return _build(AdaBinResNet, (3, 4, 6, 3), num_classes, in_channels, quantizer=quantizer, **kw)


@register_model
def adabin_vgg_small(num_classes=10, in_channels=3, quantizer="adabin", **kw):
    return _build(AdaBinVGGSmall, num_classes, in_channels, quantizer=quantizer, **kw)


@register_model
def bnn_vgg_small(num_classes=10, in_channels=3, **kw):
    return _build(AdaBinVGGSmall, num_classes, in_channels, quantizer="sign", **kw)


# --------------------------------------------------------------------------------------------
# training hooks
# --------------------------------------------------------------------------------------------
def train_callbacks(cfg):
    """Epoch callbacks the trainer should run for this family: the progressive EDE schedule.

    On for AdaBin models unless the config sets ``model.kwargs.progressive: false`` (then the layer
    defaults k = 10, t = 0.1 stay); none for the sign twins. Returns a list of ``(trainer, epoch, record)`` callables; each has
    ``begin(net, start_epoch)`` to call before the first trained epoch (epoch 0 or a resumed one).
    """
    kwargs = dict(cfg.model.kwargs)
    quantizer = "sign" if str(cfg.model.name).startswith("bnn_") else kwargs.get("quantizer", "adabin")
    if quantizer != "adabin" or not kwargs.get("progressive", True):
        return []
    return [ProgressiveSchedule(cfg.train.epochs)]


# --------------------------------------------------------------------------------------------
# official checkpoints
# --------------------------------------------------------------------------------------------
_BN_SUFFIXES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def convert_official_state_dict(state_dict: Dict[str, np.ndarray], model_name: str) -> Dict[str, np.ndarray]:
    """Map an official AdaBin state dict (``module.`` already stripped) to this family's names.

    Renames: BatchNorm ``weight/bias/running_mean/running_var`` -> ``gamma/beta/moving_mean/
    moving_variance`` (a module is a BN when it has ``running_mean``); ``conv.binary_a.alpha_a`` ->
    ``conv.input_quantizer.alpha_a`` (same for ``beta_a``); Maxout scales are flattened to (C,).
    The EDE schedule values of each binary conv (not in official checkpoints) get the official
    layer defaults k = 10, t = 0.1 (they do not change the forward pass).
    """
    from .keymaps import ConversionError
    if not model_name.startswith("adabin_"):
        raise ConversionError(f"official AdaBin checkpoints map only onto adabin_* models, not '{model_name}' "
                              "(the sign-BNN twins have no official weights)")
    bn_prefixes = {k[:-len(".running_mean")] for k in state_dict if k.endswith(".running_mean")}
    out, bad = {}, []
    for key, value in state_dict.items():
        value = np.asarray(value)
        prefix, _, leaf = key.rpartition(".")
        if prefix in bn_prefixes:
            if leaf not in _BN_SUFFIXES:
                bad.append(key)
                continue
            out[f"{prefix}.{_BN_SUFFIXES[leaf]}"] = value
        elif prefix.endswith(".binary_a") and leaf in ("alpha_a", "beta_a"):
            conv = prefix[:-len(".binary_a")]
            out[f"{conv}.input_quantizer.{leaf}"] = value.reshape(())
            out[f"{conv}.kernel_quantizer.k"] = np.array(10.0, np.float32)
            out[f"{conv}.kernel_quantizer.t"] = np.array(0.1, np.float32)
        elif leaf in ("pos_scale", "neg_scale"):
            out[key] = value.reshape(-1)
        elif leaf in ("weight", "bias"):
            out[key] = value
        else:
            bad.append(key)
    if bad:
        raise ConversionError(f"{len(bad)} official keys have no place in '{model_name}': {', '.join(sorted(bad)[:20])}")
    return out


FAMILY = Family(converter=convert_official_state_dict, train_callbacks=train_callbacks, model_size=model_size_bits,
                kernels=True, input_sizes={n: 32 for n in ("adabin_resnet20", "bnn_resnet20", "adabin_vgg_small",
                                                            "bnn_vgg_small")},
                paper="Tu et al., AdaBin: Improving Binary Neural Networks with Adaptive Binary Sets, ECCV 2022")
