import inspect

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor

from mindcv_ext.layers.dfc_attention import DFCAttention, nearest_resize

from _kernel_testutils import close, needs_aot, needs_hybrid


def test_interface_and_keys():
    sig = inspect.signature(DFCAttention.__init__)
    assert list(sig.parameters)[1:] == ["in_channels", "out_channels", "kernel_size", "stride",
                                        "dfc_kernel", "backend"]
    m = DFCAttention(24, 72)
    names = {p.name: p.shape for p in m.get_parameters()}
    assert names["short_conv.0.weight"] == (72, 24, 1, 1)
    assert names["short_conv.2.weight"] == (72, 1, 1, 5)
    assert names["short_conv.4.weight"] == (72, 1, 5, 1)
    for i in (1, 3, 5):
        for k in ("gamma", "beta", "moving_mean", "moving_variance"):
            assert f"short_conv.{i}.{k}" in names
    bn = m.short_conv[1]
    # running mean after one training batch: 0.9 * old + 0.1 * batch mean (torch momentum 0.1,
    # MindSpore momentum argument 0.9); a swapped convention would give 0.1 * old + 0.9 * mean
    bn.set_train(True)
    t = np.random.default_rng(0).standard_normal((4, 72, 3, 3)).astype(np.float32) + 2.0
    bn.moving_mean.set_data(Tensor(np.ones(72, np.float32)))
    bn(Tensor(t))
    close(bn.moving_mean.asnumpy(), 0.9 + 0.1 * t.mean((0, 2, 3)), 1e-6)
    assert abs(bn.eps - 1e-5) < 1e-12


def test_nearest_index_rule_3_to_7():
    x = Tensor(np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3))
    y = nearest_resize(x, (7, 7)).asnumpy()[0, 0]
    np.testing.assert_array_equal(y[0], [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(y[:, 0], [0, 0, 0, 3, 3, 6, 6])


def _make(cin, cout, backend):
    m = DFCAttention(cin, cout, backend=backend)
    rng = np.random.default_rng(7)
    for p in m.get_parameters():
        v = rng.standard_normal(p.shape).astype(np.float32) * 0.5
        p.set_data(Tensor(np.abs(v) + 0.5 if "variance" in p.name else v))
    return m


def _run(m, x, g):
    y = m(x, g)

    def f(a, b):
        return (m(a, b) ** 2).sum()
    (gx, gg), gw = ms.grad(f, grad_position=(0, 1), weights=m.trainable_params())(x, g)
    return [y.asnumpy(), gx.asnumpy(), gg.asnumpy()] + [w.asnumpy() for w in gw]


def _numpy_gate(m, x, hw):
    """Independent numpy reference of the eval-mode DFC output gate."""
    p = {q.name: q.asnumpy() for q in m.get_parameters()}

    def bn(t, i):
        s = p[f"short_conv.{i}.gamma"] / np.sqrt(p[f"short_conv.{i}.moving_variance"] + 1e-5)
        return (t - p[f"short_conv.{i}.moving_mean"][None, :, None, None]) * s[None, :, None, None] \
            + p[f"short_conv.{i}.beta"][None, :, None, None]
    n, c, h, w = x.shape
    pooled = x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).mean((3, 5))
    z = bn(np.einsum("nchw,oc->nohw", pooled, p["short_conv.0.weight"][:, :, 0, 0]), 1)
    k1 = p["short_conv.2.weight"][:, 0, 0, :]
    zp = np.pad(z, ((0, 0), (0, 0), (0, 0), (2, 2)))
    t = bn(sum(k1[None, :, None, j:j + 1] * zp[:, :, :, j:j + z.shape[3]] for j in range(5)), 3)
    k2 = p["short_conv.4.weight"][:, 0, :, 0]
    tp = np.pad(t, ((0, 0), (0, 0), (2, 2), (0, 0)))
    a = bn(sum(k2[None, :, i:i + 1, None] * tp[:, :, i:i + t.shape[2], :] for i in range(5)), 5)
    a = 1 / (1 + np.exp(-a))
    iy = np.arange(hw[0]) * a.shape[2] // hw[0]
    ix = np.arange(hw[1]) * a.shape[3] // hw[1]
    return a[:, :, iy][:, :, :, ix]


def test_composite_matches_numpy():
    m = _make(4, 6, "composite")
    m.set_train(False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 7)).astype(np.float32)
    g = rng.standard_normal((2, 6, 7, 7)).astype(np.float32)
    close(m(Tensor(x), Tensor(g)).asnumpy(), g * _numpy_gate(m, x, (7, 7)), 1e-5)


@needs_hybrid
@pytest.mark.parametrize("n,cin,cout,h", [(2, 4, 6, 7), (1, 3, 8, 14), (2, 3, 4, 8)])
def test_fused_matches_composite(n, cin, cout, h):
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((n, cin, h, h)).astype(np.float32))
    g = Tensor(rng.standard_normal((n, cout, h, h)).astype(np.float32))
    res = {}
    for be in ("custom", "composite"):
        m = _make(cin, cout, be)
        m.set_train(False)
        assert m.use_custom() == (be == "custom")
        res[be] = _run(m, x, g)
    for u, v in zip(res["custom"], res["composite"]):
        close(u, v)


@pytest.mark.parametrize("backend", ["composite", pytest.param("custom", marks=needs_hybrid)])
def test_training_mode_uses_batch_statistics(backend):
    """In training every BN normalizes with the batch statistics (biased variance) and moves its
    running mean as 0.9 * old + 0.1 * batch mean (torch momentum 0.1); NumPy reference."""
    m = _make(4, 6, backend)
    m.set_train(True)
    assert not m.use_custom()
    p = {q.name: q.asnumpy().astype(np.float64) for q in m.get_parameters()}
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    g = rng.standard_normal((2, 6, 8, 8)).astype(np.float32)
    means = {}

    def bn(t, i):
        mu, var = t.mean((0, 2, 3)), t.var((0, 2, 3))
        means[i] = mu
        return (t - mu[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5) \
            * p[f"short_conv.{i}.gamma"][None, :, None, None] + p[f"short_conv.{i}.beta"][None, :, None, None]
    xd = x.astype(np.float64)
    z = xd.reshape(2, 4, 4, 2, 4, 2).mean((3, 5))
    z = bn(np.einsum("nchw,oc->nohw", z, p["short_conv.0.weight"][:, :, 0, 0]), 1)
    k1, k2 = p["short_conv.2.weight"][:, 0, 0, :], p["short_conv.4.weight"][:, 0, :, 0]
    zp = np.pad(z, ((0, 0), (0, 0), (0, 0), (2, 2)))
    z = bn(sum(k1[None, :, None, j:j + 1] * zp[:, :, :, j:j + 4] for j in range(5)), 3)
    zp = np.pad(z, ((0, 0), (0, 0), (2, 2), (0, 0)))
    z = bn(sum(k2[None, :, i:i + 1, None] * zp[:, :, i:i + 4, :] for i in range(5)), 5)
    gate = (1 / (1 + np.exp(-z))).repeat(2, 2).repeat(2, 3)
    close(m(Tensor(x), Tensor(g)).asnumpy(), g * gate, 1e-5)
    for i in (1, 3, 5):
        close(m.short_conv[i].moving_mean.asnumpy(), 0.9 * p[f"short_conv.{i}.moving_mean"] + 0.1 * means[i], 1e-5)


def test_bad_inputs():
    m = DFCAttention(4, 6, backend="composite")
    x = Tensor(np.zeros((1, 4, 8, 8), np.float32))
    with pytest.raises(ValueError, match="channels"):
        m(x, Tensor(np.zeros((1, 5, 8, 8), np.float32)))
    with pytest.raises(ValueError, match="4-D"):
        m(Tensor(np.zeros((4, 8, 8), np.float32)), Tensor(np.zeros((1, 6, 8, 8), np.float32)))
    with pytest.raises(ValueError):
        DFCAttention(4, 6, backend="fast")


def test_graph_mode_composite_and_export_switch():
    import ascend_kernels
    m = _make(4, 6, None)
    m.set_train(False)
    ascend_kernels.set_backend("custom")
    with ascend_kernels.exporting():
        assert not m.use_custom()
    ascend_kernels.set_backend("composite")
    rng = np.random.default_rng(2)
    x = Tensor(rng.standard_normal((1, 4, 6, 6)).astype(np.float32))
    g = Tensor(rng.standard_normal((1, 6, 6, 6)).astype(np.float32))
    ref = m(x, g).asnumpy()
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        got = m(x, g).asnumpy()
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    close(got, ref, 1e-6)


@needs_aot
@pytest.mark.parametrize("flags", [None, [["-O3", "-mno-avx2", "-fopenmp"], ["-O3", "-fopenmp"], ["-O3"]]])
def test_pool_conv_kernel_matches_numpy(flags):
    """AOT pool + 1x1 conv + padded store (both the native and a build without AVX2)."""
    from ascend_kernels import aot
    rng = np.random.default_rng(5)
    so = aot.build("dfc_pool_conv", flags)
    for n, c, o, hh, ww, p, extra in [(2, 16, 50, 12, 10, 2, 1), (1, 3, 5, 2, 4, 1, 0), (3, 40, 18, 8, 16, 3, 0)]:
        x = rng.standard_normal((n, c, hh, ww)).astype(np.float32)
        w = rng.standard_normal((o, c)).astype(np.float32)
        h, wd = hh // 2, ww // 2
        z = aot.call(so, "DfcPoolConv", [x, w, np.array([p, extra], np.int32)],
                     (n, o, h + 2 * p, wd + 2 * p + extra))
        ref = np.zeros_like(z)
        ref[:, :, p:p + h, p:p + wd] = np.einsum("oc,nchw->nohw", w, x.reshape(n, c, h, 2, wd, 2).mean((3, 5)))
        close(z, ref, 1e-5)
    with pytest.raises(RuntimeError, match="returned 3"):  # odd input size
        aot.call(so, "DfcPoolConv", [x[:, :, :7], w, np.array([p, extra], np.int32)], (3, 18, 9, 14))
