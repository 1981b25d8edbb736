"""CDD against a direct NumPy MMD^2 computation (loops over class pairs), its gradient, its
behaviour on copies and shifts, and padded class blocks."""
import numpy as np
import pytest
import mindspore as ms

from mindcv_ext.da import CDD
from mindcv_ext.da.cdd import CDDError


def _np_mmd2(x, y, gammas_xy, scales):
    """Biased MMD^2 between sample sets x, y with a sum of Gaussian kernels of the given bandwidths."""
    def k(a, b):
        d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return sum(np.exp(-np.clip(d / max(gammas_xy * s, 1e-5), 1e-5, 1e5)) for s in scales)
    return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()


def _np_gamma(x, y):
    """Mean squared distance over the distinct pairs of x u y."""
    z = np.concatenate([x, y])
    d = ((z[:, None] - z[None]) ** 2).sum(-1)
    n = len(z)
    return d.sum() / (n * n - n)


def np_cdd(src_layers, tgt_layers, c, s, num_classes, mask=None, gammas=None, kernel_num=5, kernel_mul=2.0):
    """Returns (cdd, intra, inter, gammas used); ``gammas`` fixes the bandwidths (for gradient checks)."""
    scales = [kernel_mul ** (q - kernel_num // 2) for q in range(kernel_num)]
    mask = np.ones(c) if mask is None else mask
    used = {} if gammas is None else gammas
    mmd = np.zeros((c, c))
    for c1 in range(c):
        for c2 in range(c):
            total = 0.0
            for layer, (xs, xt) in enumerate(zip(src_layers, tgt_layers)):
                x, y = xs[c1 * s:(c1 + 1) * s], xt[c2 * s:(c2 + 1) * s]
                g = used[(layer, c1, c2)] if gammas is not None else _np_gamma(x, y)
                used[(layer, c1, c2)] = g
                total += _np_mmd2(x, y, g, scales)
            mmd[c1, c2] = total
    pair = np.outer(mask, mask)
    intra = (np.diag(mmd) * np.diag(pair)).sum() / num_classes
    inter = ((mmd * pair).sum() - (np.diag(mmd) * np.diag(pair)).sum()) / (num_classes * (num_classes - 1))
    return intra - inter, intra, inter, used


def _data(c=3, s=4, d=(6, 5), seed=0, shift=0.5):
    rng = np.random.default_rng(seed)
    centers = [rng.standard_normal((c, dim)) * 2 for dim in d]
    src = [np.repeat(m, s, 0) + rng.standard_normal((c * s, m.shape[1])) for m in centers]
    tgt = [np.repeat(m, s, 0) + shift + rng.standard_normal((c * s, m.shape[1])) for m in centers]
    return src, tgt


def _ms(layers):
    return tuple(ms.Tensor(x.astype(np.float32)) for x in layers)


def test_cdd_matches_numpy_mmd():
    c, s = 3, 4
    src, tgt = _data(c, s)
    cdd = CDD(num_classes=5, classes_per_batch=c, samples_per_class=s)
    got = [float(v.asnumpy()) for v in cdd(_ms(src), _ms(tgt))]
    want = np_cdd(src, tgt, c, s, 5)[:3]
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


def test_cdd_gradient_wrt_target_features_matches_finite_differences():
    c, s = 2, 3
    src, tgt = _data(c, s, d=(4, 3), seed=1)
    cdd = CDD(num_classes=4, classes_per_batch=c, samples_per_class=s)
    src_ms, prob_t = _ms(src), ms.Tensor(tgt[1].astype(np.float32))
    grad = ms.grad(lambda t: cdd(src_ms, (t, prob_t))[0])(ms.Tensor(tgt[0].astype(np.float32))).asnumpy()
    # bandwidths are constants in the loss: finite differences with them held at their value
    gammas = np_cdd(src, tgt, c, s, 4)[3]
    num, h = np.zeros_like(tgt[0]), 1e-5
    for idx in np.ndindex(*tgt[0].shape):
        plus, minus = tgt[0].copy(), tgt[0].copy()
        plus[idx] += h
        minus[idx] -= h
        num[idx] = (np_cdd(src, [plus, tgt[1]], c, s, 4, gammas=gammas)[0]
                    - np_cdd(src, [minus, tgt[1]], c, s, 4, gammas=gammas)[0]) / (2 * h)
    assert np.abs(num).max() > 1e-3  # the check is not vacuous
    np.testing.assert_allclose(grad, num, rtol=1e-3, atol=1e-5)


def test_intra_term_vanishes_for_a_copy_and_grows_with_shift():
    c, s = 3, 5
    src, _ = _data(c, s, seed=2)
    cdd = CDD(num_classes=3, classes_per_batch=c, samples_per_class=s)
    copy_cdd, copy_intra, copy_inter = [float(v.asnumpy()) for v in cdd(_ms(src), _ms(src))]
    assert abs(copy_intra) < 1e-5
    assert copy_inter > 0  # different classes stay apart, so the loss is -inter < 0 for a copy
    previous = copy_intra
    for shift in (0.5, 1.0, 2.0):
        shifted = [x + shift for x in src]
        _, intra, _ = [float(v.asnumpy()) for v in cdd(_ms(src), _ms(shifted))]
        assert intra > previous + 1e-3
        previous = intra


def test_padded_class_blocks_are_ignored():
    c, s = 3, 4
    src, tgt = _data(c, s, seed=3)
    full = CDD(num_classes=6, classes_per_batch=c, samples_per_class=s)
    masked = [float(v.asnumpy()) for v in full(_ms(src), _ms(tgt), ms.Tensor(np.array([1, 1, 0], np.float32)))]
    two = CDD(num_classes=6, classes_per_batch=2, samples_per_class=s)
    sub = [float(v.asnumpy()) for v in two(_ms([x[:2 * s] for x in src]), _ms([x[:2 * s] for x in tgt]))]
    np.testing.assert_allclose(masked, sub, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(masked, np_cdd(src, tgt, c, s, 6, mask=np.array([1, 1, 0]))[:3], rtol=2e-5, atol=1e-6)


def test_bad_configuration():
    with pytest.raises(CDDError, match="samples_per_class"):
        CDD(10, 3, 1)
    with pytest.raises(CDDError, match="one entry per layer"):
        CDD(10, 3, 4, kernel_num=(5,), kernel_mul=(2.0, 2.0))
