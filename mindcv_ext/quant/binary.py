"""Binary quantizers in the larq manner, and the layers that take them.

A quantizer is a small Cell applied to a layer's input or kernel; a method is a choice of
quantizers, not a copy of the layer::

    BinaryConv2d(64, 64, 3, 1, 1, input_quantizer=AdaBinActivationQuantizer(),
                 kernel_quantizer=AdaBinWeightQuantizer())

Quantizers (formulas from the AdaBin paper and code; letters as in the official AdaBin code:
``beta`` is the centre of the binary set, ``alpha`` its half-distance):

* :class:`SignQuantizer` - the plain BNN baseline (larq ``SteSign``): ``sign(x)`` with larq's
  ``sign(0) = +1`` (or PyTorch's 0 through the shared ``sign_ste`` operator), gradient 1 where
  ``|x| <= clip_value`` and 0 elsewhere.
* :class:`AdaBinWeightQuantizer` - per output channel, no learned parameters (official AdaBin code):
  ``beta_w = mean(W_o)``, ``alpha_w = sqrt(mean((W_o - beta_w)^2))`` (population std),
  ``W_b = alpha_w * sign((W_o - beta_w) / alpha_w) + beta_w``, i.e. the set
  ``{beta_w - alpha_w, beta_w + alpha_w}``. The sign's surrogate gradient is IR-Net's EDE
  ``k * t * (1 - tanh^2(t * u))``; ``k``/``t`` are non-trainable parameters (saved with the weights,
  so a resumed run keeps them) set per epoch by :func:`set_progressive` /
  :class:`ProgressiveSchedule`. Gradients also flow through the mean and the std.
* :class:`AdaBinActivationQuantizer` - learned ``alpha_a`` (init 1) and ``beta_a`` (init 0) per
  layer (official AdaBin code): ``u = (x - beta_a) / alpha_a``, ``s = sign(u)`` with the Bi-Real surrogate
  ``ds/du = max(0, 2 - 2|u|)``; output as in the official code ``alpha_a * (s + beta_a)``
  (``form="coded"``) or the paper's ``alpha_a * s + beta_a`` (``form="paper"``). Runs on the shared
  ``adabin_binarize`` operator (:mod:`mindcv_ext.layers.binary`).

The AdaBin activation quantizer uses the shared custom operator (custom kernel or composite twin,
chosen by ``backend`` / :mod:`ascend_kernels`); larq's sign is a small Cell with a custom bprop.
The EDE weight sign is written with ``stop_gradient`` instead (forward value exactly ``sign``,
gradient exactly the surrogate): ``k``/``t`` change between epochs, and an already compiled ``jit``
graph sees such a change only when it is made with ``ops.assign`` and the values are read in the
graph itself (neither a Python ``set_data`` nor a custom bprop that takes them as inputs sees it).

Every quantizer can also ``decompose`` its output into ``scale * s + offset`` with
``s in {-1, 0, +1}``; the bit-packed inference path (:mod:`mindcv_ext.quant.inference`) is built on it.
"""
import math
from typing import Optional, Tuple, Union

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import HeNormal

from ..layers.binary import AdaBinBinarize, SignSTE

__all__ = ["Quantizer", "SignQuantizer", "AdaBinWeightQuantizer", "AdaBinActivationQuantizer",
           "BinaryConv2d", "BinaryDense", "get_quantizer", "is_binary",
           "set_progressive", "progressive_values", "ProgressiveSchedule", "model_size_bits",
           "model_size_summary", "binary_layers", "QUANTIZERS"]


# --------------------------------------------------------------------------------------------
# sign functions with surrogate gradients
# --------------------------------------------------------------------------------------------
def with_surrogate(value: Tensor, u: Tensor, grad: Tensor) -> Tensor:
    """Forward ``value`` (exactly), backward ``d/du = grad`` (exactly)."""
    return ops.stop_gradient(value) + (u - ops.stop_gradient(u)) * ops.stop_gradient(grad)


def sign_zero(u: Tensor) -> Tensor:
    """``sign`` with ``sign(0) = 0`` (the official AdaBin / PyTorch convention)."""
    return ops.sign(u)


def sign_nonzero(u: Tensor) -> Tensor:
    """``sign`` with ``sign(0) = +1`` (the larq convention; always one of two values)."""
    return ops.sign(ops.sign(u) + 0.5)


class SteSign(nn.Cell):
    """larq ``SteSign``: ``sign(u)`` (0 -> +1), gradient ``1[|u| <= clip_value]`` (composite)."""

    def __init__(self, clip_value: float = 1.0):
        super().__init__()
        self.clip_value = float(clip_value)

    def construct(self, u):
        return sign_nonzero(u)

    def bprop(self, u, out, dout):
        return (dout * (ops.abs(u) <= self.clip_value).astype(dout.dtype),)


def ede_sign(u: Tensor, k: Tensor, t: Tensor) -> Tensor:
    """IR-Net EDE: ``sign(u)`` (0 -> 0), gradient ``k * t * (1 - tanh^2(t * u))``."""
    th = ops.tanh(t * u)
    return with_surrogate(sign_zero(u), u, k * t * (1.0 - th * th))


# --------------------------------------------------------------------------------------------
# quantizers
# --------------------------------------------------------------------------------------------
class Quantizer(nn.Cell):
    """Base class: ``construct(x) -> quantized x``; binary ones set ``bits = 1``."""

    bits = 32

    def decompose(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``(s, scale, offset)`` with ``construct(x) == scale * s + offset`` and ``s in {-1, 0, 1}``."""
        raise NotImplementedError(f"{type(self).__name__} has no two-level decomposition")


class SignQuantizer(Quantizer):
    """The plain BNN quantizer (larq ``SteSign``); for inputs and kernels alike.

    ``zero_to_one`` (default, larq's convention): ``sign(0) = +1``, so the output is always one of
    two values and the bit-packed kernel (which maps 0 to +1) reproduces it exactly. This matters
    here: at initialization BN is the identity and a sign conv's integer output can be exactly 0,
    which an option-A shortcut's zero channels pass on unchanged. ``zero_to_one=False`` gives
    PyTorch's ``sign(0) = 0`` through the shared ``sign_ste`` operator (clip 1 only).
    """

    bits = 1

    def __init__(self, clip_value: float = 1.0, zero_to_one: bool = True, backend: Optional[str] = None):
        super().__init__()
        if not clip_value > 0:
            raise ValueError(f"SignQuantizer: clip_value must be > 0, got {clip_value}")
        if not zero_to_one and clip_value != 1.0:
            raise ValueError("SignQuantizer: zero_to_one=False uses the shared sign_ste operator, whose clip is 1")
        self.clip_value = float(clip_value)
        self.zero_to_one = bool(zero_to_one)
        self.sign = SteSign(self.clip_value) if zero_to_one else SignSTE(backend)

    def construct(self, x):
        return self.sign(x)

    def decompose(self, x):
        s = sign_nonzero(x) if self.zero_to_one else sign_zero(x)
        return s, Tensor(1.0, ms.float32), Tensor(0.0, ms.float32)

    def extend_repr(self):
        return f"clip_value={self.clip_value}, zero_to_one={self.zero_to_one}"


def _channel_stats(w: Tensor) -> Tuple[Tensor, Tensor]:
    """Per output channel (axis 0) mean and population std, kept broadcastable to ``w``."""
    axes = tuple(range(1, w.ndim))
    beta = ops.mean(w, axis=axes, keep_dims=True)
    alpha = ops.sqrt(ops.mean(ops.square(w - beta), axis=axes, keep_dims=True))
    return alpha, beta


class AdaBinWeightQuantizer(Quantizer):
    """AdaBin weight binarization per output channel (official AdaBin code); EDE surrogate with ``k``, ``t``.

    ``k``, ``t`` default to the official layer defaults (10, 0.1); training with the progressive
    schedule sets them every epoch (:func:`set_progressive`). ``min_std`` only guards the division
    for a channel whose weights are all equal (the official code has no guard).
    """

    bits = 1

    def __init__(self, k: float = 10.0, t: float = 0.1, min_std: float = 1e-12):
        super().__init__()
        self.k = Parameter(Tensor(float(k), ms.float32), name="k", requires_grad=False)
        self.t = Parameter(Tensor(float(t), ms.float32), name="t", requires_grad=False)
        self.min_std = float(min_std)

    def construct(self, w):
        alpha, beta = _channel_stats(w)
        u = (w - beta) / ops.maximum(alpha, self.min_std)
        return alpha * ede_sign(u, self.k, self.t) + beta

    def decompose(self, w):
        alpha, beta = _channel_stats(w)
        return sign_zero((w - beta) / ops.maximum(alpha, self.min_std)), alpha, beta

    def extend_repr(self):
        return f"k={float(self.k.asnumpy()):g}, t={float(self.t.asnumpy()):g}"


class AdaBinActivationQuantizer(Quantizer):
    """AdaBin activation binarization with learned ``alpha_a``, ``beta_a`` (official AdaBin code)."""

    bits = 1
    FORMS = ("coded", "paper")

    def __init__(self, alpha_init: float = 1.0, beta_init: float = 0.0, form: str = "coded",
                 backend: Optional[str] = None):
        super().__init__()
        if form not in self.FORMS:
            raise ValueError(f"AdaBinActivationQuantizer: form must be one of {self.FORMS}, got {form!r}")
        if not alpha_init > 0:
            raise ValueError(f"AdaBinActivationQuantizer: alpha_init must be > 0, got {alpha_init}")
        self.form = form
        self.alpha_a = Parameter(Tensor(float(alpha_init), ms.float32), name="alpha_a")
        self.beta_a = Parameter(Tensor(float(beta_init), ms.float32), name="beta_a")
        self.binarize = AdaBinBinarize(form, backend)

    def construct(self, x):
        return self.binarize(x, self.alpha_a, self.beta_a)

    def decompose(self, x):
        s = sign_zero((x - self.beta_a) / self.alpha_a)
        offset = self.alpha_a * self.beta_a if self.form == "coded" else self.beta_a * 1.0
        return s, self.alpha_a * 1.0, offset

    def extend_repr(self):
        return f"form={self.form}"


QUANTIZERS = ("sign", "adabin", "none")


def get_quantizer(spec: Union[None, str, Quantizer], role: str, backend: Optional[str] = None) -> Optional[Quantizer]:
    """A quantizer from a name (``"sign"``, ``"adabin"``, ``"none"``/None) or an instance."""
    if spec is None or isinstance(spec, Quantizer):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"a quantizer is a name ({', '.join(QUANTIZERS)}), a Quantizer or None; got "
                        f"{type(spec).__name__}")
    if role not in ("input", "kernel"):
        raise ValueError(f"quantizer role must be 'input' or 'kernel', got {role!r}")
    name = spec.lower()
    if name == "none":
        return None
    if name == "sign":
        return SignQuantizer(backend=backend)
    if name == "adabin":
        return AdaBinActivationQuantizer(backend=backend) if role == "input" else AdaBinWeightQuantizer()
    raise ValueError(f"unknown quantizer '{spec}' (choose {', '.join(QUANTIZERS)})")


def is_binary(q) -> bool:
    return q is not None and getattr(q, "bits", 32) == 1


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------
def _mac_kind(input_quantizer, kernel_quantizer) -> str:
    if is_binary(input_quantizer) and is_binary(kernel_quantizer):
        return "binary"
    if is_binary(kernel_quantizer):
        return "binary_weight"
    return "float"


class BinaryConv2d(nn.Conv2d):
    """A 2-D convolution whose input and kernel pass through quantizers first.

    Zero padding is applied *after* the input quantizer (as in the official AdaBin code), so border
    taps are 0, not one of the two binary values. ``mac_kind`` is ``"binary"`` when both quantizers
    are 1-bit (``mindcv-ext summary`` then reports these MACs separately).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 input_quantizer=None, kernel_quantizer=None, has_bias: bool = False, dilation=1, group: int = 1,
                 weight_init=None, bias_init=None):
        if weight_init is None:
            weight_init = HeNormal(mode="fan_in", nonlinearity="relu")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, pad_mode="pad", padding=padding,
                         dilation=dilation, group=group, has_bias=has_bias, weight_init=weight_init,
                         bias_init=bias_init)
        self.input_quantizer = get_quantizer(input_quantizer, "input")
        self.kernel_quantizer = get_quantizer(kernel_quantizer, "kernel")

    @property
    def mac_kind(self) -> str:
        return _mac_kind(self.input_quantizer, self.kernel_quantizer)

    def construct(self, x):
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        w = self.weight
        if self.kernel_quantizer is not None:
            w = self.kernel_quantizer(w)
        out = self.conv2d(x, w)
        if self.has_bias:
            out = self.bias_add(out, self.bias)
        return out


class BinaryDense(nn.Dense):
    """A fully connected layer with input and kernel quantizers (per output unit for AdaBin)."""

    def __init__(self, in_channels: int, out_channels: int, has_bias: bool = True, input_quantizer=None,
                 kernel_quantizer=None, weight_init=None, bias_init=None):
        if weight_init is None:
            weight_init = HeNormal(mode="fan_in", nonlinearity="relu")
        kwargs = {"weight_init": weight_init, "has_bias": has_bias}
        if bias_init is not None:
            kwargs["bias_init"] = bias_init
        super().__init__(in_channels, out_channels, **kwargs)
        self.input_quantizer = get_quantizer(input_quantizer, "input")
        self.kernel_quantizer = get_quantizer(kernel_quantizer, "kernel")

    @property
    def mac_kind(self) -> str:
        return _mac_kind(self.input_quantizer, self.kernel_quantizer)

    def construct(self, x):
        if x.ndim != 2:
            raise ValueError(f"BinaryDense expects (N, {self.in_channels}) input, got {x.shape}")
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        w = self.weight
        if self.kernel_quantizer is not None:
            w = self.kernel_quantizer(w)
        out = ops.matmul(x, w.T)
        if self.has_bias:
            out = out + self.bias
        return out


def binary_layers(net: nn.Cell):
    """``(name, cell)`` of every BinaryConv2d / BinaryDense in ``net``."""
    return [(n, c) for n, c in net.cells_and_names() if isinstance(c, (BinaryConv2d, BinaryDense))]


# --------------------------------------------------------------------------------------------
# the progressive EDE schedule (official AdaBin code)
# --------------------------------------------------------------------------------------------
def progressive_values(epoch: int, epochs: int, t_min_exp: float = -3.0, t_span_exp: float = 4.0):
    """``(k, t)`` for ``epoch`` (0-based) of ``epochs``: ``t = 10^(-3 + 4 e/E)``, ``k = max(1, 1/t)``."""
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    if not 0 <= epoch < epochs:
        raise ValueError(f"epoch must be in [0, {epochs}), got {epoch}")
    t = 10.0 ** (t_min_exp + t_span_exp * epoch / epochs)
    return max(1.0, 1.0 / t), t


def set_progressive(net: nn.Cell, epoch: int, epochs: int) -> int:
    """Set ``k``, ``t`` of every AdaBin weight quantizer in ``net`` for ``epoch``; returns how many."""
    k, t = progressive_values(epoch, epochs)
    n = 0
    for _, cell in net.cells_and_names():
        if isinstance(cell, AdaBinWeightQuantizer):
            ops.assign(cell.k, Tensor(k, ms.float32))
            ops.assign(cell.t, Tensor(t, ms.float32))
            n += 1
    return n


class ProgressiveSchedule:
    """Trainer callback ``(trainer, epoch, record)``: after epoch ``e`` set ``k``, ``t`` for ``e + 1``.

    Call :meth:`begin` (or :func:`set_progressive` with epoch 0) before training for epoch 0.
    """

    def __init__(self, epochs: int):
        self.epochs = int(epochs)

    def begin(self, net: nn.Cell, start_epoch: int = 0) -> None:
        set_progressive(net, min(start_epoch, self.epochs - 1), self.epochs)

    def __call__(self, trainer, epoch: int, record=None) -> None:
        if epoch + 1 < self.epochs:
            set_progressive(trainer.net, epoch + 1, self.epochs)


# --------------------------------------------------------------------------------------------
# model size
# --------------------------------------------------------------------------------------------
def model_size_summary(net: nn.Cell) -> dict:
    """Parameter counts and storage size: 1 bit per binarized kernel weight, 32 bits otherwise.

    Counts every parameter needed for inference (BN moving statistics included); the EDE schedule
    values ``k``, ``t`` are training state and are left out.
    """
    binary_names, schedule = set(), set()
    for _, cell in net.cells_and_names():
        if isinstance(cell, (BinaryConv2d, BinaryDense)) and is_binary(cell.kernel_quantizer):
            binary_names.add(id(cell.weight))
        if isinstance(cell, AdaBinWeightQuantizer):
            schedule.update((id(cell.k), id(cell.t)))
    binary = floating = 0
    for p in net.get_parameters():
        if id(p) in schedule:
            continue
        n = int(np.prod(p.shape)) if p.shape else 1
        if id(p) in binary_names:
            binary += n
        else:
            floating += n
    bits = binary + 32 * floating
    return {"binary_params": binary, "float_params": floating, "bits": bits,
            "bytes": int(math.ceil(bits / 8)), "mbytes": bits / 8 / 2 ** 20}


def model_size_bits(net: nn.Cell) -> int:
    """Model size in bits (binary kernel weights 1 bit, everything else 32 bits)."""
    return model_size_summary(net)["bits"]
