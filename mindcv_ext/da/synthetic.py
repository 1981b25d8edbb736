"""Shipped data for CPU demonstrations of source-free adaptation, both with a known source domain.

* ``make_gaussian_toy``: K Gaussian classes in R^d (known means and diagonal covariances) as the
  source; the target is the same distribution after a fixed rotation, per-dimension scaling and
  shift, so true source statistics are available to score a distribution estimate.
* ``make_digits_shift``: scikit-learn's 8x8 digits (1 797 images) split in two stratified halves;
  source = half A as is, target = half B with a domain shift (rotation, Gaussian blur, additive
  noise; intensity inversion as an option). Inversion is off by default: with it a source model
  scores below chance on the target (1.6% for the MLP of the tests) and its anchors carry no usable
  class information, so no source-free method can recover from it.
"""
from dataclasses import dataclass

import numpy as np


class SyntheticDataError(ValueError):
    """Bad generator arguments."""


@dataclass
class DomainPair:
    source_x: np.ndarray
    source_y: np.ndarray
    target_x: np.ndarray
    target_y: np.ndarray
    num_classes: int


@dataclass
class GaussianToy(DomainPair):
    source_means: np.ndarray     # (K, d) true class means of the source inputs
    source_stds: np.ndarray      # (K, d) true per-dimension standard deviations
    transform: np.ndarray        # (d, d) target = source @ transform.T + shift
    shift: np.ndarray            # (d,)
    source_test_x: np.ndarray    # held-out source samples (for scoring only)
    source_test_y: np.ndarray


def _rotation(dim: int, degrees: float) -> np.ndarray:
    """Rotation by ``degrees`` in each coordinate plane (0,1), (2,3), ..."""
    rot, t = np.eye(dim), np.deg2rad(degrees)
    for i in range(0, dim - 1, 2):
        rot[i:i + 2, i:i + 2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    return rot


def _gaussian_samples(means, stds, per_class, rng):
    k, d = means.shape
    y = np.repeat(np.arange(k), per_class)
    return (means[y] + rng.standard_normal((len(y), d)) * stds[y]).astype(np.float32), y


def make_gaussian_toy(num_classes: int = 5, dim: int = 16, per_class: int = 200, separation: float = 2.5,
                      rotation_deg: float = 60.0, scale_range=(0.7, 1.4), shift: float = 2.0,
                      seed: int = 0) -> GaussianToy:
    if num_classes < 2 or dim < 2 or per_class < 2:
        raise SyntheticDataError(f"need num_classes, dim, per_class >= 2, got {num_classes}, {dim}, {per_class}")
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((num_classes, dim)) * separation / np.sqrt(2.0)
    stds = rng.uniform(0.5, 1.0, (num_classes, dim))
    transform = _rotation(dim, rotation_deg) @ np.diag(rng.uniform(*scale_range, dim))
    offset = rng.standard_normal(dim) * shift
    sx, sy = _gaussian_samples(means, stds, per_class, rng)
    tx, ty = _gaussian_samples(means, stds, per_class, rng)
    hx, hy = _gaussian_samples(means, stds, per_class, rng)
    tx = (tx @ transform.T + offset).astype(np.float32)
    return GaussianToy(sx, sy, tx, ty, num_classes, means, stds, transform, offset, hx, hy)


def _load_digits():
    from sklearn.datasets import load_digits
    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def shift_digits(images: np.ndarray, rng: np.random.Generator, max_rotation: float = 20.0,
                 blur_sigma: float = 0.6, invert: bool = False, noise_std: float = 0.1) -> np.ndarray:
    """Apply the target-domain shift to (N, H, W) images in [0, 1]: rotate -> blur -> invert -> noise."""
    from scipy import ndimage

    out = np.empty_like(images)
    for i, img in enumerate(images):
        if max_rotation > 0:
            img = ndimage.rotate(img, rng.uniform(-max_rotation, max_rotation), reshape=False, order=1,
                                 mode="constant")
        if blur_sigma > 0:
            img = ndimage.gaussian_filter(img, blur_sigma)
        out[i] = img
    if invert:
        out = 1.0 - out
    if noise_std > 0:
        out = out + rng.standard_normal(out.shape).astype(np.float32) * noise_std
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def make_digits_shift(seed: int = 0, max_rotation: float = 20.0, blur_sigma: float = 0.6, invert: bool = False,
                      noise_std: float = 0.1, size: int = 8) -> DomainPair:
    """Images (N, 1, size, size) float32 in [0, 1]; labels int64. Half A (source), shifted half B (target)."""
    if size < 8:
        raise SyntheticDataError(f"size must be >= 8 (the digits are 8x8), got {size}")
    images, labels = _load_digits()
    rng = np.random.default_rng(seed)
    first = np.zeros(len(labels), bool)
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        first[idx[: len(idx) // 2]] = True
    source, target = images[first], shift_digits(images[~first], rng, max_rotation, blur_sigma, invert, noise_std)
    if size != 8:
        from scipy import ndimage
        source = ndimage.zoom(source, (1, size / 8, size / 8), order=1)
        target = ndimage.zoom(target, (1, size / 8, size / 8), order=1)
    return DomainPair(source[:, None].astype(np.float32), labels[first], target[:, None].astype(np.float32),
                      labels[~first], 10)
