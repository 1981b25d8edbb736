"""Adder 2-D convolution (AdderNet) kernels: custom (Hybrid DSL) and composite (unfold) forms.

Both forms work on an input that is already zero-padded (by ``padding.ZeroPad`` in the layer,
whose gradient is a crop) and implement

* forward  ``Y[n,o,h,w] = -sum_{c,i,j} |Xp[n, g*Cg+c, h*s+i*d, w*s+j*d] - W[o,c,i,j]|``
* backward (AdderNet paper, not the true derivative):
  ``dW[o,c,i,j] = sum_{n,h,w} (Xp[...] - W[o,c,i,j]) * dY[n,o,h,w]``
  (= conv weight-gradient minus ``W * sum dY[:,o]``), optionally scaled by
  ``eta * sqrt(W.size) / max(||dW||_2, 1e-12)``;
  ``dXp[n,g*Cg+c,y,x] = sum_{o in g, i, j} HardTanh(W[o,c,i,j] - Xp[n,..,y,x]) * dY[n,o,h,w]`` over
  the taps with ``y = h*s + i*d``, ``x = w*s + j*d``.
"""
import math

import numpy as np

import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

from . import _hybrid
from .padding import pad_zeros

__all__ = ["AdderCustom", "AdderComposite", "adder_output_size", "scale_weight_grad",
           "numpy_reference"]


def adder_output_size(size, k, stride, dilation):
    return (size - dilation * (k - 1) - 1) // stride + 1


# --------------------------------------------------------------------------- hybrid sources
_FWD_SRC = '''
def {name}(x, w):
    out = output_tensor((x.shape[0], w.shape[0], (x.shape[2] - {D} * (w.shape[2] - 1) - 1) // {S} + 1,
                         (x.shape[3] - {D} * (w.shape[3] - 1) - 1) // {S} + 1), x.dtype)
    for n in parallel(out.shape[0]):
        for o in range(out.shape[1]):
            for h in range(out.shape[2]):
                for q in range(out.shape[3]):
                    out[n, o, h, q] = 0.0
                    for c in reduce(w.shape[1]):
                        for i in reduce(w.shape[2]):
                            for j in reduce(w.shape[3]):
                                out[n, o, h, q] = out[n, o, h, q] - abs(x[n, {CIDX}, h * {S} + i * {D}, q * {S} + j * {D}] - w[o, c, i, j])
    return out
'''

# dz: dY with stride-zeros inserted and (k-1)*d zero rows/cols in front; size (Hp + (kh-1)d, Wp + (kw-1)d)
_GX_SRC = '''
def {name}(x, w, dz):
    gx = output_tensor(x.shape, x.dtype)
    for n in parallel(x.shape[0]):
        for cc in range(x.shape[1]):
            for y in range(x.shape[2]):
                for q in range(x.shape[3]):
                    gx[n, cc, y, q] = 0.0
                    for o in reduce({OG}):
                        for i in reduce(w.shape[2]):
                            for j in reduce(w.shape[3]):
                                gx[n, cc, y, q] = gx[n, cc, y, q] + max(min(w[{OIDX}, {CW}, i, j] - x[n, cc, y, q], 1.0), -1.0) * dz[n, {OIDX}, y + (w.shape[2] - 1 - i) * {D}, q + (w.shape[3] - 1 - j) * {D}]
    return gx
'''


def _fwd_op(stride, dilation, groups, cg):
    def build():
        name = f"adder_fwd_s{stride}_d{dilation}_g{groups}"
        cidx = "c" if groups == 1 else f"(o // (w.shape[0] // {groups})) * {cg} + c"
        src = _FWD_SRC.format(name=name, S=stride, D=dilation, CIDX=cidx)

        def out_shape(xs, ws):
            return (xs[0], ws[0], adder_output_size(xs[2], ws[2], stride, dilation),
                    adder_output_size(xs[3], ws[3], stride, dilation))
        return _hybrid.hybrid(src, name, out_shape, lambda xd, wd: xd)
    key = ("adder_fwd", stride, dilation, groups, cg if groups > 1 else 0)
    return _hybrid.custom_op(key, build)


def _gx_op(dilation, groups, cg, og):
    def build():
        name = f"adder_gx_d{dilation}_g{groups}_og{og}"
        if groups == 1:
            oidx, cw = "o", "cc"
        else:
            oidx, cw = f"(cc // {cg}) * {og} + o", f"cc % {cg}"
        src = _GX_SRC.format(name=name, D=dilation, OG=og, OIDX=oidx, CW=cw)
        return _hybrid.hybrid(src, name, lambda xs, ws, ds: xs, lambda xd, wd, dd: xd)
    key = ("adder_gx", dilation, groups, cg if groups > 1 else 0, og)
    return _hybrid.custom_op(key, build)


# --------------------------------------------------------------------------- shared helpers
def scale_weight_grad(gw, eta):
    """AdderNet adaptive learning-rate scaling: ``gw * eta * sqrt(k) / max(||gw||_2, 1e-12)``."""
    k = 1
    for s in gw.shape:
        k *= s
    norm = ops.sqrt(ops.reduce_sum(gw * gw))
    return gw / ops.maximum(norm, 1e-12) * (math.sqrt(k) * eta)


def _dilate_pad_dy(dy, hp, wp, kh, kw, stride, dilation):
    """dY -> dz of shape (N, O, hp + (kh-1)d, wp + (kw-1)d): zeros inserted between rows/cols
    (stride), dY[h] placed at row (kh-1)d + h*s, zeros elsewhere."""
    n, o, ho, wo = dy.shape
    if stride > 1:
        z = ops.zeros((n, o, ho, wo, stride - 1), dy.dtype)
        dy = ops.concat((ops.expand_dims(dy, -1), z), -1).reshape(n, o, ho, wo * stride)
        z = ops.zeros((n, o, ho, stride - 1, wo * stride), dy.dtype)
        dy = ops.concat((ops.expand_dims(dy, 3), z), 3).reshape(n, o, ho * stride, wo * stride)
    lh, lw = dy.shape[2], dy.shape[3]
    if lh > hp:
        dy = dy[:, :, :hp, :]
    if lw > wp:
        dy = dy[:, :, :, :wp]
    ph, pw = (kh - 1) * dilation, (kw - 1) * dilation
    return pad_zeros(dy, (pw, wp - min(lw, wp), ph, hp - min(lh, hp)))


class _ConvWeightGrad(nn.Cell):
    """Weight gradient of a (grouped, strided, dilated) valid conv: sum_p dY[o,p] * X_col[j,p]."""

    def __init__(self, out_channels, kernel_size, stride, dilation, groups):
        super().__init__()
        from mindspore.ops.operations import _grad_ops  # pylint: disable=import-outside-toplevel
        self.prim = _grad_ops.Conv2DBackpropFilter(out_channels, kernel_size, pad_mode="valid",
                                                   stride=(1, 1, stride, stride),
                                                   dilation=(1, 1, dilation, dilation), group=groups)

    def construct(self, dy, xp, w):
        return self.prim(dy, xp, w.shape)


# --------------------------------------------------------------------------- custom (Hybrid)
class AdderCustom(nn.Cell):
    """Adder conv on a pre-padded input with Hybrid-DSL forward and input-gradient kernels."""

    def __init__(self, out_channels, in_per_group, kernel_size, stride=1, dilation=1, groups=1, eta=None):
        super().__init__()
        self.stride, self.dilation, self.groups = stride, dilation, groups
        self.kh, self.kw = kernel_size
        self.eta = eta
        og = out_channels // groups
        self.fwd = _fwd_op(stride, dilation, groups, in_per_group)
        self.gx = _gx_op(dilation, groups, in_per_group, og)
        self.gw = _ConvWeightGrad(out_channels, kernel_size, stride, dilation, groups)

    # AKG (MindSpore 2.8, CPU) fails to compile these loop nests when the innermost extent is odd
    # and > 1 ("Stmt is not SSA"), so the innermost (width) extent is padded to an even size and
    # the extra column is cropped afterwards.
    def construct(self, xp, w):
        wo = adder_output_size(xp.shape[3], self.kw, self.stride, self.dilation)
        if wo > 1 and wo % 2 == 1:
            return self.fwd(pad_zeros(xp, (0, self.stride)), w)[:, :, :, :wo]
        return self.fwd(xp, w)

    def bprop(self, xp, w, out, dout):
        wp = xp.shape[3]
        xq = xp
        if wp > 1 and wp % 2 == 1:
            xq = pad_zeros(xp, (0, 1))
        dz = _dilate_pad_dy(dout, xq.shape[2], xq.shape[3], self.kh, self.kw, self.stride, self.dilation)
        gx = self.gx(xq, w, dz)
        if wp > 1 and wp % 2 == 1:
            gx = gx[:, :, :, :wp]
        gw = self.gw(dout, xp, w) - w * ops.reduce_sum(dout, (0, 2, 3)).reshape(-1, 1, 1, 1)
        if self.eta is not None:
            gw = scale_weight_grad(gw, self.eta)
        return gx, gw


# --------------------------------------------------------------------------- composite
class AdderComposite(nn.Cell):
    """Adder conv on a pre-padded input from stock ops (unfold + broadcast), paper gradients.

    Memory is O(N * Cout * Cin/g * k*k * Hout*Wout) like the official unfold implementation.
    """

    def __init__(self, out_channels, in_per_group, kernel_size, stride=1, dilation=1, groups=1, eta=None):
        super().__init__()
        self.stride, self.dilation, self.groups = stride, dilation, groups
        self.kh, self.kw = kernel_size
        self.o = out_channels
        self.cg = in_per_group
        self.eta = eta

    def _cols(self, xp):
        # (N, C*kh*kw, L) -> (N, G, Cg*kh*kw, L)
        n = xp.shape[0]
        cols = ops.unfold(xp, (self.kh, self.kw), dilation=self.dilation, padding=0, stride=self.stride)
        return cols.reshape(n, self.groups, self.cg * self.kh * self.kw, -1)

    def _out_hw(self, xp):
        return (adder_output_size(xp.shape[2], self.kh, self.stride, self.dilation),
                adder_output_size(xp.shape[3], self.kw, self.stride, self.dilation))

    def construct(self, xp, w):
        n = xp.shape[0]
        ho, wo = self._out_hw(xp)
        cols = self._cols(xp)                                              # N,G,K,L
        wc = w.reshape(self.groups, self.o // self.groups, -1)              # G,Og,K
        diff = ops.expand_dims(cols, 2) - ops.expand_dims(ops.expand_dims(wc, 0), -1)  # N,G,Og,K,L
        y = -ops.reduce_sum(ops.abs(diff), 3)                               # N,G,Og,L
        return y.reshape(n, self.o, ho, wo)

    def bprop(self, xp, w, out, dout):
        n = xp.shape[0]
        g, og = self.groups, self.o // self.groups
        cols = self._cols(xp)                                              # N,G,K,L
        wc = w.reshape(g, og, -1)                                          # G,Og,K
        d = dout.reshape(n, g, og, -1)                                     # N,G,Og,L
        # dW = sum_p (X - W) dY = dY @ X^T - W * rowsum(dY)
        gw = ops.reduce_sum(ops.BatchMatMul(transpose_b=True)(d, cols), 0)  # G,Og,K
        gw = gw - wc * ops.expand_dims(ops.reduce_sum(d, (0, 3)), -1)
        gw = gw.reshape(w.shape)
        if self.eta is not None:
            gw = scale_weight_grad(gw, self.eta)
        # dX_col[k,p] = sum_o HT(W[o,k] - X[k,p]) dY[o,p]
        ht = ops.clip_by_value(ops.expand_dims(ops.expand_dims(wc, 0), -1) - ops.expand_dims(cols, 2),
                               -1.0, 1.0)                                  # N,G,Og,K,L
        gcols = ops.reduce_sum(ht * ops.expand_dims(d, 3), 2)               # N,G,K,L
        gcols = gcols.reshape(n, g * self.cg * self.kh * self.kw, -1)
        gx = ops.fold(gcols, ms.Tensor([xp.shape[2], xp.shape[3]], ms.int32), (self.kh, self.kw),
                      dilation=self.dilation, padding=0, stride=self.stride)
        return gx, gw


def numpy_reference(xp, w, dy, stride=1, dilation=1, groups=1, eta=None):
    """Straightforward numpy version of the forward and the paper gradients (for tests)."""
    n, c, hp, wp = xp.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    ho = adder_output_size(hp, kh, stride, dilation)
    wo = adder_output_size(wp, kw, stride, dilation)
    y = np.zeros((n, o, ho, wo), np.float64)
    gx = np.zeros(xp.shape, np.float64)
    gw = np.zeros(w.shape, np.float64)
    for oo in range(o):
        gi = oo // og
        xs = xp[:, gi * cg:(gi + 1) * cg].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dilation: i * dilation + (ho - 1) * stride + 1: stride,
                           j * dilation: j * dilation + (wo - 1) * stride + 1: stride]  # n,cg,ho,wo
                wv = w[oo, :, i, j].astype(np.float64)[None, :, None, None]
                diff = patch - wv
                y[:, oo] -= np.abs(diff).sum(1)
                d = dy[:, oo][:, None].astype(np.float64)
                gw[oo, :, i, j] += (diff * d).sum((0, 2, 3))
                gx[:, gi * cg:(gi + 1) * cg, i * dilation: i * dilation + (ho - 1) * stride + 1: stride,
                   j * dilation: j * dilation + (wo - 1) * stride + 1: stride] += np.clip(-diff, -1, 1) * d
    if eta is not None:
        gw = gw / max(np.linalg.norm(gw), 1e-12) * math.sqrt(gw.size) * eta
    return y, gx, gw
