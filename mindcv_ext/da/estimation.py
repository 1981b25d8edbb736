"""Estimated class-conditional source feature distributions (SFDA-DE, Ding et al., CVPR 2022).

For each kept class k with (filtered, pseudo-labelled) target features T_k:
mean  mu_s^k = ||mean(T_k)|| * w_k / ||w_k||  (the anchor's direction, the target mean's norm);
spread sigma_s^k = variance_mult * std(T_k) (unbiased), zeros replaced by 1e-4.
This is the diagonal Gaussian of the third-party implementation CvNoob/SFDA-DE
(``construct_surrogate_feature_sampler``, which keeps only the diagonal because a full D x D
covariance from tens of samples is singular and costly to sample). ``covariance="full_shrunk"``
is an option: ``(1 - a) * S + a * tr(S) / D * I`` with a given ``a`` or the Ledoit-Wolf estimate,
scaled by ``variance_mult ** 2``. A class whose target mean has norm < 1e-3 gets no sampler
(as in the third-party code).
"""
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


class EstimationError(ValueError):
    """Bad estimator input, or sampling from a class without an estimate."""


@dataclass
class SourceGaussians:
    means: np.ndarray               # (K, D); rows of classes without an estimate are zero
    stds: Optional[np.ndarray]      # (K, D) for covariance="diag"
    chols: Optional[np.ndarray]     # (K, D, D) Cholesky factors for covariance="full_shrunk"
    valid: np.ndarray               # (K,) bool

    @property
    def classes(self):
        return [int(c) for c in np.flatnonzero(self.valid)]

    def sample(self, class_ids: Sequence[int], per_class: int, rng: np.random.Generator) -> np.ndarray:
        """``per_class`` surrogate features for each class in ``class_ids``, in class blocks:
        (len(class_ids) * per_class, D) float32."""
        class_ids = np.asarray(class_ids, np.int64)
        bad = [int(c) for c in class_ids if c < 0 or c >= len(self.valid) or not self.valid[c]]
        if bad:
            raise EstimationError(f"no source estimate for classes {bad} (kept: {self.classes})")
        dim = self.means.shape[1]
        z = rng.standard_normal((len(class_ids), per_class, dim))
        if self.chols is None:
            out = self.means[class_ids, None, :] + z * self.stds[class_ids, None, :]
        else:
            out = self.means[class_ids, None, :] + np.einsum("cij,csj->csi", self.chols[class_ids], z)
        return out.reshape(-1, dim).astype(np.float32)


def estimated_source_mean(target_mean: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Anchor direction scaled to the target mean's norm."""
    return np.linalg.norm(target_mean) * anchor / np.linalg.norm(anchor)


def _shrunk_cov(x: np.ndarray, shrinkage: Optional[float]) -> np.ndarray:
    cov = np.cov(x, rowvar=False, ddof=1)
    if shrinkage is None:
        from sklearn.covariance import ledoit_wolf_shrinkage
        shrinkage = float(ledoit_wolf_shrinkage(x))
    dim = cov.shape[0]
    return (1.0 - shrinkage) * cov + shrinkage * np.trace(cov) / dim * np.eye(dim)


def estimate_source_gaussians(features: np.ndarray, labels: np.ndarray, anchors: np.ndarray,
                              classes: Optional[Sequence[int]] = None, variance_mult: float = 1.0,
                              covariance: str = "diag", shrinkage: Optional[float] = None) -> SourceGaussians:
    """Estimate N(mu_s^k, Sigma_s^k) for each class in ``classes`` (default: every label present).

    ``features`` (N, D) and ``labels`` (N,) are the usable target samples (labels -1 are ignored);
    ``anchors`` (K, D) are the frozen classifier's weight rows.
    """
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels, np.int64)
    anchors = np.asarray(anchors, np.float64)
    if features.ndim != 2 or anchors.ndim != 2 or features.shape[1] != anchors.shape[1]:
        raise EstimationError(f"features (N, D) and anchors (K, D) must share D, got {features.shape}, {anchors.shape}")
    if labels.shape != (len(features),):
        raise EstimationError(f"labels must have shape ({len(features)},), got {labels.shape}")
    if covariance not in ("diag", "full_shrunk"):
        raise EstimationError(f"covariance must be 'diag' or 'full_shrunk', got '{covariance}'")
    if variance_mult <= 0:
        raise EstimationError(f"variance_mult must be positive, got {variance_mult}")
    if shrinkage is not None and not 0.0 <= shrinkage <= 1.0:
        raise EstimationError(f"shrinkage must be in [0, 1], got {shrinkage}")
    num_classes, dim = anchors.shape
    classes = sorted(set(labels[labels >= 0].tolist())) if classes is None else list(classes)
    means = np.zeros((num_classes, dim))
    stds = np.zeros((num_classes, dim)) if covariance == "diag" else None
    chols = np.zeros((num_classes, dim, dim)) if covariance == "full_shrunk" else None
    valid = np.zeros(num_classes, bool)
    for k in classes:
        members = features[labels == k]
        if len(members) < 2:
            raise EstimationError(f"class {k} has {len(members)} usable samples; at least 2 are needed")
        target_mean = members.mean(axis=0)
        if np.linalg.norm(target_mean) < 1e-3:
            continue
        means[k] = estimated_source_mean(target_mean, anchors[k])
        if stds is not None:
            std = members.std(axis=0, ddof=1)
            stds[k] = np.where(std == 0, 1e-4, std) * variance_mult
        else:
            cov = _shrunk_cov(members, shrinkage) * variance_mult ** 2
            chols[k] = np.linalg.cholesky(cov + 1e-8 * np.eye(dim))
        valid[k] = True
    return SourceGaussians(means, stds, chols, valid)
