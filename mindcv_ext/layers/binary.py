"""Binary operators for BNNs (sign-STE, AdaBin) and a bit-packed binary conv for inference.

Functional API (differentiable; ``backend=None`` -> global choice of :mod:`ascend_kernels`):

* ``sign_ste(x)``: ``sign(x)`` forward (``sign(0) = 0``), gradient ``g * (|x| <= 1)``.
* ``adabin_binarize(x, alpha, beta, form="coded")``: AdaBin activation binarizer, official coded
  form ``y = alpha * (sign((x - beta)/alpha) + beta)`` (code letters: ``alpha`` = scale,
  ``beta`` = centre; threshold at ``beta``). Gradients with ``u = (x - beta)/alpha`` and the
  Bi-Real surrogate ``s'(u) = max(0, 2 - 2|u|)``: ``dx = g s'(u)``,
  ``dalpha = sum g (s + beta - u s'(u))``, ``dbeta = sum g (alpha - s'(u))``.
  ``form="paper"``: ``y = alpha * s + beta``, ``dalpha = sum g (s - u s'(u))``,
  ``dbeta = sum g (1 - s'(u))``. ``alpha``/``beta`` are scalars (any shape with one element);
  their gradients have their shapes.

Inference: :class:`PackedBinaryConv2d` packs the binarized weights once (64 channels per word)
and runs an XOR + popcount convolution (AOT C++ kernel) whose output equals the float conv of
the binarized, zero-padded tensors, with per-channel scale/offset applied after.
"""
import numpy as np

import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore import Tensor

from ascend_kernels import registry as _registry
from ascend_kernels import binary as _kb

from .helpers import to_pair

__all__ = ["sign_ste", "adabin_binarize", "SignSTE", "AdaBinBinarize", "PackedBinaryConv2d",
           "binarize_weight"]

_CELLS = {}


def _cell(key, factory):
    c = _CELLS.get(key)
    if c is None:
        c = factory()
        _CELLS[key] = c
    return c


def _check_float(x, name):
    if not isinstance(x, (Tensor, ms.Parameter)):
        raise TypeError(f"{name}: expected a mindspore Tensor, got {type(x).__name__}")
    if x.dtype not in (ms.float32, ms.float16):
        raise TypeError(f"{name}: expected a float32/float16 tensor, got {x.dtype}")


class SignSTE(nn.Cell):
    """Cell form of :func:`sign_ste`."""

    def __init__(self, backend=None):
        super().__init__()
        self.backend = _registry._check_name(backend)  # pylint: disable=protected-access
        self.custom = _kb.SignSTECustom()
        self.composite = _kb.SignSTEComposite()

    def construct(self, x):
        if _registry.use_custom(self.backend, "hybrid"):
            return self.custom(x)
        return self.composite(x)


class AdaBinBinarize(nn.Cell):
    """Cell form of :func:`adabin_binarize` (alpha/beta are passed in, e.g. the layer's Parameters)."""

    def __init__(self, form="coded", backend=None):
        super().__init__()
        self.backend = _registry._check_name(backend)  # pylint: disable=protected-access
        self.custom = _kb.AdaBinCustom(form)
        self.composite = _kb.AdaBinComposite(form)

    def construct(self, x, alpha, beta):
        if _registry.use_custom(self.backend, "hybrid"):
            return self.custom(x, alpha, beta)
        return self.composite(x, alpha, beta)


def sign_ste(x, backend=None):
    """sign(x) with the clipped straight-through estimator (see module doc)."""
    _check_float(x, "sign_ste")
    return _cell(("sign", backend), lambda: SignSTE(backend))(x)


def adabin_binarize(x, alpha, beta, form="coded", backend=None):
    """AdaBin activation binarizer with gradients to x, alpha and beta (see module doc)."""
    _check_float(x, "adabin_binarize")
    if int(np.prod(alpha.shape)) != 1 or int(np.prod(beta.shape)) != 1:
        raise ValueError("adabin_binarize: alpha and beta must hold one element each, got shapes "
                         f"{tuple(alpha.shape)} and {tuple(beta.shape)}")
    return _cell(("adabin", form, backend), lambda: AdaBinBinarize(form, backend))(x, alpha, beta)


def binarize_weight(w, mode="sign"):
    """numpy weights (O, C, KH, KW) -> (signs in {-1,+1}, alpha_w (O,), beta_w (O,)).

    ``sign``: alpha 1, beta 0; ``xnor``: alpha = mean|w| per output channel, beta 0;
    ``adabin``: beta = mean, alpha = population std per output channel, signs of ``w - beta``.
    Zero maps to +1 (the packed kernel's convention)."""
    w = np.asarray(w, np.float32)
    o = w.shape[0]
    flat = w.reshape(o, -1)
    if mode == "sign":
        alpha, beta = np.ones(o, np.float32), np.zeros(o, np.float32)
    elif mode == "xnor":
        alpha, beta = np.abs(flat).mean(1).astype(np.float32), np.zeros(o, np.float32)
    elif mode == "adabin":
        beta = flat.mean(1).astype(np.float32)
        alpha = np.sqrt(((flat - beta[:, None]) ** 2).mean(1)).astype(np.float32)
    else:
        raise ValueError(f"weight mode must be 'sign', 'xnor' or 'adabin', got {mode!r}")
    s = np.where(w - beta[:, None, None, None] >= 0, 1.0, -1.0).astype(np.float32)
    return s, alpha, beta



class PackedBinaryConv2d(nn.Cell):
    """Inference-only binary convolution on bit-packed signs.

    Args:
        weight: float weights (O, C, KH, KW) (numpy or Tensor); binarized and packed once here.
        stride, padding, dilation: as for a conv (zero padding *after* binarization).
        weight_mode: ``sign`` | ``xnor`` | ``adabin`` (see :func:`binarize_weight`).
        act_alpha, act_beta: activation binarizer; ``None`` -> sign (alpha 1, beta 0); else the
            AdaBin coded set ``alpha * (sign(x - beta) + beta)``.
        backend: ``custom`` -> packed AOT kernel; ``composite`` -> float conv of the binarized tensors.

    Output = ``conv2d(pad0(a_b), w_b)`` where ``a_b = alpha_a (s_a + beta_a)``,
    ``w_b = alpha_w s_w + beta_w``, ``s = +1 if value >= threshold else -1``. For the sign case
    it is exactly the (integer-valued) float conv of the +-1 tensors.
    """

    def __init__(self, weight, stride=1, padding=0, dilation=1, weight_mode="sign",
                 act_alpha=None, act_beta=None, backend=None):
        super().__init__()
        w = weight.asnumpy() if isinstance(weight, Tensor) else np.asarray(weight, np.float32)
        if w.ndim != 4:
            raise ValueError(f"PackedBinaryConv2d: weight must be 4-D (O, C, KH, KW), got {w.shape}")
        self.backend = _registry._check_name(backend)  # pylint: disable=protected-access
        self.out_channels, self.in_channels, kh, kw = w.shape
        self.kernel_size = (kh, kw)
        self.stride = int(stride)
        self.padding = to_pair(padding, "PackedBinaryConv2d: padding")
        self.dilation = int(dilation)
        s, aw, bw = binarize_weight(w, weight_mode)
        aa = 1.0 if act_alpha is None else float(act_alpha)
        ba = 0.0 if act_beta is None else float(act_beta)
        if aa <= 0:
            raise ValueError("PackedBinaryConv2d: act_alpha must be > 0")
        words, ssum = _kb.pack_signs(s)
        self.wpack = Tensor(words)
        self.wsum = Tensor(ssum)
        self.cfg = Tensor(np.array([self.stride, self.padding[0], self.padding[1], self.dilation,
                                    self.in_channels, kh, kw, 0], np.int32))
        self.act = Tensor(np.array([aa, ba], np.float32))
        self.wsc = Tensor(np.stack([aw, bw], 1).astype(np.float32))
        # composite twin: float weights of the binarized set
        self.w_bin = Tensor((aw[:, None, None, None] * s + bw[:, None, None, None]).astype(np.float32))
        self.act_alpha, self.act_beta = aa, ba
        self._prim = None
        if _registry.use_custom(self.backend, "aot_cpu"):
            self._prim = _kb.packed_conv_primitive(self.out_channels, self.kernel_size, self.stride,
                                                   self.padding, self.dilation)

    def binarize_input(self, x):
        s = ops.select(x >= self.act_beta, ops.ones_like(x), -ops.ones_like(x))
        return self.act_alpha * (s + self.act_beta)

    def composite(self, x):
        xb = self.binarize_input(x)
        return ops.conv2d(xb, self.w_bin, stride=self.stride, pad_mode="pad", padding=self.padding,
                          dilation=self.dilation)

    def construct(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"PackedBinaryConv2d: expected input (N, {self.in_channels}, H, W), "
                             f"got {x.shape}")
        if x.dtype != ms.float32:
            raise TypeError(f"PackedBinaryConv2d: input dtype must be float32, got {x.dtype}")
        if self._prim is not None and not _registry.is_exporting():
            return self._prim(x, self.wpack, self.wsum, self.cfg, self.act, self.wsc)
        return self.composite(x)
