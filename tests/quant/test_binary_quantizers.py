"""Binary quantizers and layers: forward values and gradients against the formulas of the
compression spec (section 3.2 weights, 3.3 activations, 5.1 larq SteSign), on hand-made tensors."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn, ops

import ascend_kernels
from mindcv_ext.quant.binary import (AdaBinActivationQuantizer, AdaBinWeightQuantizer, BinaryConv2d, BinaryDense,
                                     SignQuantizer, ede_sign, get_quantizer, model_size_bits, model_size_summary,
                                     progressive_values, set_progressive)
from mindcv_ext.utils.summary import summarize

X = np.array([-2.0, -1.0, -0.7, -0.2, 0.1, 0.35, 0.9, 1.0, 1.6], np.float32)


@pytest.fixture(autouse=True)
def _composite():
    ascend_kernels.set_backend("composite")  # small tensors; the kernels have their own tests
    yield
    ascend_kernels.set_backend(None)


def _grad_input(fn, x, g):
    return ms.grad(lambda t: (fn(t) * Tensor(g)).sum())(Tensor(x)).asnumpy()


# ------------------------------------------------------------------ sign (BNN baseline)
XZ = np.append(X, 0.0).astype(np.float32)


@pytest.mark.parametrize("clip,zero_to_one", [(1.0, True), (0.5, True), (1.0, False)])
def test_sign_quantizer_values_and_ste_gradient(clip, zero_to_one):
    q = SignQuantizer(clip_value=clip, zero_to_one=zero_to_one)
    expected_sign = np.where(XZ >= 0, 1.0, -1.0) if zero_to_one else np.sign(XZ)
    np.testing.assert_array_equal(q(Tensor(XZ)).asnumpy(), expected_sign)
    g = np.arange(1, len(XZ) + 1, dtype=np.float32)
    expected = g * (np.abs(XZ) <= clip)  # gradient 1 inside the clip range, boundary included
    np.testing.assert_allclose(_grad_input(q, XZ, g), expected, rtol=0, atol=0)
    s, scale, offset = q.decompose(Tensor(XZ))
    np.testing.assert_array_equal(s.asnumpy() * scale.asnumpy() + offset.asnumpy(), expected_sign)


def test_sign_quantizer_bad_clip():
    with pytest.raises(ValueError, match="clip_value"):
        SignQuantizer(clip_value=0.0)
    with pytest.raises(ValueError, match="sign_ste"):
        SignQuantizer(clip_value=0.5, zero_to_one=False)


# ------------------------------------------------------------------ AdaBin activations (spec 3.3)
def _act_reference(x, a, b, g, form):
    u = (x - b) / a
    s = np.sign(u)
    sp = np.maximum(0.0, 2.0 - 2.0 * np.abs(u))
    if form == "coded":
        y, da, db = a * (s + b), s + b - u * sp, a - sp
    else:
        y, da, db = a * s + b, s - u * sp, 1.0 - sp
    return y, g * sp, float((g * da).sum()), float((g * db).sum())


@pytest.mark.parametrize("form", ["coded", "paper"])
def test_adabin_activation_forward_and_gradients(form):
    alpha, beta = 0.8, 0.3
    q = AdaBinActivationQuantizer(alpha_init=alpha, beta_init=beta, form=form)
    g = np.linspace(-1.0, 2.0, len(X)).astype(np.float32)
    y_ref, dx_ref, da_ref, db_ref = _act_reference(X.astype(np.float64), alpha, beta, g, form)
    np.testing.assert_allclose(q(Tensor(X)).asnumpy(), y_ref, rtol=1e-6, atol=1e-6)

    def loss(x):
        return (q(x) * Tensor(g)).sum()
    dx, (da, db) = ms.grad(loss, grad_position=0, weights=[q.alpha_a, q.beta_a])(Tensor(X))
    np.testing.assert_allclose(dx.asnumpy(), dx_ref, rtol=1e-5, atol=1e-6)
    assert da.shape == () and db.shape == ()
    np.testing.assert_allclose(float(da.asnumpy()), da_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(db.asnumpy()), db_ref, rtol=1e-5, atol=1e-5)


def test_adabin_activation_two_values_and_threshold():
    q = AdaBinActivationQuantizer(alpha_init=0.6, beta_init=0.25)
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    y = q(Tensor(x)).asnumpy()
    np.testing.assert_allclose(np.unique(y), [0.6 * (0.25 - 1), 0.6 * (0.25 + 1)], rtol=1e-6)
    # threshold at beta_a: above -> upper value
    np.testing.assert_array_equal(y > 0, x > 0.25)
    s, scale, offset = q.decompose(Tensor(x))
    np.testing.assert_allclose(scale.asnumpy() * s.asnumpy() + offset.asnumpy(), y, rtol=1e-6, atol=1e-7)


def test_adabin_activation_bad_args():
    with pytest.raises(ValueError, match="form"):
        AdaBinActivationQuantizer(form="other")
    with pytest.raises(ValueError, match="alpha_init"):
        AdaBinActivationQuantizer(alpha_init=0.0)


# ------------------------------------------------------------------ AdaBin weights (spec 3.2)
def _weights(shape=(4, 3, 3, 3), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.1 + 0.02


def test_adabin_weights_are_mean_plus_minus_std_per_channel():
    w = _weights()
    wb = AdaBinWeightQuantizer()(Tensor(w)).asnumpy()
    flat = w.reshape(4, -1).astype(np.float64)
    mean, std = flat.mean(1), flat.std(1)  # population std (divide by n)
    for o in range(4):
        values = np.unique(wb[o])
        assert len(values) == 2, f"channel {o}: {values}"
        np.testing.assert_allclose(values, [mean[o] - std[o], mean[o] + std[o]], rtol=1e-5, atol=1e-7)
        # sign taken around the channel mean
        np.testing.assert_array_equal(wb[o] > mean[o], w[o] > mean[o])
        # the binarized channel has the same mean and std as the latent weights when balanced
    dense = AdaBinWeightQuantizer()(Tensor(w.reshape(4, -1))).asnumpy()
    np.testing.assert_allclose(dense.reshape(w.shape), wb, rtol=1e-6, atol=1e-7)


def _ede_weight_grad_reference(w, g, k, t):
    """d/dW of sum(G * (alpha*s(u) + beta)), alpha/beta = std/mean of W (not detached), EDE s'."""
    o = w.shape[0]
    wf, gf = w.reshape(o, -1).astype(np.float64), g.reshape(o, -1).astype(np.float64)
    n = wf.shape[1]
    beta = wf.mean(1, keepdims=True)
    alpha = np.sqrt(((wf - beta) ** 2).mean(1, keepdims=True))
    u = (wf - beta) / alpha
    s = np.sign(u)
    sp = k * t * (1.0 - np.tanh(t * u) ** 2)
    # dalpha/dW_j = u_j / n ; dbeta/dW_j = 1/n ; du_i/dW_j = (delta_ij - 1/n)/alpha - u_i u_j/(n alpha)
    sum_gs = (gf * s).sum(1, keepdims=True)
    sum_gsp = (gf * sp).sum(1, keepdims=True)
    sum_gspu = (gf * sp * u).sum(1, keepdims=True)
    sum_g = gf.sum(1, keepdims=True)
    grad = gf * sp + (u * sum_gs - sum_gsp - u * sum_gspu + sum_g) / n
    return grad.reshape(w.shape)


@pytest.mark.parametrize("k,t", [(10.0, 0.1), (1.0, 3.0)])
def test_adabin_weight_gradient_flows_through_mean_and_std(k, t):
    w = _weights(seed=1)
    g = np.random.default_rng(2).standard_normal(w.shape).astype(np.float32)
    ref = _ede_weight_grad_reference(w, g, k, t)
    q = AdaBinWeightQuantizer(k=k, t=t)
    # float64 pins the formula; float32 (what training uses) loses ~1e-3 of the scale to cancellation
    got64 = ms.grad(lambda v: (q(v) * Tensor(g.astype(np.float64))).sum())(Tensor(w.astype(np.float64))).asnumpy()
    np.testing.assert_allclose(got64, ref, rtol=1e-7, atol=1e-9)
    got32 = _grad_input(q, w, g)
    np.testing.assert_allclose(got32, ref, rtol=0, atol=2e-3 * np.abs(ref).max())
    # detaching mean/std would give only G * s'(u): the through-statistics terms are not negligible
    k_t_only = g * k * t * (1 - np.tanh(t * (w - w.mean((1, 2, 3), keepdims=True))
                                        / w.std((1, 2, 3), keepdims=True)) ** 2)
    assert np.abs(ref - k_t_only).max() > 1e-2 * np.abs(ref).max()


def test_ede_surrogate_formula():
    u = np.array([-3.0, -0.4, 0.0, 0.2, 1.5], np.float32)
    k, t = 2.0, 0.7
    got = ms.grad(lambda x: ede_sign(x, Tensor(k), Tensor(t)).sum())(Tensor(u)).asnumpy()
    np.testing.assert_allclose(got, k * t * (1 - np.tanh(t * u) ** 2), rtol=1e-5)
    np.testing.assert_array_equal(ede_sign(Tensor(u), Tensor(k), Tensor(t)).asnumpy(), np.sign(u))


def test_progressive_schedule_points():
    # spec 3.2: t = 10^(-3 + 4e/E), k = max(1, 1/t); peak k*t = 1 until t = 1 (epoch 300 of 400), 9.77 last
    for epoch in (0, 100, 250, 300):
        k, t = progressive_values(epoch, 400)
        assert k * t == pytest.approx(1.0, rel=1e-9)
    k, t = progressive_values(399, 400)
    assert k == 1.0 and t == pytest.approx(9.772, abs=1e-3)
    assert progressive_values(0, 3) == (1000.0, 0.001)
    with pytest.raises(ValueError, match="epoch"):
        progressive_values(400, 400)


def test_set_progressive_reaches_a_compiled_training_step():
    net = BinaryConv2d(2, 3, 3, 1, 1, input_quantizer="adabin", kernel_quantizer="adabin")
    x = Tensor(np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32))

    def loss():
        return net(x).sum()
    step = ms.jit(ms.grad(loss, grad_position=None, weights=[net.weight]))
    set_progressive(net, 0, 10)
    first = step()[0].asnumpy()
    assert set_progressive(net, 9, 10) == 1
    kq = net.kernel_quantizer
    k, t = progressive_values(9, 10)
    assert float(kq.k.asnumpy()) == pytest.approx(k) and float(kq.t.asnumpy()) == pytest.approx(t, rel=1e-6)
    second = step()[0].asnumpy()
    assert not np.allclose(first, second), "the compiled step did not see the new k, t"


# ------------------------------------------------------------------ layers
def test_binary_conv_equals_conv_of_binarized_zero_padded_tensors():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    conv = BinaryConv2d(4, 3, 3, stride=1, padding=1, input_quantizer=AdaBinActivationQuantizer(0.5, 0.2),
                        kernel_quantizer=AdaBinWeightQuantizer())
    xb = (0.5 * (np.sign((x - 0.2) / 0.5) + 0.2)).astype(np.float32)
    wb = AdaBinWeightQuantizer()(conv.weight).asnumpy()
    ref = ops.conv2d(Tensor(xb), Tensor(wb), pad_mode="pad", padding=1).asnumpy()
    np.testing.assert_allclose(conv(Tensor(x)).asnumpy(), ref, rtol=1e-5, atol=1e-5)
    # the corner output sees 4 of 9 taps only: padding is 0, not one of the two binary values
    wide = ops.conv2d(ops.pad(Tensor(xb), (1, 1, 1, 1), value=0.5 * (0.2 - 1)), Tensor(wb)).asnumpy()
    assert not np.allclose(wide[:, :, 0, 0], ref[:, :, 0, 0])
    assert conv.mac_kind == "binary"


def test_sign_conv_is_integer_valued_and_kinds():
    conv = BinaryConv2d(5, 2, 3, 1, 1, input_quantizer="sign", kernel_quantizer="sign")
    y = conv(Tensor(np.random.default_rng(4).standard_normal((1, 5, 4, 4)).astype(np.float32))).asnumpy()
    np.testing.assert_array_equal(y, np.round(y))
    assert np.abs(y).max() <= 45
    assert BinaryConv2d(2, 2, 3, kernel_quantizer="sign").mac_kind == "binary_weight"
    assert BinaryConv2d(2, 2, 3).mac_kind == "float"


def test_binary_dense_per_output_unit():
    d = BinaryDense(6, 3, input_quantizer="adabin", kernel_quantizer="adabin")
    x = np.random.default_rng(5).standard_normal((4, 6)).astype(np.float32)
    wb = AdaBinWeightQuantizer()(d.weight).asnumpy()
    assert all(len(np.unique(row)) == 2 for row in wb)
    xb = np.sign(x) * 1.0  # alpha 1, beta 0 at init
    np.testing.assert_allclose(d(Tensor(x)).asnumpy(), xb @ wb.T + d.bias.asnumpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="BinaryDense"):
        d(Tensor(np.zeros((2, 3, 2), np.float32)))


def test_get_quantizer_names_and_errors():
    assert isinstance(get_quantizer("sign", "input"), SignQuantizer)
    assert isinstance(get_quantizer("adabin", "input"), AdaBinActivationQuantizer)
    assert isinstance(get_quantizer("adabin", "kernel"), AdaBinWeightQuantizer)
    assert get_quantizer("none", "kernel") is None
    with pytest.raises(ValueError, match="unknown quantizer 'ternary'"):
        get_quantizer("ternary", "input")
    with pytest.raises(TypeError, match="quantizer"):
        get_quantizer(3, "input")


class _Tiny(nn.Cell):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, pad_mode="pad", padding=1, has_bias=False)
        self.body = BinaryConv2d(4, 8, 3, 1, 1, input_quantizer="adabin", kernel_quantizer="adabin")
        self.fc = nn.Dense(8, 2)

    def construct(self, x):
        return self.fc(ops.mean(self.body(self.stem(x)), (2, 3)))


def test_summary_splits_binary_macs_and_model_size():
    net = _Tiny()
    info = summarize(net, (1, 3, 6, 6))
    assert info["macs_by_kind"] == {"float": 3 * 9 * 4 * 36 + 16, "binary": 4 * 9 * 8 * 36}
    size = model_size_summary(net)
    assert size["binary_params"] == 8 * 4 * 9
    assert size["float_params"] == 3 * 4 * 9 + 2 + 8 * 2 + 2  # stem, alpha/beta, fc (k, t left out)
    assert model_size_bits(net) == 8 * 4 * 9 + 32 * size["float_params"]
