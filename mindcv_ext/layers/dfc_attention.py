"""DFC attention (GhostNetV2): the gate branch of a DFC Ghost module.

``DFCAttention(in, out)(x, ghost_out)`` returns
``ghost_out * nearest_resize(sigmoid(short_conv(avgpool2x2(x))), ghost_out.shape[-2:])``
with ``short_conv`` = 1x1 conv -> BN -> 1x5 depthwise -> BN -> 5x1 depthwise -> BN, the
parameter names matching the official checkpoint (``short_conv.{0..5}``).

Backends (``backend=None`` -> the global choice of :mod:`ascend_kernels`):

* ``composite``: stock MindSpore ops, always used in training (BatchNorm needs batch statistics)
  and for export.
* ``custom`` (eval only, 1x1 first conv): the 1x1 conv runs as one stock op writing a
  zero-padded output, and one fused Hybrid-DSL kernel does the three BNs (folded, eval
  statistics), the 1x5/5x1 depthwise pair, the sigmoid, the nearest resize (floor rule) and the
  multiply.
"""
import mindspore.nn as nn
import mindspore.ops as ops

from ascend_kernels import registry as _registry
from ascend_kernels.dfc import FusedDFC, fusable

__all__ = ["DFCAttention", "nearest_resize"]


def nearest_resize(x, size):
    """Nearest resize with PyTorch's index rule ``src = floor(dst * in / out)`` (3->7: 0,0,0,1,1,2,2)."""
    return ops.interpolate(x, size=size, mode="nearest")


class DFCAttention(nn.Cell):
    """Decoupled fully connected attention gate of GhostNetV2."""

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, dfc_kernel=5, backend=None):
        super().__init__()
        if backend is not None:
            _registry._check_name(backend)  # pylint: disable=protected-access
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dfc_kernel = dfc_kernel
        self.backend = backend
        p = dfc_kernel // 2
        self.short_conv = nn.SequentialCell([
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad_mode="pad",
                      padding=kernel_size // 2, has_bias=False),
            nn.BatchNorm2d(out_channels, momentum=0.9, eps=1e-5),
            nn.Conv2d(out_channels, out_channels, (1, dfc_kernel), 1, pad_mode="pad",
                      padding=(0, 0, p, p), group=out_channels, has_bias=False),
            nn.BatchNorm2d(out_channels, momentum=0.9, eps=1e-5),
            nn.Conv2d(out_channels, out_channels, (dfc_kernel, 1), 1, pad_mode="pad",
                      padding=(p, p, 0, 0), group=out_channels, has_bias=False),
            nn.BatchNorm2d(out_channels, momentum=0.9, eps=1e-5),
        ])
        self.avg_pool = nn.AvgPool2d(kernel_size=2, stride=2, pad_mode="valid")
        self.sigmoid = nn.Sigmoid()
        self.fused = FusedDFC(out_channels, dfc_kernel, eps=1e-5)  # no parameters; compiles on first custom call
        self.fusable = fusable(self.short_conv)

    # ------------------------------------------------------------------ helpers
    def use_custom(self):
        """True when this call should take the fused kernel (eval mode and custom backend)."""
        return (not self.training) and self.fusable and _registry.use_custom(self.backend, "hybrid")

    def gate(self, x):
        """The small (pooled-resolution) sigmoid gate, composite ops."""
        return self.sigmoid(self.short_conv(self.avg_pool(x)))

    def composite(self, x, ghost_out):
        g = self.gate(x)
        return ghost_out * nearest_resize(g, ghost_out.shape[-2:])

    def _custom_forward(self, x, ghost_out):
        return self.fused(x, ghost_out, self.short_conv)

    def construct(self, x, ghost_out):
        if x.ndim != 4 or ghost_out.ndim != 4:
            raise ValueError(f"DFCAttention: x and ghost_out must be 4-D, got {x.shape} and {ghost_out.shape}")
        if x.shape[1] != self.in_channels or ghost_out.shape[1] != self.out_channels:
            raise ValueError(f"DFCAttention: expected x with {self.in_channels} and ghost_out with "
                             f"{self.out_channels} channels, got {x.shape} and {ghost_out.shape}")
        if x.shape[2] < 2 or x.shape[3] < 2:
            raise ValueError(f"DFCAttention: x spatial size must be >= 2 for the 2x2 pooling, got {x.shape}")
        if self.use_custom():
            return self._custom_forward(x, ghost_out)
        return self.composite(x, ghost_out)
