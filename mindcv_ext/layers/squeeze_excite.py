"""Squeeze-and-excitation channel gate built from two 1x1 convolutions."""
from mindspore import nn, ops

from .helpers import make_divisible


_GATES = ("sigmoid", "hard_sigmoid")


class SqueezeExcite(nn.Cell):
    """Global average pool -> ``conv_reduce`` (1x1, bias) -> ReLU -> ``conv_expand`` (1x1, bias)
    -> gate -> rescale the input channels.

    Args:
        in_channels: channels of the input (and of the output).
        rd_ratio: reduced width as a fraction of ``in_channels`` (ignored if ``rd_channels`` given).
        rd_channels: explicit reduced width.
        rd_divisor: the reduced width is rounded with ``make_divisible(.., rd_divisor)``.
        gate: ``"sigmoid"`` or ``"hard_sigmoid"``.
    """

    def __init__(self, in_channels: int, rd_ratio: float = 0.25, rd_channels: int = None,
                 rd_divisor: int = 8, gate: str = "sigmoid"):
        super().__init__()
        if gate not in _GATES:
            raise ValueError(f"SqueezeExcite: unknown gate '{gate}', expected one of {sorted(_GATES)}")
        if rd_channels is None:
            if not 0.0 < rd_ratio <= 1.0:
                raise ValueError(f"SqueezeExcite: rd_ratio must be in (0, 1], got {rd_ratio}")
            rd_channels = make_divisible(in_channels * rd_ratio, rd_divisor)
        self.in_channels = in_channels
        self.rd_channels = rd_channels
        self.gate = gate
        self.hard_gate = gate == "hard_sigmoid"
        self.conv_reduce = nn.Conv2d(in_channels, rd_channels, 1, pad_mode="pad", padding=0, has_bias=True)
        self.act = nn.ReLU()
        self.conv_expand = nn.Conv2d(rd_channels, in_channels, 1, pad_mode="pad", padding=0, has_bias=True)

    def construct(self, x):
        s = ops.mean(x, (2, 3), keep_dims=True)
        s = self.conv_expand(self.act(self.conv_reduce(s)))
        if self.hard_gate:
            s = ops.relu6(s + 3.0) / 6.0  # hard sigmoid, relu6(x + 3) / 6
        else:
            s = ops.sigmoid(s)
        return x * s
