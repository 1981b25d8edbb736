"""AdderNet 2-D convolution layer.

``AdderConv2d`` computes ``Y[n,o,h,w] = -sum_{c,i,j} |X_pad[n, c, h*s+i*d, w*s+j*d] - W[o,c,i,j]|``
(zero padding counts: padded taps contribute ``|W|``), with groups, and trains with the AdderNet
gradients (full-precision ``X - W`` for the weight, ``HardTanh(W - X)`` for the input; see
:mod:`ascend_kernels.adder`). ``adaptive_grad_eta`` (e.g. 0.2 as in the official code) turns on the
layer-wise gradient scaling ``eta * sqrt(k) / ||dW||_2`` inside the backward (identical to the
official code on one device; on several devices apply it after the all-reduce instead).

Backends: ``custom`` (Hybrid-DSL kernels) or ``composite`` (unfold + broadcast, same gradients);
``backend=None`` follows :mod:`ascend_kernels` (``set_backend`` / ``MINDCV_EXT_KERNELS``).
Weights are initialised N(0, 1) like the official layer.
"""
import mindspore as ms
import mindspore.nn as nn
from mindspore import Parameter
from mindspore.common.initializer import Normal, initializer

from ascend_kernels import registry as _registry
from ascend_kernels.adder import AdderComposite, AdderCustom, adder_output_size
from ascend_kernels.padding import ZeroPad

from .helpers import to_pair

__all__ = ["AdderConv2d"]



class AdderConv2d(nn.Cell):
    """Adder convolution (see module doc). Parameter ``weight``: (out, in/group, kh, kw)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 group=1, has_bias=False, adaptive_grad_eta=None, backend=None):
        super().__init__()
        if in_channels % group or out_channels % group:
            raise ValueError(f"AdderConv2d: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must be divisible by group ({group})")
        if not isinstance(stride, int) or stride < 1 or not isinstance(dilation, int) or dilation < 1:
            raise ValueError("AdderConv2d: stride and dilation must be positive ints")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = to_pair(kernel_size, "AdderConv2d: kernel_size")
        self.padding = to_pair(padding, "AdderConv2d: padding")
        self.stride, self.dilation, self.group = stride, dilation, group
        self.has_bias = has_bias
        self.adaptive_grad_eta = adaptive_grad_eta
        self.backend = _registry._check_name(backend)  # pylint: disable=protected-access
        self.weight = Parameter(initializer(Normal(1.0), (out_channels, in_channels // group) + self.kernel_size,
                                            ms.float32), name="weight")
        self.bias = Parameter(initializer("zeros", (out_channels,), ms.float32), name="bias") if has_bias else None
        args = (out_channels, in_channels // group, self.kernel_size, stride, dilation, group, adaptive_grad_eta)
        self.custom = AdderCustom(*args)
        ph, pw = self.padding
        self.zero_pad = ZeroPad((pw, pw, ph, ph)) if (ph > 0 or pw > 0) else None
        self.composite = AdderComposite(*args)

    def _check(self, x):
        if x.ndim != 4:
            raise ValueError(f"AdderConv2d: input must be 4-D (N, C, H, W), got shape {x.shape}")
        if x.dtype != ms.float32:
            raise TypeError(f"AdderConv2d: input dtype must be float32, got {x.dtype}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"AdderConv2d: input has {x.shape[1]} channels, expected {self.in_channels}")
        ho = adder_output_size(x.shape[2] + 2 * self.padding[0], self.kernel_size[0], self.stride, self.dilation)
        wo = adder_output_size(x.shape[3] + 2 * self.padding[1], self.kernel_size[1], self.stride, self.dilation)
        if ho <= 0 or wo <= 0:
            raise ValueError(f"AdderConv2d: input {x.shape} too small for kernel {self.kernel_size}")

    def construct(self, x):
        self._check(x)
        xp = x
        if self.zero_pad is not None:
            xp = self.zero_pad(x)
        if _registry.use_custom(self.backend, "hybrid"):
            y = self.custom(xp, self.weight)
        else:
            y = self.composite(xp, self.weight)
        if self.has_bias:
            y = y + self.bias.reshape(1, -1, 1, 1)
        return y

    def extend_repr(self):
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, group={self.group}, "
                f"has_bias={self.has_bias}, adaptive_grad_eta={self.adaptive_grad_eta}, backend={self.backend}")
