"""Plain ResNets: the float baseline the compression methods compare against.

ImageNet layout (He et al. 2016): resnet18/34 (basic blocks), resnet50 (bottlenecks).
CIFAR layout (32x32 inputs, three stages of 16/32/64 channels): resnet20/32/56 with the
option-B (1x1 conv + BN) shortcut when the shape changes.
``conv`` lets other families (adder, binary) reuse the layouts with their own convolutions.
"""
from functools import partial
from typing import Callable, List, Optional

from mindspore import nn, ops
from mindspore.common.initializer import HeNormal

from .registry import Family, register_model



def conv2d(in_ch, out_ch, kernel_size, stride=1, padding=0):
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, pad_mode="pad", padding=padding, has_bias=False,
                     weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))


def bn(ch):
    return nn.BatchNorm2d(ch, momentum=0.9, eps=1e-5)


class BasicBlock(nn.Cell):
    expansion = 1

    def __init__(self, in_ch, ch, stride=1, conv: Callable = conv2d):
        super().__init__()
        self.conv1, self.bn1 = conv(in_ch, ch, 3, stride, 1), bn(ch)
        self.conv2, self.bn2 = conv(ch, ch, 3, 1, 1), bn(ch)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_ch != ch:
            self.downsample = nn.SequentialCell([conv(in_ch, ch, 1, stride, 0), bn(ch)])

    def construct(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Cell):
    expansion = 4

    def __init__(self, in_ch, ch, stride=1, conv: Callable = conv2d):
        super().__init__()
        out_ch = ch * self.expansion
        self.conv1, self.bn1 = conv(in_ch, ch, 1, 1, 0), bn(ch)
        self.conv2, self.bn2 = conv(ch, ch, 3, stride, 1), bn(ch)
        self.conv3, self.bn3 = conv(ch, out_ch, 1, 1, 0), bn(out_ch)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.SequentialCell([conv(in_ch, out_ch, 1, stride, 0), bn(out_ch)])

    def construct(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _check_input(x, in_channels: int, min_size: int):
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"expected input (N, {in_channels}, H, W), got {tuple(x.shape)}")
    if x.shape[2] < min_size or x.shape[3] < min_size:
        raise ValueError(f"input {tuple(x.shape)} is smaller than the {min_size}x{min_size} minimum")


class ResNet(nn.Cell):
    """ImageNet-layout ResNet (7x7 stem, max pool, four stages)."""

    def __init__(self, block, layers: List[int], num_classes=1000, in_channels=3, drop_rate=0.0,
                 conv: Callable = conv2d, stem_conv: Callable = conv2d, head: Optional[Callable] = None):
        super().__init__()
        self.in_channels = in_channels
        self.conv1, self.bn1, self.relu = stem_conv(in_channels, 64, 7, 2, 3), bn(64), nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, pad_mode="pad", padding=1)
        ch, stages = 64, []
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(block(ch, width, 2 if (j == 0 and i > 0) else 1, conv=conv))
                ch = width * block.expansion
            stages.append(nn.SequentialCell(blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = ch
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = (head or nn.Dense)(ch, num_classes)

    def forward_features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def construct(self, x):
        _check_input(x, self.in_channels, 32)
        x = ops.mean(self.forward_features(x), (2, 3))
        return self.fc(self.dropout(x))


class CifarResNet(nn.Cell):
    """CIFAR-layout ResNet (3x3 stem, three stages of 16/32/64 channels, global average pool)."""

    def __init__(self, depth: int, num_classes=10, in_channels=3, drop_rate=0.0, conv: Callable = conv2d,
                 stem_conv: Callable = conv2d, head: Optional[Callable] = None, block=BasicBlock):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.in_channels = in_channels
        self.conv1, self.bn1, self.relu = stem_conv(in_channels, 16, 3, 1, 1), bn(16), nn.ReLU()
        ch, stages = 16, []
        for i, width in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                blocks.append(block(ch, width, 2 if (j == 0 and i > 0) else 1, conv=conv))
                ch = width
            stages.append(nn.SequentialCell(blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.num_features = ch
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = (head or nn.Dense)(ch, num_classes)

    def forward_features(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def construct(self, x):
        _check_input(x, self.in_channels, 8)
        x = ops.mean(self.forward_features(x), (2, 3))
        return self.fc(self.dropout(x))


def _imagenet(block, layers, num_classes, in_channels, **kw):
    return ResNet(block, layers, num_classes=num_classes, in_channels=in_channels, **kw)


@register_model
def resnet18(num_classes=1000, in_channels=3, **kw):
    return _imagenet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, **kw)


@register_model
def resnet34(num_classes=1000, in_channels=3, **kw):
    return _imagenet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, **kw)


@register_model
def resnet50(num_classes=1000, in_channels=3, **kw):
    return _imagenet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, **kw)


@register_model
def resnet20(num_classes=10, in_channels=3, **kw):
    return CifarResNet(20, num_classes, in_channels, **kw)


@register_model
def resnet32(num_classes=10, in_channels=3, **kw):
    return CifarResNet(32, num_classes, in_channels, **kw)


@register_model
def resnet56(num_classes=10, in_channels=3, **kw):
    return CifarResNet(56, num_classes, in_channels, **kw)


FAMILY = Family(input_sizes={"resnet20": 32, "resnet32": 32, "resnet56": 32}, status="float baseline, tested",
                paper="He et al., Deep Residual Learning for Image Recognition, CVPR 2016")
