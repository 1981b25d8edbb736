"""Estimated source Gaussians (mean = anchor direction x target-mean norm, spreads) and the
class-aware sampler (static shapes, padding, determinism)."""
import numpy as np
import pytest

from mindcv_ext import da
from mindcv_ext.da.estimation import EstimationError
from mindcv_ext.da.sampler import SamplerError


def _feats(seed=0, k=3, per=40, d=6):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), per)
    x = rng.standard_normal((k, d))[y] * 3 + rng.standard_normal((len(y), d)) * rng.uniform(0.5, 2, d)
    return x, y, rng.standard_normal((k, d))


def test_estimated_mean_has_anchor_direction_and_target_mean_norm():
    x, y, anchors = _feats()
    est = da.estimate_source_gaussians(x, y, anchors)
    for k in range(3):
        target_mean = x[y == k].mean(0)
        assert np.linalg.norm(est.means[k]) == pytest.approx(np.linalg.norm(target_mean), rel=1e-12)
        unit = est.means[k] / np.linalg.norm(est.means[k])
        np.testing.assert_allclose(unit, anchors[k] / np.linalg.norm(anchors[k]), rtol=1e-12)


def test_diagonal_spread_is_scaled_unbiased_std_with_zero_guard():
    x, y, anchors = _feats(seed=1)
    x[y == 1, 2] = 5.0  # a constant dimension: std 0 -> 1e-4
    est = da.estimate_source_gaussians(x, y, anchors, variance_mult=2.0)
    for k in range(3):
        want = x[y == k].std(0, ddof=1)
        want[want == 0] = 1e-4
        np.testing.assert_allclose(est.stds[k], 2.0 * want, rtol=1e-12)
    samples = est.sample([0, 2], 4000, np.random.default_rng(0)).reshape(2, 4000, -1)
    np.testing.assert_allclose(samples.mean(1), est.means[[0, 2]], atol=0.15)
    np.testing.assert_allclose(samples.std(1), est.stds[[0, 2]], rtol=0.06)


def test_full_shrunk_covariance():
    x, y, anchors = _feats(seed=2)
    est = da.estimate_source_gaussians(x, y, anchors, covariance="full_shrunk", shrinkage=0.3, variance_mult=1.5)
    cov = np.cov(x[y == 0], rowvar=False)
    want = 1.5 ** 2 * (0.7 * cov + 0.3 * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0]))
    np.testing.assert_allclose(est.chols[0] @ est.chols[0].T, want, rtol=1e-6, atol=1e-7)
    samples = est.sample([0], 20000, np.random.default_rng(1))
    np.testing.assert_allclose(np.cov(samples, rowvar=False), want, atol=0.15 * np.abs(want).max())
    auto = da.estimate_source_gaussians(x, y, anchors, covariance="full_shrunk")  # Ledoit-Wolf shrinkage
    assert np.all(np.linalg.eigvalsh(auto.chols[1] @ auto.chols[1].T) > 0)


def test_estimator_rejects_bad_input():
    x, y, anchors = _feats()
    with pytest.raises(EstimationError, match="covariance"):
        da.estimate_source_gaussians(x, y, anchors, covariance="full")
    with pytest.raises(EstimationError, match="at least 2"):
        da.estimate_source_gaussians(x[:41], y[:41], anchors, classes=[0, 1])
    est = da.estimate_source_gaussians(x, y, anchors, classes=[0, 2])
    with pytest.raises(EstimationError, match=r"no source estimate for classes \[1\]"):
        est.sample([1], 3, np.random.default_rng(0))


def test_class_aware_sampler_static_shapes_and_determinism():
    labels = np.array([0] * 10 + [1] * 2 + [-1] * 5 + [3] * 6)
    sampler = da.ClassAwareSampler(labels, [0, 1, 3], classes_per_batch=2, samples_per_class=4, seed=7)
    for step in range(20):
        idx, cls, mask, _ = sampler.batch(step)
        assert idx.shape == (8,) and cls.shape == (2,) and len(set(cls)) == 2
        np.testing.assert_array_equal(mask, [1, 1])
        np.testing.assert_array_equal(labels[idx].reshape(2, 4), np.repeat(cls[:, None], 4, 1))
    a, b = sampler.batch(5), da.ClassAwareSampler(labels, [0, 1, 3], 2, 4, seed=7).batch(5)
    np.testing.assert_array_equal(a[0], b[0])
    assert len({tuple(sampler.batch(step)[0]) for step in range(10)}) > 1  # steps draw different batches


def test_sampler_pads_with_masked_blocks_when_few_classes_are_kept():
    labels = np.array([0] * 5 + [2] * 5)
    sampler = da.ClassAwareSampler(labels, [0, 2], classes_per_batch=4, samples_per_class=3)
    idx, cls, mask, _ = sampler.batch(0)
    assert idx.shape == (12,)
    np.testing.assert_array_equal(mask, [1, 1, 0, 0])
    assert set(cls[:2]) == {0, 2} and set(cls) <= {0, 2}
    with pytest.raises(SamplerError, match="no class is kept"):
        da.ClassAwareSampler(labels, [], 2, 3)
