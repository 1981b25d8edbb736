"""Fused DFC-attention kernel (GhostNetV2, eval mode).

With the BatchNorms folded into the convolutions (eval statistics), the gate branch is
``z = conv1x1'(avgpool(x))`` (stock conv with bias), then one Hybrid-DSL kernel computes

    t    = bh + dw1xK(z)        (zero padding K//2 along W)
    a    = sigmoid(bv + dwKx1(t))  (zero padding K//2 along H)
    out  = ghost * a[floor(Y*h/H), floor(X*w/W)]

Input-side gradients are available for tests and fine-tuning in eval mode: the primitive's
bprop differentiates the composite twin of the same maths.
"""
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

from . import _hybrid

__all__ = ["FusedDFC", "fold_bn", "dfc_gate_composite"]

# AKG compiles one kernel per input shape. The output loops run on even extents
# (AKG 2.8 CPU miscompiles some loop nests with odd extents > 1); extra rows/cols are scratch. AKG also
# fails on several chained intermediate buffers, so the horizontal pass is recomputed inside the
# vertical one (``m`` masks the zero-padded rows of the horizontal output):
#   a[y, x] = sigmoid(bv + sum_kv wv[kv] * m[y+kv] * (bh + sum_kh wh[kh] * zp[y+kv, x+kh]))
_SRC = '''
def {name}(zp, m, wh, bh, wv, bv, g, iy, ix):
    out = output_tensor(g.shape, g.dtype)
    a = allocate((zp.shape[0], zp.shape[1], zp.shape[2] - {KM1}, zp.shape[3] - {KM1}), g.dtype)
    for n in parallel(zp.shape[0]):
        for c in range(zp.shape[1]):
            for y in range(zp.shape[2] - {KM1}):
                for x in range(zp.shape[3] - {KM1}):
                    a[n, c, y, x] = 1.0 / (1.0 + exp(0.0 - ({GATE})))
    for n in parallel(g.shape[0]):
        for c in range(g.shape[1]):
            for yy in range(g.shape[2]):
                for xx in range(g.shape[3]):
                    out[n, c, yy, xx] = g[n, c, yy, xx] * a[n, c, iy[yy], ix[xx]]
    return out
'''


def _even(v):
    return v + 1 if (v > 1 and v % 2 == 1) else v


def _fused_op(k):
    def build():
        name = f"dfc_fused_k{k}"
        gate = "bv[c] + " + " + ".join(
            f"wv[c, {kv}] * m[y + {kv}] * (bh[c] + "
            + " + ".join(f"wh[c, {kh}] * zp[n, c, y + {kv}, x + {kh}]" for kh in range(k)) + ")"
            for kv in range(k))
        src = _SRC.format(name=name, KM1=k - 1, GATE=gate)
        return _hybrid.hybrid(src, name, lambda *s: s[6], lambda *d: d[6])
    return _hybrid.custom_op(("dfc_fused", k), build)


def _nearest_index(n_in, n_out, n_pad):
    """int32 source indices floor(dst * n_in / n_out) for dst < n_pad (scratch entries -> 0).

    (AKG mis-simplifies ``(dst * n_in) // n_out`` inside vectorized loops, so the map is an input.)
    """
    idx = (ops.arange(0, n_pad, dtype=ms.int32) * n_in) // n_out
    return ops.minimum(idx, n_in - 1)


def fold_bn(bn):
    """(scale, shift) of an eval-mode BatchNorm2d: y = x * scale + shift."""
    scale = bn.gamma / ops.sqrt(bn.moving_variance + bn.eps)
    return scale, bn.beta - bn.moving_mean * scale


def dfc_gate_composite(z, wh, bh, wv, bv, out_hw):
    """Composite version of the fused kernel's gate (without the multiply)."""
    c = z.shape[1]
    k = wh.shape[1]
    p = k // 2
    t = ops.conv2d(z, wh.reshape(c, 1, 1, k), pad_mode="pad", padding=(0, p), groups=c)
    t = t + bh.reshape(1, c, 1, 1)
    a = ops.conv2d(t, wv.reshape(c, 1, k, 1), pad_mode="pad", padding=(p, 0), groups=c)
    a = ops.sigmoid(a + bv.reshape(1, c, 1, 1))
    return ops.interpolate(a, size=out_hw, mode="nearest")


class _CompositeCore(nn.Cell):
    """Composite twin of the fused primitive: ``g * gate``."""

    def construct(self, z, wh, bh, wv, bv, g):
        return g * dfc_gate_composite(z, wh, bh, wv, bv, g.shape[-2:])


class _FusedCore(nn.Cell):
    """Primitive wrapper with a bprop (gradients of the composite twin)."""

    def __init__(self, k):
        super().__init__()
        self.k = k
        self.op = _fused_op(k)
        self.composite = _CompositeCore()
        self.grad = ops.GradOperation(get_all=True, sens_param=True)

    def construct(self, z, wh, bh, wv, bv, g):
        n, c, h, w = z.shape
        hh, ww = g.shape[2], g.shape[3]
        p = self.k // 2
        we = _even(w)
        zp = ops.pad(z, (p, p + we - w, p, p))
        m = ops.pad(ops.ones((h,), z.dtype), (p, p))
        gq = g
        ew, eh = _even(ww) - ww, _even(hh) - hh
        if ew + eh > 0:
            gq = ops.pad(g, (0, ew, 0, eh))
        out = self.op(zp, m, wh, bh, wv, bv, gq, _nearest_index(h, hh, _even(hh)),
                 _nearest_index(w, ww, _even(ww)))
        if ew + eh > 0:
            out = out[:, :, :hh, :ww]
        return out

    def bprop(self, z, wh, bh, wv, bv, g, out, dout):
        return self.grad(self.composite)(z, wh, bh, wv, bv, g, dout)


class FusedDFC(nn.Cell):
    """Eval-mode DFC gate: fold the three BNs of ``short_conv``, conv1x1 as a stock op, fused rest."""

    def __init__(self, dfc_kernel=5):
        super().__init__()
        self.k = dfc_kernel
        self.core = _FusedCore(dfc_kernel)

    def construct(self, pooled, ghost_out, short_conv):
        conv0, bn0, conv1, bn1, conv2, bn2 = (short_conv[0], short_conv[1], short_conv[2],
                                              short_conv[3], short_conv[4], short_conv[5])
        s0, b0 = fold_bn(bn0)
        s1, b1 = fold_bn(bn1)
        s2, b2 = fold_bn(bn2)
        c = s0.shape[0]
        w0 = conv0.weight * s0.reshape(-1, 1, 1, 1)
        z = conv0.conv2d(pooled, w0)
        z = z + b0.reshape(1, -1, 1, 1)
        wh = conv1.weight.reshape(c, self.k) * s1.reshape(-1, 1)
        wv = conv2.weight.reshape(c, self.k) * s2.reshape(-1, 1)
        return self.core(z, wh, b1, wv, b2, ghost_out)
