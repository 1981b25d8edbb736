"""AdderNet ResNets: every convolution inside the residual blocks is an adder layer.

Layout (read from huawei-noah/AdderNet resnet20.py / resnet50.py):

* adder layers: every 3x3 and 1x1 convolution of the residual blocks, including the 1x1
  downsample of the shortcut ("option B": adder 1x1 with the block's stride, then BatchNorm);
  each adder layer is followed by BatchNorm (adder outputs are large negative numbers);
* full precision: the stem convolution (3x3 3->16 for the CIFAR layout, 7x7/2 3->64 + max pool
  for the ImageNet layout) and the classifier, which is a 1x1 convolution on the pooled
  features followed by ``BatchNorm2d(num_classes)`` (no conv bias in ResNet-20/32, a conv bias in
  the ImageNet models).

The block layouts are the float ones of :mod:`mindcv_ext.models.resnet` with the adder layer as
their ``conv`` factory. ``eta`` is the adaptive learning-rate scaling of the adder weight
gradients (AdderNet adaptive learning rate: ``g <- g / ||g||_2 * sqrt(numel) * eta``; the official code uses 0.2,
``None`` switches the scaling off). ``kernels``/``backend`` choose the adder implementation
(``auto``, ``custom`` kernel or ``composite`` stock ops).

ResNet-20 has 272,484 trainable parameters for 10 classes and 278,424 for 100 (huawei-noah/AdderNet).
Official checkpoints convert with :func:`convert_official_state_dict` (``mindcv-ext convert``).
"""
from functools import partial
from typing import Dict, Optional

import numpy as np
from mindspore import nn

from ..layers.adder_conv import AdderConv2d
from ..layers.helpers import parse_kernels
from .registry import Family, register_model
from .resnet import BasicBlock, Bottleneck, CifarResNet, ResNet, bn

__all__ = ["AdderHead", "adder_conv", "DEFAULT_ETA", "convert_official_state_dict"]

DEFAULT_ETA = 0.2  # huawei-noah/AdderNet adder.py divides the normalised gradient by 5 (huawei-noah/AdderNet)


def adder_conv(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
               eta: Optional[float] = DEFAULT_ETA, backend: Optional[str] = None) -> AdderConv2d:
    """The ``conv`` factory the ResNet blocks call: an adder layer without bias."""
    return AdderConv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, has_bias=False,
                       adaptive_grad_eta=eta, backend=backend)


class AdderHead(nn.Cell):
    """Classifier of the official adder ResNets: 1x1 conv on the pooled features, then BN(classes).

    Takes the pooled features ``(N, C)`` and returns logits ``(N, num_classes)``.
    """

    def __init__(self, in_channels: int, num_classes: int, has_bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, 1, has_bias=has_bias)
        self.bn = bn(num_classes)

    def construct(self, x):
        n, c = x.shape[0], x.shape[1]
        y = self.bn(self.conv(x.reshape(n, c, 1, 1)))
        return y.reshape(n, -1)


def _options(kwargs: dict):
    eta = kwargs.pop("eta", DEFAULT_ETA)
    if eta is not None and (isinstance(eta, bool) or not isinstance(eta, (int, float)) or eta <= 0):
        raise ValueError(f"eta (adaptive gradient scaling of the adder weights) must be a positive number "
                         f"or None, got {eta!r}")
    chosen = parse_kernels(kwargs.pop("kernels", "auto"))
    for fixed in ("conv", "stem_conv", "head", "block"):
        if fixed in kwargs:
            raise ValueError(f"'{fixed}' is fixed by the adder layout; use resnet.CifarResNet/ResNet directly")
    return partial(adder_conv, eta=None if eta is None else float(eta), backend=chosen), kwargs


def _cifar(depth: int, num_classes: int, in_channels: int, kwargs: dict) -> CifarResNet:
    conv, kwargs = _options(dict(kwargs))
    return CifarResNet(depth, num_classes, in_channels, conv=conv, block=BasicBlock,
                       head=partial(AdderHead, has_bias=False), **kwargs)


def _imagenet(block, layers, num_classes: int, in_channels: int, kwargs: dict) -> ResNet:
    conv, kwargs = _options(dict(kwargs))
    return ResNet(block, layers, num_classes, in_channels, conv=conv, head=partial(AdderHead, has_bias=True),
                  **kwargs)


@register_model
def adder_resnet20(num_classes=10, in_channels=3, **kwargs):
    """Adder ResNet-20 (CIFAR layout, 32x32): 272,484 parameters for 10 classes."""
    return _cifar(20, num_classes, in_channels, kwargs)


@register_model
def adder_resnet32(num_classes=10, in_channels=3, **kwargs):
    """Adder ResNet-32 (CIFAR layout, five blocks per stage)."""
    return _cifar(32, num_classes, in_channels, kwargs)


@register_model
def adder_resnet18(num_classes=1000, in_channels=3, **kwargs):
    """Adder ResNet-18 (ImageNet layout, 224x224). Not in the official repository: the
    torchvision layout with the adder rules of resnet50.py (classifier conv with bias)."""
    return _imagenet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, kwargs)


@register_model
def adder_resnet50(num_classes=1000, in_channels=3, **kwargs):
    """Adder ResNet-50 (ImageNet layout, 224x224, bottleneck blocks)."""
    return _imagenet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, kwargs)


# --------------------------------------------------------------------------------------------
# official checkpoints
# --------------------------------------------------------------------------------------------
_BN_LEAVES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def convert_official_state_dict(state_dict: Dict[str, np.ndarray], model_name: str) -> Dict[str, np.ndarray]:
    """Map a huawei-noah/AdderNet state dict (``module.`` already stripped) to this family's names.

    Official naming (resnet20.py / resnet50.py): an adder layer stores its weight as ``<layer>.adder``
    (and an optional bias as ``<layer>.b``); the classifier is a top-level 1x1 conv ``fc`` followed by
    a top-level ``bn2`` (BatchNorm2d over the classes); every other name matches ours. So:
    ``*.adder -> *.weight``, ``*.b -> *.bias``, ``fc.weight/bias -> fc.conv.weight/bias``,
    ``bn2.* -> fc.bn.*``, and BatchNorm ``weight/bias/running_mean/running_var`` ->
    ``gamma/beta/moving_mean/moving_variance`` (a module is a BatchNorm when it has ``running_mean``).
    Missing keys and shape mismatches are reported by ``mindcv_ext.convert.convert_state_dict``.
    """
    from .keymaps import ConversionError
    if not model_name.startswith("adder_resnet"):
        raise ConversionError(f"official AdderNet checkpoints map only onto adder_resnet* models, not '{model_name}'")
    bn_prefixes = {k[:-len(".running_mean")] for k in state_dict if k.endswith(".running_mean")}
    out, bad = {}, []
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in bn_prefixes:
            if leaf not in _BN_LEAVES:
                bad.append(key)
                continue
            target = "fc.bn" if prefix == "bn2" else prefix
            out[f"{target}.{_BN_LEAVES[leaf]}"] = np.asarray(value)
        elif prefix == "fc" and leaf in ("weight", "bias"):
            out[f"fc.conv.{leaf}"] = np.asarray(value)
        elif leaf == "adder":
            out[f"{prefix}.weight"] = np.asarray(value)
        elif leaf == "b" and prefix:
            out[f"{prefix}.bias"] = np.asarray(value)
        elif leaf == "weight" and prefix == "conv1":
            out[key] = np.asarray(value)
        else:
            bad.append(key)
    if bad:
        raise ConversionError(f"{len(bad)} official keys have no place in '{model_name}': "
                              f"{', '.join(sorted(bad)[:20])}")
    return out


FAMILY = Family(converter=convert_official_state_dict, kernels=True, input_sizes={"adder_resnet20": 32, "adder_resnet32": 32},
                paper="Chen et al., AdderNet: Do We Really Need Multiplications in Deep Learning?, CVPR 2020")
