"""The quantized adder layer: integer L1 distances with one scale per kernel group.

``QuantAdderConv2d`` replaces a trained ``AdderConv2d`` after calibration. For every group g of
its plan (see :mod:`mindcv_ext.quant.adder_quantizers`) the input is quantized once with the group's
scale ``s_g`` to unsigned codes ``q_a`` (an int32 tensor) and each output channel o of the group
computes

    Y[o] = -(s_g / L) * sum_taps |q_a - 2 q_w[o]|  +  b_o        (L = 2^b - 1)

so the accumulation is integer and the scale is applied once per output, where a hardware adder
unit would apply it. ``b_o`` is the constant of the lossless weight clamp. Zero padding is the code
0, as in float.

Two forward paths, equal up to float rounding of the fake-quant sums (tests hold them together):

* ``integer=True``: int32 codes; the distance sum runs through the adder kernel on the codes
  carried in float32. Every operand and partial sum is an integer of magnitude at most
  ``K * (2^(b+1) - 1)`` (K = taps per output), checked to be below 2^24 where float32 represents
  every integer exactly, so the sum is the exact integer result in any summation order; it is
  cast back to int32 before scaling.
* ``integer=False``: fake quantization, ``adder(x_hat, w_hat)`` on the dequantized values.

Each group's distances are computed over all output channels and the channels of the group are
kept with a 0/1 mask, so the channel order never changes and every call has the float layer's
shapes (kernels compiled for the float model are reused).
"""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from ascend_kernels import registry as _registry
from ascend_kernels.adder import AdderComposite, AdderCustom
from ascend_kernels.padding import pad_zeros

from .adder_quantizers import ActivationQuantizer, AdderLayerPlan, WeightQuantizer, check_bits, clamp_to_plan

__all__ = ["QuantAdderConv2d", "AdderFunction", "EXACT_INT_LIMIT"]

EXACT_INT_LIMIT = 2 ** 24  # float32 holds every integer of smaller magnitude exactly


def _pair(v) -> Tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return int(v[0]), int(v[0])
        return int(v[-2]), int(v[-1])
    return int(v), int(v)


def _pads(padding) -> Tuple[int, int, int, int]:
    """(left, right, top, bottom) for ``ops.pad`` from an int, (h, w) or (top, bottom, left, right)."""
    if isinstance(padding, (tuple, list)):
        if len(padding) == 4:
            top, bottom, left, right = (int(p) for p in padding)
            return left, right, top, bottom
        ph, pw = _pair(padding)
        return pw, pw, ph, ph
    p = int(padding)
    return p, p, p, p


class AdderFunction(nn.Cell):
    """``adder(x, w)`` with zero padding: the kernel (custom or composite, as the registry decides) on
    the padded input. Holds no parameters; the weight is an argument."""

    def __init__(self, out_channels: int, in_per_group: int, kernel_size, stride=1, padding=0, dilation=1,
                 group: int = 1, backend: Optional[str] = None):
        super().__init__()
        if backend is not None:
            _registry._check_name(backend)  # pylint: disable=protected-access
        self.backend = backend
        self.pads = _pads(padding)
        self.has_pad = any(self.pads)
        ks = _pair(kernel_size)
        self.composite = AdderComposite(out_channels, in_per_group, ks, stride, dilation, group)
        self.custom = AdderCustom(out_channels, in_per_group, ks, stride, dilation, group) \
            if _registry.kind_available("hybrid") else None

    def use_custom(self) -> bool:
        return self.custom is not None and _registry.use_custom(self.backend, "hybrid")

    def construct(self, x, w):
        if self.has_pad:
            x = pad_zeros(x, self.pads)
        if self.use_custom():
            return self.custom(x, w)
        return self.composite(x, w)


class QuantAdderConv2d(nn.Cell):
    """A post-training-quantized adder layer (no trainable parameters; BN around it stays float)."""

    def __init__(self, weight: np.ndarray, plan: AdderLayerPlan, bits: int, stride: Union[int, Sequence] = 1,
                 padding=0, dilation: Union[int, Sequence] = 1, group: int = 1, bias: Optional[np.ndarray] = None,
                 integer: bool = True, backend: Optional[str] = None):
        super().__init__()
        w = np.asarray(weight, np.float64)
        if w.ndim != 4:
            raise ValueError(f"adder weight must be (Cout, Cin/group, kh, kw), got shape {w.shape}")
        out_ch, cg, kh, kw = w.shape
        if plan.labels.shape != (out_ch,):
            raise ValueError(f"plan has {plan.labels.shape[0]} channel labels for a weight with {out_ch} channels")
        self.bits = check_bits(bits)
        self.method = plan.method
        self.plan = plan
        self.integer = bool(integer)
        self.out_channels, self.in_channels, self.group = out_ch, cg * group, group
        self.kernel_size = (kh, kw)
        self.stride, self.dilation = _pair(stride), _pair(dilation)
        if self.stride[0] != self.stride[1] or self.dilation[0] != self.dilation[1]:
            raise ValueError(f"the adder kernels take one stride and one dilation for both axes, got "
                             f"stride {self.stride}, dilation {self.dilation}")
        self.taps = cg * kh * kw
        self.mac_kind = f"adder_int{self.bits}"
        worst = self.taps * (2 ** (self.bits + 1) - 1)
        if worst >= EXACT_INT_LIMIT:
            raise ValueError(f"{self.taps} taps at {self.bits} bits can sum to {worst}, beyond the 2^24 that float32 "
                             f"carries exactly; the integer path cannot be simulated exactly for this layer")

        self.wq, self.aq = WeightQuantizer(self.bits), ActivationQuantizer(self.bits)
        ch_scale = plan.channel_scales
        clamped, clamp_bias = clamp_to_plan(w, plan)
        q_w = self.wq.codes(clamped, ch_scale.reshape(-1, 1, 1, 1))
        self.weight_codes = q_w                                   # int32 numpy, for inspection and tests
        self.clamp_bias = clamp_bias                              # float64 numpy, b_o
        total_bias = clamp_bias + (0.0 if bias is None else np.asarray(bias, np.float64).reshape(-1))
        self.total_bias = total_bias

        self.n_groups = plan.groups
        self.code_max = float(self.aq.qmax)
        self.factors = tuple(self.aq.factor(s) for s in plan.scales)          # L / s_g
        self.steps = tuple(float(np.float32(s / self.aq.levels)) for s in plan.scales)  # s_g / L
        masks = [(plan.labels == g).reshape(1, -1, 1, 1) for g in range(self.n_groups)]
        self.masks_int = tuple(Tensor(m.astype(np.int32)) for m in masks)
        self.masks_f = tuple(Tensor(m.astype(np.float32)) for m in masks)
        self.w2 = Tensor((2 * q_w).astype(np.float32))                         # 2 q_w, integers
        self.w_hat = Tensor(self.wq.dequantize(q_w, ch_scale.reshape(-1, 1, 1, 1)).astype(np.float32))
        self.neg_step = Tensor((-ch_scale / self.aq.levels).astype(np.float32).reshape(1, -1, 1, 1))
        self.bias = Tensor(total_bias.astype(np.float32).reshape(1, -1, 1, 1))
        self.adder = AdderFunction(out_ch, cg, (kh, kw), self.stride[0], padding, self.dilation[0], group, backend)

    @classmethod
    def from_layer(cls, layer, plan: AdderLayerPlan, bits: int, integer: bool = True,
                   backend: Optional[str] = None) -> "QuantAdderConv2d":
        """Quantize a trained ``AdderConv2d`` with ``plan``. ``backend=None`` follows the kernel registry
        (not the float layer's choice), so export switches the layer to its composite form."""
        bias = getattr(layer, "bias", None)
        has_bias = bool(getattr(layer, "has_bias", bias is not None)) and bias is not None
        return cls(layer.weight.asnumpy(), plan, bits, stride=layer.stride, padding=layer.padding,
                   dilation=layer.dilation, group=layer.group, bias=bias.asnumpy() if has_bias else None,
                   integer=integer, backend=backend)

    def input_codes(self, x, g: int):
        """int32 codes of ``x`` on group g's activation grid."""
        q = ops.round(x * self.factors[g])
        return ops.cast(ops.clip_by_value(q, 0.0, self.code_max), ms.int32)

    def integer_distance(self, q_a, w2):
        """``sum_taps |q_a - w2|`` per output (an int32 tensor) for int32 input codes ``q_a``."""
        d = -self.adder(ops.cast(q_a, ms.float32), w2)
        return ops.cast(d, ms.int32)

    def construct(self, x):
        out = None
        for g in range(self.n_groups):
            q_a = self.input_codes(x, g)
            if self.integer:
                part = self.integer_distance(q_a, self.w2) * self.masks_int[g]
            else:
                x_hat = ops.cast(q_a, ms.float32) * self.steps[g]
                part = self.adder(x_hat, self.w_hat) * self.masks_f[g]
            out = part if out is None else out + part
        if self.integer:
            out = ops.cast(out, ms.float32) * self.neg_step
        return out + self.bias

    def macs(self, inputs, output) -> int:
        """Weight-input pairs of one call (each is a subtraction, an absolute value, an accumulation)."""
        return int(np.prod(output.shape)) * self.taps

    def extend_repr(self):
        return (f"{self.in_channels}->{self.out_channels}, kernel={self.kernel_size}, stride={self.stride}, "
                f"bits={self.bits}, method={self.method}, groups={self.n_groups}, "
                f"path={'integer' if self.integer else 'fake-quant'}")
