"""Fused DFC-attention kernel (GhostNetV2, eval mode).

The gate branch is ``z = BN0(conv1x1(avgpool(x)))`` (stock ops; BN in eval form), then one
Hybrid-DSL kernel computes, with the two following BNs folded inline (eval statistics),

    t    = BN1(dw1xK(z))           (zero padding K//2 along W)
    a    = sigmoid(BN2(dwKx1(t)))  (zero padding K//2 along H)
    out  = ghost * a[floor(Y*h/H), floor(X*w/W)]

Input-side gradients are available for tests and fine-tuning in eval mode: the primitive's
bprop differentiates the composite twin of the same maths.
"""
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

from . import _hybrid

__all__ = ["FusedDFC", "fold_bn", "dfc_gate_composite"]

# Kernel inputs: zp = z zero-padded by K//2 (plus one scratch column when w is odd), the raw
# depthwise weights w1 (C,1,1,K) and w2 (C,1,K,1), the two BNs' (mean, gamma, beta, var) in eval
# form (folded into per-channel scale/shift in a small scratch buffer first), the Ghost output
# g, and for the general resize the source index maps iy/ix.
#   t(y', x) = m(y') * BN1(sum_k w1[k] zp[y', x+k])      (m masks the zero-padded rows)
#   a[y, x]  = sigmoid(BN2(sum_k w2[k] t(y+k, x)))     (t recomputed inline: AKG fails on a
#   out      = g * a[resize]                            chain of two scratch buffers)
# AKG 2.8 (CPU) workarounds: odd innermost extents > 1 and (dst*in)//out column indices are
# miscompiled in some loop nests, so widths are padded to even (scratch columns) and the general
# resize takes its index maps as inputs; the exact 2x case uses a division-free loop nest.
_GATE = '''
    sc = allocate((4, zp.shape[1]), zp.dtype)
    for c in range(zp.shape[1]):
        sc[0, c] = g1[c] / sqrt(v1[c] + {EPS1})
        sc[1, c] = b1[c] - m1[c] * (g1[c] / sqrt(v1[c] + {EPS1}))
        sc[2, c] = g2[c] / sqrt(v2[c] + {EPS2})
        sc[3, c] = b2[c] - m2[c] * (g2[c] / sqrt(v2[c] + {EPS2}))
    a = allocate((zp.shape[0], zp.shape[1], zp.shape[2] - {KM1}, zp.shape[3] - {KM1}), zp.dtype)
    for n in parallel(zp.shape[0]):
        for c in range(zp.shape[1]):
            for y in range(zp.shape[2] - {KM1}):
                for x in range(zp.shape[3] - {KM1}):
                    a[n, c, y, x] = 1.0 / (1.0 + exp(0.0 - (({VS}) * sc[2, c] + sc[3, c])))
'''
_X2 = '''
def {name}(zp, w1, w2, m1, g1, b1, v1, m2, g2, b2, v2, g):
    out = output_tensor(g.shape, g.dtype)
{GATE}
    for n in parallel(g.shape[0]):
        for c in range(g.shape[1]):
            for y in range(g.shape[2] // 2):
                for dy in range(2):
                    for x in range(g.shape[3] // 2):
                        for dx in range(2):
                            out[n, c, y * 2 + dy, x * 2 + dx] = g[n, c, y * 2 + dy, x * 2 + dx] * a[n, c, y, x]
    return out
'''
_GEN = '''
def {name}(zp, w1, w2, m1, g1, b1, v1, m2, g2, b2, v2, g, iy, ix):
    out = output_tensor(g.shape, g.dtype)
{GATE}
    for n in parallel(g.shape[0]):
        for c in range(g.shape[1]):
            for yy in range(g.shape[2]):
                for xx in range(g.shape[3]):
                    out[n, c, yy, xx] = g[n, c, yy, xx] * a[n, c, iy[yy], ix[xx]]
    return out
'''


def _even(v):
    return v + 1 if (v > 1 and v % 2 == 1) else v


def _fused_op(k, eps1, eps2, exact2x):
    def build():
        kind = "x2" if exact2x else "gen"
        name = f"dfc_fused_{kind}_k{k}"
        p = k // 2

        def row_mask(r):  # 1 where pooled row r - p is a real row (zero padding otherwise)
            return (f"float32(max(min(y + {r} - {p - 1}, 1), 0) * "
                    f"max(min(zp.shape[2] - {p} - y - {r}, 1), 0))")

        def t_at(r):  # BN1(dw1xK(z)) at padded row y + r, masked
            hs = " + ".join(f"w1[c, 0, 0, {j}] * zp[n, c, y + {r}, x + {j}]" for j in range(k))
            return f"{row_mask(r)} * (({hs}) * sc[0, c] + sc[1, c])"
        vs = " + ".join(f"w2[c, 0, {r}, 0] * {t_at(r)}" for r in range(k))
        gate = _GATE.format(KM1=k - 1, VS=vs, EPS1=repr(eps1), EPS2=repr(eps2))
        src = (_X2 if exact2x else _GEN).format(name=name, GATE=gate.rstrip("\n"))
        return _hybrid.hybrid(src, name, lambda *s: s[11], lambda *d: d[11])
    return _hybrid.custom_op(("dfc_fused", k, eps1, eps2, exact2x), build)


def _nearest_index(n_in, n_out, n_pad):
    """int32 source indices floor(dst * n_in / n_out) for dst < n_pad (scratch entries clamp)."""
    idx = (ops.arange(0, n_pad, dtype=ms.int32) * n_in) // n_out
    return ops.minimum(idx, n_in - 1)


def fold_bn(bn):
    """(scale, shift) of an eval-mode BatchNorm2d: y = x * scale + shift."""
    scale = bn.gamma / ops.sqrt(bn.moving_variance + bn.eps)
    return scale, bn.beta - bn.moving_mean * scale


def _bn_eval(x, m, g, b, v, eps):
    c = m.shape[0]
    scale = g / ops.sqrt(v + eps)
    return x * scale.reshape(1, c, 1, 1) + (b - m * scale).reshape(1, c, 1, 1)


def dfc_gate_composite(z, w1, w2, m1, g1, b1, v1, m2, g2, b2, v2, out_hw, eps1=1e-5, eps2=1e-5):
    """Composite twin of the fused kernel's gate (without the multiply)."""
    c = z.shape[1]
    k = w1.shape[3]
    p = k // 2
    t = ops.conv2d(z, w1, pad_mode="pad", padding=(0, p), groups=c)
    t = _bn_eval(t, m1, g1, b1, v1, eps1)
    a = ops.conv2d(t, w2, pad_mode="pad", padding=(p, 0), groups=c)
    a = ops.sigmoid(_bn_eval(a, m2, g2, b2, v2, eps2))
    return ops.interpolate(a, size=out_hw, mode="nearest")


class _CompositeCore(nn.Cell):
    """Composite twin of the fused primitive: ``g * gate``."""

    def __init__(self, eps1, eps2):
        super().__init__()
        self.eps1, self.eps2 = eps1, eps2

    def construct(self, z, w1, w2, m1, g1, b1, v1, m2, g2, b2, v2, g):
        return g * dfc_gate_composite(z, w1, w2, m1, g1, b1, v1, m2, g2, b2, v2, g.shape[-2:],
                                      self.eps1, self.eps2)


class _FusedCore(nn.Cell):
    """Primitive wrapper with a bprop (gradients of the composite twin)."""

    def __init__(self, k, eps1=1e-5, eps2=1e-5):
        super().__init__()
        self.k = k
        self.op_x2 = _fused_op(k, float(eps1), float(eps2), True)
        self.op_gen = _fused_op(k, float(eps1), float(eps2), False)
        self.composite = _CompositeCore(eps1, eps2)
        self.grad = ops.GradOperation(get_all=True, sens_param=True)

    def construct(self, z, w1, w2, m1, g1, b1, v1, m2, g2, b2, v2, g):
        h, w = z.shape[2], z.shape[3]
        hh, ww = g.shape[2], g.shape[3]
        p = self.k // 2
        we = _even(w)
        zp = ops.pad(z, (p, p + we - w, p, p))
        if hh == 2 * h and ww == 2 * w and h % 2 == 0 and w % 2 == 0:
            return self.op_x2(zp, w1, w2, m1, g1, b1, v1, m2, g2, b2, v2, g)
        gq = g
        ew, eh = _even(ww) - ww, _even(hh) - hh
        if ew + eh > 0:
            gq = ops.pad(g, (0, ew, 0, eh))
        out = self.op_gen(zp, w1, w2, m1, g1, b1, v1, m2, g2, b2, v2, gq,
                          _nearest_index(h, hh, _even(hh)), _nearest_index(w, ww, _even(ww)))
        if ew + eh > 0:
            out = out[:, :, :hh, :ww]
        return out

    def bprop(self, z, w1, w2, m1, g1, b1, v1, m2, g2, b2, v2, g, out, dout):
        return self.grad(self.composite)(z, w1, w2, m1, g1, b1, v1, m2, g2, b2, v2, g, dout)


class FusedDFC(nn.Cell):
    """Eval-mode DFC gate: stock 1x1 conv + BN, then the fused kernel (BN1/BN2 folded inline)."""

    def __init__(self, dfc_kernel=5, eps=1e-5):
        super().__init__()
        self.k = dfc_kernel
        self.core = _FusedCore(dfc_kernel, eps, eps)

    def construct(self, pooled, ghost_out, short_conv):
        z = short_conv[1](short_conv[0](pooled))
        bn1, bn2 = short_conv[3], short_conv[5]
        return self.core(z, short_conv[2].weight, short_conv[4].weight,
                         bn1.moving_mean, bn1.gamma, bn1.beta, bn1.moving_variance,
                         bn2.moving_mean, bn2.gamma, bn2.beta, bn2.moving_variance, ghost_out)
