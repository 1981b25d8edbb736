"""Fused DFC-attention kernels (GhostNetV2, eval mode).

The gate branch is ``z = BN0(conv1x1(avgpool2x2(x)))``, then ``t = BN1(dw1xK(z))``,
``a = sigmoid(BN2(dwKx1(t)))`` (zero padding K//2 around z and t) and ``out = ghost * a``
resized to the ghost size by nearest neighbour (``src = floor(dst * in / out)``).

Eval mode, 1x1 stride-1 first conv, three launches in place of ten:

1. ``zc = conv1x1(avgpool2x2(x))`` written already zero-padded by K//2. On the CPU with a C++
   compiler, for even input sizes, one AOT kernel (``csrc/dfc_pool_conv.cc``: pool, a register-
   blocked 1x1 conv, padded store; ~0.7 ms against ~2.3 ms for the stock convolution below at
   8x40x28x28 -> 120). Otherwise one stock convolution: for even sizes the pool and the 1x1 conv
   are one 2x2 stride-2 conv with weights ``w0 / 4`` (both are linear, and a conv of zero padding
   is zero, so no pad op is needed); for odd sizes the stock pool, then a padded 1x1 conv;
2. the gate kernel: BN0 on the valid region (the padding stays zero), the 1xK depthwise conv and
   BN1 into a scratch ``t``, then the Kx1 depthwise conv, BN2 and the sigmoid (BNs folded inline
   from their eval statistics);
3. the multiply kernel: ``out = ghost * a[resize]``.

Input-side and parameter gradients are available for tests and fine-tuning in eval mode: the
primitive's bprop differentiates the composite twin of the same maths.
"""
import numpy as np

import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

from . import _hybrid
from . import registry as _registry

__all__ = ["FusedDFC", "fold_bn", "dfc_gate_composite", "fusable"]

# Gate kernel inputs: zc (N, C, h + 2p, we + 2p), the raw 1x1-conv output zero-padded by
# p = K//2 (plus one zero scratch column when w is odd: AKG 2.8 on CPU miscompiles some loop
# nests whose innermost extent is odd and > 1), cm the 0/1 mask of the valid padded columns (a
# min/max mask on the innermost index is miscompiled for widths 2-3), the depthwise weights w1
# (C,1,1,K) and w2 (C,1,K,1) and the three BNs' (mean, gamma, beta, var). With s_i, b_i the folded
# BN scale/shift and m_row the valid-row mask:
#   t(y', x) = m_row(y') * (s1 * (s0 * sum_k w1[k] zc[y', x+k] + b0 * sum_k w1[k] cm[x+k]) + b1)
#   a[y, x]  = sigmoid(s2 * sum_k w2[k] t(y+k, x) + b2)
_GATE_SRC = '''
def {name}(zp, cm, w1, w2, m0, g0, b0, v0, m1, g1, b1, v1, m2, g2, b2, v2):
    a = output_tensor((zp.shape[0], zp.shape[1], zp.shape[2] - {KM1}, zp.shape[3] - {KM1}), zp.dtype)
    sc = allocate((6, zp.shape[1]), zp.dtype)
    for c in range(zp.shape[1]):
        sc[0, c] = g0[c] / sqrt(v0[c] + {EPS})
        sc[1, c] = b0[c] - m0[c] * (g0[c] / sqrt(v0[c] + {EPS}))
        sc[2, c] = g1[c] / sqrt(v1[c] + {EPS})
        sc[3, c] = b1[c] - m1[c] * (g1[c] / sqrt(v1[c] + {EPS}))
        sc[4, c] = g2[c] / sqrt(v2[c] + {EPS})
        sc[5, c] = b2[c] - m2[c] * (g2[c] / sqrt(v2[c] + {EPS}))
    t = allocate((zp.shape[0], zp.shape[1], zp.shape[2], zp.shape[3] - {KM1}), zp.dtype)
    for n in parallel(zp.shape[0]):
        for c in range(zp.shape[1]):
            for y in range(zp.shape[2]):
                for x in range(zp.shape[3] - {KM1}):
                    t[n, c, y, x] = {ROWMASK} * ((sc[0, c] * ({ZS}) + sc[1, c] * ({CS})) * sc[2, c] + sc[3, c])
            for y in range(zp.shape[2] - {KM1}):
                for x in range(zp.shape[3] - {KM1}):
                    a[n, c, y, x] = 1.0 / (1.0 + exp(0.0 - (({VS}) * sc[4, c] + sc[5, c])))
    return a
'''
# Multiply kernels: the exact 2x case uses a division-free loop nest ((dst*in)//out column
# indices are miscompiled in some loop nests), the general resize takes its index maps as inputs.
_MUL_X2_SRC = '''
def {name}(a, g):
    out = output_tensor(g.shape, g.dtype)
    for n in parallel(g.shape[0]):
        for c in range(g.shape[1]):
            for y in range(g.shape[2] // 2):
                for dy in range(2):
                    for x in range(g.shape[3] // 2):
                        for dx in range(2):
                            out[n, c, y * 2 + dy, x * 2 + dx] = g[n, c, y * 2 + dy, x * 2 + dx] * a[n, c, y, x]
    return out
'''
_MUL_GEN_SRC = '''
def {name}(a, g, iy, ix):
    out = output_tensor(g.shape, g.dtype)
    for n in parallel(g.shape[0]):
        for c in range(g.shape[1]):
            for yy in range(g.shape[2]):
                for xx in range(g.shape[3]):
                    out[n, c, yy, xx] = g[n, c, yy, xx] * a[n, c, iy[yy], ix[xx]]
    return out
'''


def _even(v):
    return v + 1 if (v > 1 and v % 2 == 1) else v


def _gate_op(k, eps):
    def build():
        name = f"dfc_gate_k{k}"
        p = k // 2
        # 1 where padded row y is a real row of z (zero padding otherwise)
        rowmask = (f"float32(max(min(y - {p - 1}, 1), 0) * "
                   f"max(min(zp.shape[2] - {p} - y, 1), 0))")
        zs = " + ".join(f"w1[c, 0, 0, {j}] * zp[n, c, y, x + {j}]" for j in range(k))
        cs = " + ".join(f"w1[c, 0, 0, {j}] * cm[x + {j}]" for j in range(k))
        vs = " + ".join(f"w2[c, 0, {r}, 0] * t[n, c, y + {r}, x]" for r in range(k))
        src = _GATE_SRC.format(name=name, KM1=k - 1, EPS=repr(eps), ROWMASK=rowmask, ZS=zs, CS=cs, VS=vs)

        def out_shape(zs_, *_):
            return (zs_[0], zs_[1], zs_[2] - (k - 1), zs_[3] - (k - 1))
        return _hybrid.hybrid(src, name, out_shape, lambda *d: d[0])
    return _hybrid.custom_op(("dfc_gate", k, eps), build)


def _mul_op(exact2x):
    def build():
        name = "dfc_mul_x2" if exact2x else "dfc_mul_gen"
        src = (_MUL_X2_SRC if exact2x else _MUL_GEN_SRC).format(name=name)
        return _hybrid.hybrid(src, name, lambda a, g, *_: g, lambda a, g, *_: g)
    return _hybrid.custom_op(("dfc_mul", exact2x), build)


def _pool_conv_primitive(out_channels, p):
    """Custom(aot) ``DfcPoolConv``: inputs x (N,C,H,W) with H, W even, w (O,C), cfg int32 [p, extra];
    output (N, O, H/2 + 2p, W/2 + 2p + extra)."""
    from . import aot
    so = aot.build("dfc_pool_conv")

    def out_shape(xs, ws, cs):  # pylint: disable=unused-argument
        w = xs[3] // 2
        return (xs[0], ws[0], xs[2] // 2 + 2 * p, w + 2 * p + (1 if (w > 1 and w % 2 == 1) else 0))
    prim = ops.Custom(f"{so}:DfcPoolConv", out_shape=out_shape, out_dtype=lambda *d: ms.float32,
                      func_type="aot")
    prim.add_prim_attr("dfc_pool_conv_cfg", f"{out_channels}_{p}")
    return prim


def _nearest_index(n_in, n_out):
    """int32 source indices floor(dst * n_in / n_out) for dst < n_out."""
    return (ops.arange(0, n_out, dtype=ms.int32) * n_in) // n_out


@ops.constexpr
def _column_mask(width, pad, valid):
    """float32 (width,): 1 on the valid columns [pad, pad + valid), 0 on the zero padding."""
    m = np.zeros((width,), np.float32)
    m[pad:pad + valid] = 1.0
    return ms.Tensor(m)


@ops.constexpr
def _pool_conv_cfg(p, extra):
    return ms.Tensor(np.array([p, extra], np.int32))


def fold_bn(bn):
    """(scale, shift) of an eval-mode BatchNorm2d: y = x * scale + shift."""
    scale = bn.gamma / ops.sqrt(bn.moving_variance + bn.eps)
    return scale, bn.beta - bn.moving_mean * scale


def _bn_eval(x, m, g, b, v, eps):
    c = m.shape[0]
    scale = g / ops.sqrt(v + eps)
    return x * scale.reshape(1, c, 1, 1) + (b - m * scale).reshape(1, c, 1, 1)


def dfc_gate_composite(z, w1, w2, m1, g1, b1, v1, m2, g2, b2, v2, out_hw, eps1=1e-5, eps2=1e-5):
    """Composite twin of the gate from ``z = BN0(conv1x1(pool(x)))`` (without the multiply)."""
    c = z.shape[1]
    k = w1.shape[3]
    p = k // 2
    t = ops.conv2d(z, w1, pad_mode="pad", padding=(0, p), groups=c)
    t = _bn_eval(t, m1, g1, b1, v1, eps1)
    a = ops.conv2d(t, w2, pad_mode="pad", padding=(p, 0), groups=c)
    a = ops.sigmoid(_bn_eval(a, m2, g2, b2, v2, eps2))
    return ops.interpolate(a, size=out_hw, mode="nearest")


class _CompositeCore(nn.Cell):
    """Composite twin of the fused path: ``g * gate(BN0(conv1x1(avgpool2x2(x))))``."""

    def __init__(self, eps):
        super().__init__()
        self.eps = eps
        self.pool = ops.AvgPool(kernel_size=2, strides=2, pad_mode="VALID")

    def construct(self, x, w0, w1, w2, m0, g0, b0, v0, m1, g1, b1, v1, m2, g2, b2, v2, g):
        z = _bn_eval(ops.conv2d(self.pool(x), w0), m0, g0, b0, v0, self.eps)
        return g * dfc_gate_composite(z, w1, w2, m1, g1, b1, v1, m2, g2, b2, v2, g.shape[-2:],
                                      self.eps, self.eps)


class _FusedCore(nn.Cell):
    """Padded pool+1x1 conv, gate kernel, multiply kernel; bprop = gradients of the composite."""

    def __init__(self, channels, k, eps=1e-5):
        super().__init__()
        self.k = k
        p = k // 2
        eps = float(eps)
        # even input sizes: avgpool2x2 + conv1x1 as one 2x2 stride-2 conv, output padded by p
        self.pool_conv = ops.Conv2D(channels, 2, stride=2, pad_mode="pad", pad=(2 * p, 2 * p, 2 * p, 2 * p))
        self.pool_conv_odd = ops.Conv2D(channels, 2, stride=2, pad_mode="pad",
                                        pad=(2 * p, 2 * p, 2 * p, 2 * p + 2))
        # odd input sizes (pooling drops the last row/column): stock pool, then the padded 1x1 conv
        self.pool = ops.AvgPool(kernel_size=2, strides=2, pad_mode="VALID")
        self.conv = ops.Conv2D(channels, 1, pad_mode="pad", pad=(p, p, p, p))
        self.conv_odd = ops.Conv2D(channels, 1, pad_mode="pad", pad=(p, p, p, p + 1))
        self.pool_conv_aot = _pool_conv_primitive(channels, p) if _registry.kind_available("aot_cpu") else None
        self.gate = _gate_op(k, eps)
        self.mul_x2 = _mul_op(True)
        self.mul_gen = _mul_op(False)
        self.composite = _CompositeCore(eps)
        self.grad = ops.GradOperation(get_all=True, sens_param=True)

    def _padded_z(self, x, w0):
        hin, win = x.shape[2], x.shape[3]
        w = win // 2
        odd = w > 1 and w % 2 == 1
        if hin % 2 == 0 and win % 2 == 0:
            if self.pool_conv_aot is not None:
                cfg = _pool_conv_cfg(self.k // 2, 1 if odd else 0)
                return self.pool_conv_aot(x, w0.reshape(w0.shape[0], w0.shape[1]), cfg)
            w4 = ops.tile(w0 * 0.25, (1, 1, 2, 2))
            return self.pool_conv_odd(x, w4) if odd else self.pool_conv(x, w4)
        pooled = self.pool(x)
        return self.conv_odd(pooled, w0) if odd else self.conv(pooled, w0)

    def construct(self, x, w0, w1, w2, m0, g0, b0, v0, m1, g1, b1, v1, m2, g2, b2, v2, g):
        h, w = x.shape[2] // 2, x.shape[3] // 2
        hh, ww = g.shape[2], g.shape[3]
        zc = self._padded_z(x, w0)
        cm = _column_mask(zc.shape[3], self.k // 2, w)
        a = self.gate(zc, cm, w1, w2, m0, g0, b0, v0, m1, g1, b1, v1, m2, g2, b2, v2)
        if hh == 2 * h and ww == 2 * w and h % 2 == 0 and w % 2 == 0:
            return self.mul_x2(a, g)
        return self.mul_gen(a, g, _nearest_index(h, hh), _nearest_index(w, ww))

    def bprop(self, x, w0, w1, w2, m0, g0, b0, v0, m1, g1, b1, v1, m2, g2, b2, v2, g, out, dout):
        return self.grad(self.composite)(x, w0, w1, w2, m0, g0, b0, v0, m1, g1, b1, v1,
                                         m2, g2, b2, v2, g, dout)


def fusable(short_conv):
    """Whether a DFC ``short_conv`` fits the fused path (first conv 1x1, stride 1, no bias)."""
    conv = short_conv[0]
    return (tuple(conv.kernel_size) == (1, 1) and tuple(conv.stride)[-2:] == (1, 1)
            and not conv.has_bias and conv.group == 1)


class FusedDFC(nn.Cell):
    """Eval-mode DFC gate from the block input ``x``: three launches (see the module doc)."""

    def __init__(self, channels, dfc_kernel=5, eps=1e-5):
        super().__init__()
        self.k = dfc_kernel
        self.core = _FusedCore(channels, dfc_kernel, eps)

    def construct(self, x, ghost_out, short_conv):
        bn0, bn1, bn2 = short_conv[1], short_conv[3], short_conv[5]
        return self.core(x, short_conv[0].weight, short_conv[2].weight, short_conv[4].weight,
                         bn0.moving_mean, bn0.gamma, bn0.beta, bn0.moving_variance,
                         bn1.moving_mean, bn1.gamma, bn1.beta, bn1.moving_variance,
                         bn2.moving_mean, bn2.gamma, bn2.beta, bn2.moving_variance, ghost_out)
