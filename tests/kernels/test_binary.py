import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, ops

from ascend_kernels.binary import pack_signs
from mindcv_ext.layers.binary import (AdaBinBinarize, PackedBinaryConv2d, SignSTE,
                                             adabin_binarize, sign_ste)

from _kernel_testutils import close, needs_aot, needs_hybrid


def _pm1(a):
    return np.where(a >= 0, 1.0, -1.0).astype(np.float32)


def test_pack_signs_layout():
    w = np.random.default_rng(0).standard_normal((3, 70, 1, 2)).astype(np.float32)
    words, ssum = pack_signs(_pm1(w))
    assert words.shape == (3, 2, 2) and words.dtype == np.int64
    u = words.view(np.uint64)
    for c in (0, 5, 63, 64, 69):
        bit = (u[1, 1, c // 64] >> np.uint64(c % 64)) & np.uint64(1)
        assert bool(bit) == (w[1, c, 0, 1] >= 0)
    assert np.all(u[:, :, 1] >> np.uint64(6) == 0)  # unused high bits stay 0
    np.testing.assert_array_equal(ssum, _pm1(w).sum(1).reshape(3, 2))


@needs_aot
@pytest.mark.parametrize("shape,k,stride,pad", [((2, 70, 7, 6), 3, 1, 1), ((1, 64, 9, 9), 3, 2, 1),
                                                 ((2, 130, 5, 8), 3, 1, 0), ((1, 33, 6, 7), 1, 2, 0),
                                                 ((1, 16, 6, 6), 5, 1, 2)])
def test_packed_equals_float_conv_of_signs(shape, k, stride, pad):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((8, shape[1], k, k)).astype(np.float32)
    m = PackedBinaryConv2d(w, stride=stride, padding=pad, backend="custom")
    y = m(Tensor(x)).asnumpy()
    ref = ops.conv2d(Tensor(_pm1(x)), Tensor(_pm1(w)), stride=stride, pad_mode="pad", padding=pad).asnumpy()
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(y, m.composite(Tensor(x)).asnumpy())


@needs_aot
@pytest.mark.parametrize("o,shape,stride,pad,dil", [(30, (2, 70, 7, 6), 1, 1, 1), (60, (1, 256, 9, 9), 1, 1, 1),
                                                    (29, (1, 40, 9, 8), 2, 2, 2)])
def test_packed_channel_blocks_and_dilation(o, shape, stride, pad, dil):
    # 28-channel blocks (vector + scalar lanes), leftover groups of 4, channel counts not a multiple of 4
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((o, shape[1], 3, 3)).astype(np.float32)
    m = PackedBinaryConv2d(w, stride=stride, padding=pad, dilation=dil, backend="custom")
    ref = ops.conv2d(Tensor(_pm1(x)), Tensor(_pm1(w)), stride=stride, pad_mode="pad", padding=pad,
                     dilation=dil).asnumpy()
    np.testing.assert_array_equal(m(Tensor(x)).asnumpy(), ref)


@needs_aot
def test_portable_build_matches_native_build():
    # the same source built without the AVX2 paths (scalar POPCNT loop, scalar sign packing)
    from ascend_kernels import aot
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 70, 7, 6)).astype(np.float32)
    w = rng.standard_normal((30, 70, 3, 3)).astype(np.float32) + 0.1
    m = PackedBinaryConv2d(w, padding=1, weight_mode="adabin", act_alpha=0.7, act_beta=0.25, backend="custom")
    inputs = [x] + [t.asnumpy() for t in (m.wpack, m.wsum, m.cfg, m.act, m.wsc)]
    native = aot.call(aot.build("binconv"), "BinaryConvPacked", inputs, (2, 30, 7, 6))
    portable_so = aot.build("binconv", [["-O3", "-mno-avx2", "-fopenmp"], ["-O3", "-fopenmp"], ["-O3"]])
    portable = aot.call(portable_so, "BinaryConvPacked", inputs, (2, 30, 7, 6))
    np.testing.assert_allclose(portable, native, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(native, m(Tensor(x)).asnumpy())
    with pytest.raises(RuntimeError, match="returned 3"):  # channel count disagreeing with cfg
        aot.call(portable_so, "BinaryConvPacked", [x[:, :60]] + inputs[1:], (2, 30, 7, 6))


@needs_aot
def test_kernel_team_size_follows_setter():
    # the OpenMP team of the AOT kernels is the size set from Python, not OpenMP's default
    import ascend_kernels
    from ascend_kernels import aot
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 64, 6, 6)).astype(np.float32)
    m = PackedBinaryConv2d(rng.standard_normal((8, 64, 3, 3)).astype(np.float32), padding=1, backend="custom")
    inputs = [x] + [t.asnumpy() for t in (m.wpack, m.wsum, m.cfg, m.act, m.wsc)]
    so = aot.build("binconv")
    try:
        ref = aot.call(so, "BinaryConvPacked", inputs, (2, 8, 6, 6))
        assert ascend_kernels.kernel_threads() == aot.default_num_threads() >= 1
        for n in (2, 1):
            assert ascend_kernels.set_kernel_threads(n) == n
            out = aot.call(so, "BinaryConvPacked", inputs, (2, 8, 6, 6))
            np.testing.assert_array_equal(out, ref)
            assert aot.last_team_size(so) == n
        with pytest.raises(ValueError, match="kernel threads"):
            ascend_kernels.set_kernel_threads(0)
    finally:
        ascend_kernels.set_kernel_threads(None)


@needs_aot
@pytest.mark.parametrize("mode", ["xnor", "adabin"])
def test_packed_scale_offset(mode):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 40, 6, 5)).astype(np.float32)
    w = rng.standard_normal((6, 40, 3, 3)).astype(np.float32) + 0.2
    m = PackedBinaryConv2d(w, padding=1, weight_mode=mode, act_alpha=0.7, act_beta=0.25, backend="custom")
    y = m(Tensor(x)).asnumpy()
    # reference: float conv of the binarized, zero-padded tensors (numpy)
    sw = np.where(w - m.wsc.asnumpy()[:, 1, None, None, None] >= 0, 1.0, -1.0)
    wb = m.wsc.asnumpy()[:, 0, None, None, None] * sw + m.wsc.asnumpy()[:, 1, None, None, None]
    xb = 0.7 * (np.where(x >= 0.25, 1.0, -1.0) + 0.25)
    ref = ops.conv2d(Tensor(xb.astype(np.float32)), Tensor(wb.astype(np.float32)), pad_mode="pad", padding=1)
    close(y, ref.asnumpy(), 1e-5)


def test_packed_bad_input():
    w = np.ones((4, 8, 3, 3), np.float32)
    m = PackedBinaryConv2d(w, padding=1, backend="composite")
    with pytest.raises(ValueError, match="expected input"):
        m(Tensor(np.zeros((1, 7, 5, 5), np.float32)))
    with pytest.raises(TypeError, match="float32"):
        m(Tensor(np.zeros((1, 8, 5, 5), np.float16)))
    with pytest.raises(ValueError, match="4-D"):
        PackedBinaryConv2d(np.ones((4, 8, 3), np.float32))
    with pytest.raises(ValueError, match="weight mode"):
        PackedBinaryConv2d(w, weight_mode="ternary")


def _adabin_numpy(x, a, b, g, form):
    u = (x - b) / a
    s = np.sign(u)
    sp = np.maximum(2 - 2 * np.abs(u), 0)
    if form == "coded":
        return a * (s + b), g * sp, (g * (s + b - u * sp)).sum(), (g * (a - sp)).sum()
    return a * s + b, g * sp, (g * (s - u * sp)).sum(), (g * (1 - sp)).sum()


@pytest.mark.parametrize("backend", ["composite", pytest.param("custom", marks=needs_hybrid)])
@pytest.mark.parametrize("form", ["coded", "paper"])
def test_adabin_binarize(backend, form):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 3, 5)) * 1.5).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    a = ms.Parameter(Tensor(np.array([0.8], np.float32)), name="a")
    b = ms.Parameter(Tensor(np.array(0.3, np.float32)), name="b")
    cell = AdaBinBinarize(form, backend)

    def f(v, aa, bb):
        return (cell(v, aa, bb) * Tensor(g)).sum()
    y = cell(Tensor(x), a, b).asnumpy()
    gx, ga, gb = ms.grad(f, grad_position=(0, 1, 2))(Tensor(x), a, b)
    ry, rgx, rga, rgb = _adabin_numpy(x, 0.8, 0.3, g, form)
    close(y, ry, 1e-5)
    close(gx.asnumpy(), rgx, 1e-5)
    assert ga.shape == (1,) and gb.shape == ()
    close(ga.asnumpy().reshape(()), rga, 1e-4)
    close(gb.asnumpy(), rgb, 1e-4)


@pytest.mark.parametrize("backend", ["composite", pytest.param("custom", marks=needs_hybrid)])
def test_sign_ste(backend):
    x = np.array([[-2.0, -1.0, -0.5, 0.0, 0.3, 1.0, 1.5]], np.float32)
    cell = SignSTE(backend)

    def f(v):
        return (cell(v) * Tensor(np.arange(7, dtype=np.float32))).sum()
    np.testing.assert_array_equal(cell(Tensor(x)).asnumpy(), np.sign(x))
    gx = ms.grad(f)(Tensor(x)).asnumpy()
    np.testing.assert_array_equal(gx, np.arange(7) * (np.abs(x) <= 1))


def test_functional_api_and_errors():
    x = Tensor(np.array([-0.5, 2.0], np.float32))
    np.testing.assert_array_equal(sign_ste(x, backend="composite").asnumpy(), [-1.0, 1.0])
    y = adabin_binarize(x, Tensor(np.array([1.0], np.float32)), Tensor(np.array([0.0], np.float32)),
                        backend="composite")
    np.testing.assert_array_equal(y.asnumpy(), [-1.0, 1.0])
    with pytest.raises(TypeError):
        sign_ste(np.zeros(3))
    with pytest.raises(TypeError):
        sign_ste(Tensor(np.zeros(3, np.int32)))
    with pytest.raises(ValueError, match="one element"):
        adabin_binarize(x, Tensor(np.ones(2, np.float32)), Tensor(np.zeros(1, np.float32)))
    with pytest.raises(ValueError):
        AdaBinBinarize("other")


def test_cells_in_graph_mode():
    """The Cell forms are what graph-mode models should hold (composite: no compile)."""
    class Net(ms.nn.Cell):
        def __init__(self):
            super().__init__()
            self.sign = SignSTE("composite")
            self.ab = AdaBinBinarize("coded", "composite")
            self.alpha = ms.Parameter(Tensor(np.array([0.8], np.float32)), name="alpha")
            self.beta = ms.Parameter(Tensor(np.array([0.3], np.float32)), name="beta")

        def construct(self, x):
            return self.sign(x) + self.ab(x, self.alpha, self.beta)
    net = Net()
    x = Tensor(np.array([[-1.5, -0.2, 0.5, 2.0]], np.float32))
    ref = net(x).asnumpy()
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        got = net(x).asnumpy()
        grads = ms.grad(net, grad_position=0, weights=net.trainable_params())(x)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    np.testing.assert_allclose(got, ref)
    assert grads[1][0].shape == (1,)
