"""Binary operators: sign-STE and AdaBin binarizers (Hybrid DSL + composite twins) and the
bit-packed binary convolution (AOT C++).

Gradients (``g`` = incoming gradient):

* ``sign_ste(x)``: forward ``sign(x)`` (``sign(0) = 0`` like torch); backward ``g * (|x| <= 1)``.
* ``adabin_binarize(x, alpha, beta)`` (AdaBin activation, official *coded* form, code letters:
  ``alpha`` = scale/distance, ``beta`` = centre offset): ``u = (x - beta) / alpha``,
  ``s = sign(u)``, ``y = alpha * (s + beta)``; surrogate ``s'(u) = max(0, 2 - 2|u|)`` (Bi-Real);
  ``dy/dx = s'(u)``, ``dy/dalpha = s + beta - u s'(u)``, ``dy/dbeta = alpha - s'(u)``.
  ``form="paper"``: ``y = alpha * s + beta``, ``dy/dalpha = s - u s'(u)``, ``dy/dbeta = 1 - s'(u)``.
"""
import numpy as np

import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

from . import _hybrid
from .padding import pad_zeros

__all__ = ["SignSTECustom", "SignSTEComposite", "AdaBinCustom", "AdaBinComposite",
           "pack_signs", "packed_conv_primitive"]

# 1-D elementwise kernels; the wrapper pads the length to even (AKG 2.8 CPU odd-extent bug).
_SIGN_FWD = '''
def sign_fwd(x):
    y = output_tensor(x.shape, x.dtype)
    for i in range(x.shape[0]):
        y[i] = sign(x[i])
    return y
'''
_SIGN_BWD = '''
def sign_bwd(x, g):
    y = output_tensor(x.shape, x.dtype)
    for i in range(x.shape[0]):
        y[i] = g[i] * (1.0 - max(sign(abs(x[i]) - 1.0), 0.0))
    return y
'''
# ab = [alpha, beta]; coded (paper=0) or paper (paper=1) form
_ADABIN_FWD = '''
def {name}(x, ab):
    y = output_tensor(x.shape, x.dtype)
    for i in range(x.shape[0]):
        y[i] = {OUT}
    return y
'''
_ADABIN_BWD = '''
def {name}(x, ab, g):
    r = output_tensor((3, x.shape[0]), x.dtype)
    for i in range(x.shape[0]):
        r[0, i] = g[i] * max(2.0 - 2.0 * abs((x[i] - ab[1]) / ab[0]), 0.0)
        r[1, i] = g[i] * ({DA})
        r[2, i] = g[i] * ({DB})
    return r
'''
_S = "sign((x[i] - ab[1]) / ab[0])"
_U = "((x[i] - ab[1]) / ab[0])"
_SP = f"max(2.0 - 2.0 * abs({_U}), 0.0)"


def _flat_even(x):
    f = x.reshape(-1)
    n = f.shape[0]
    if n > 1 and n % 2 == 1:
        f = pad_zeros(f, (0, 1))
    return f, n


class SignSTECustom(nn.Cell):
    def __init__(self):
        super().__init__()
        self.fwd = _hybrid.custom_op(("sign_fwd",), lambda: _hybrid.hybrid(
            _SIGN_FWD, "sign_fwd", lambda s: s, lambda d: d))
        self.bwd = _hybrid.custom_op(("sign_bwd",), lambda: _hybrid.hybrid(
            _SIGN_BWD, "sign_bwd", lambda s, t: s, lambda d, e: d))

    def construct(self, x):
        f, n = _flat_even(x)
        return self.fwd(f)[:n].reshape(x.shape)

    def bprop(self, x, out, dout):
        f, n = _flat_even(x)
        g, _ = _flat_even(dout)
        return (self.bwd(f, g)[:n].reshape(x.shape),)


class SignSTEComposite(nn.Cell):
    def construct(self, x):
        return ops.sign(x)

    def bprop(self, x, out, dout):
        return (dout * (ops.abs(x) <= 1.0).astype(dout.dtype),)


def _ab(alpha, beta, dtype):
    return ops.concat((alpha.reshape(1).astype(dtype), beta.reshape(1).astype(dtype)))


class AdaBinCustom(nn.Cell):
    def __init__(self, form="coded"):
        super().__init__()
        if form not in ("coded", "paper"):
            raise ValueError(f"form must be 'coded' or 'paper', got {form!r}")
        paper = form == "paper"
        out = f"ab[0] * {_S} + ab[1]" if paper else f"ab[0] * ({_S} + ab[1])"
        da = f"{_S} - {_U} * {_SP}" if paper else f"{_S} + ab[1] - {_U} * {_SP}"
        db = f"1.0 - {_SP}" if paper else f"ab[0] - {_SP}"
        fname, bname = f"adabin_fwd_{form}", f"adabin_bwd_{form}"
        self.fwd = _hybrid.custom_op((fname,), lambda: _hybrid.hybrid(
            _ADABIN_FWD.format(name=fname, OUT=out), fname, lambda s, a: s, lambda d, e: d))
        self.bwd = _hybrid.custom_op((bname,), lambda: _hybrid.hybrid(
            _ADABIN_BWD.format(name=bname, DA=da, DB=db), bname,
            lambda s, a, t: (3, s[0]), lambda d, e, f: d))

    def construct(self, x, alpha, beta):
        f, n = _flat_even(x)
        return self.fwd(f, _ab(alpha, beta, x.dtype))[:n].reshape(x.shape)

    def bprop(self, x, alpha, beta, out, dout):
        f, n = _flat_even(x)
        g, _ = _flat_even(dout)
        r = self.bwd(f, _ab(alpha, beta, x.dtype), g)[:, :n]
        dx = r[0].reshape(x.shape)
        da = ops.reduce_sum(r[1]).reshape(alpha.shape).astype(alpha.dtype)
        db = ops.reduce_sum(r[2]).reshape(beta.shape).astype(beta.dtype)
        return dx, da, db


class AdaBinComposite(nn.Cell):
    def __init__(self, form="coded"):
        super().__init__()
        if form not in ("coded", "paper"):
            raise ValueError(f"form must be 'coded' or 'paper', got {form!r}")
        self.paper = form == "paper"

    def construct(self, x, alpha, beta):
        s = ops.sign((x - beta) / alpha)
        if self.paper:
            return alpha * s + beta
        return alpha * (s + beta)

    def bprop(self, x, alpha, beta, out, dout):
        u = (x - beta) / alpha
        s = ops.sign(u)
        sp = ops.relu(2.0 - 2.0 * ops.abs(u))
        if self.paper:
            da = s - u * sp
            db = 1.0 - sp
        else:
            da = s + beta - u * sp
            db = alpha - sp
        ga = ops.reduce_sum(dout * da).reshape(alpha.shape).astype(alpha.dtype)
        gb = ops.reduce_sum(dout * db).reshape(beta.shape).astype(beta.dtype)
        return dout * sp, ga, gb


# --------------------------------------------------------------------------- packed conv
def pack_signs(w):
    """numpy (O, C, KH, KW) float -> (packed int64 (O, KH*KW, ceil(C/64)), sum_c s (O, KH*KW) f32).

    Bit c of word c//64 is 1 where w >= 0 (sign +1)."""
    w = np.asarray(w, np.float32)
    o, c, kh, kw = w.shape
    nw = (c + 63) // 64
    bits = (w >= 0).transpose(0, 2, 3, 1).reshape(o, kh * kw, c)
    padded = np.zeros((o, kh * kw, nw * 64), np.uint64)
    padded[:, :, :c] = bits
    shifts = np.arange(64, dtype=np.uint64)
    words = (padded.reshape(o, kh * kw, nw, 64) << shifts).sum(-1, dtype=np.uint64)
    ssum = (2.0 * bits.sum(-1) - c).astype(np.float32)
    return words.view(np.int64), ssum


def packed_conv_primitive(out_channels, kernel_size, stride, padding, dilation):
    """Custom(aot) primitive for one layer configuration (compiles ``csrc/binconv.cc`` on first use).

    Inputs: x f32 (N,C,H,W), wpack i64, wsum f32, cfg i32 (8), act f32 (2), wsc f32 (O,2)."""
    from . import aot
    so = aot.build("binconv")
    kh, kw = kernel_size
    ph, pw = padding

    def out_shape(xs, *rest):  # pylint: disable=unused-argument
        return (xs[0], out_channels, (xs[2] + 2 * ph - dilation * (kh - 1) - 1) // stride + 1,
                (xs[3] + 2 * pw - dilation * (kw - 1) - 1) // stride + 1)
    prim = ops.Custom(f"{so}:BinaryConvPacked", out_shape=out_shape,
                      out_dtype=lambda *d: ms.float32, func_type="aot")
    # distinct attrs per configuration: PyNative caches shape inference per primitive signature
    prim.add_prim_attr("binconv_cfg", f"{out_channels}_{kh}_{kw}_{stride}_{ph}_{pw}_{dilation}")
    return prim
