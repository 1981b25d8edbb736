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
"""
from functools import partial
from typing import Optional

from mindspore import nn

from ..layers.adder_conv import AdderConv2d
from ..layers.helpers import parse_kernels
from .registry import Family, register_model
from .resnet import BasicBlock, Bottleneck, CifarResNet, ResNet, bn

__all__ = ["AdderHead", "adder_conv", "DEFAULT_ETA"]

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


FAMILY = Family(kernels=True, input_sizes={"adder_resnet20": 32, "adder_resnet32": 32},
                paper="Chen et al., AdderNet: Do We Really Need Multiplications in Deep Learning?, CVPR 2020")
