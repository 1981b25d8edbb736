"""Anchor-initialised spherical k-means with Hungarian re-ordering (SFDA-DE, Ding et al., CVPR 2022).

Facts from the paper's abstract (centres start at the source classifier's weight vectors, the
"anchors") and the third-party implementation CvNoob/SFDA-DE (``solver/clustering.py``):
cosine distance ``d(a, b) = (1 - cos(a, b)) / 2``; a centre is the plain sum of its members (only
its direction matters); an empty cluster falls back to its anchor; stop when the mean distance
between successive centres is below ``eps``; finally clusters are mapped to classes by Hungarian
matching of centres to anchors (cost ``d(centre, anchor)``). Runs on the host in NumPy (features
are extracted once per loop; clustering is not part of a training graph).
"""
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


class ClusteringError(ValueError):
    """Bad clustering input (shapes, non-finite values)."""


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise ``(1 - cos) / 2`` between the rows of ``a`` (N, D) and ``b`` (M, D), in [0, 1]."""
    return 0.5 * (1.0 - _unit(a) @ _unit(b).T)


@dataclass
class ClusteringResult:
    labels: np.ndarray          # (N,) class id of each sample (after Hungarian re-ordering)
    centers: np.ndarray         # (K, D) final centres, row k = class k
    distances: np.ndarray       # (N, K) cosine distance of each sample to each class centre
    permutation: np.ndarray     # (K,) cluster i -> class permutation[i] (identity when anchors hold)
    iterations: int
    center_change: float        # mean d(centre_k, anchor_k) after re-ordering

    @property
    def dist_to_center(self) -> np.ndarray:
        """(N,) distance of each sample to its own centre."""
        return self.distances[np.arange(len(self.labels)), self.labels]


def _check(features, anchors):
    features, anchors = np.asarray(features, np.float64), np.asarray(anchors, np.float64)
    if features.ndim != 2 or anchors.ndim != 2 or features.shape[1] != anchors.shape[1]:
        raise ClusteringError(f"features (N, D) and anchors (K, D) must share D, got {features.shape} "
                              f"and {anchors.shape}")
    if len(features) == 0:
        raise ClusteringError("no features to cluster")
    if not (np.isfinite(features).all() and np.isfinite(anchors).all()):
        raise ClusteringError("features or anchors contain NaN/inf")
    return features, anchors


def align_clusters(centers: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Hungarian matching: ``perm[i]`` is the class (anchor) assigned to cluster ``i``."""
    rows, cols = linear_sum_assignment(cosine_distance(centers, anchors))
    perm = np.empty(len(centers), np.int64)
    perm[rows] = cols
    return perm


def spherical_kmeans(features, anchors, eps: float = 1e-3, max_iter: int = 100) -> ClusteringResult:
    """Cluster ``features`` (N, D) into K = len(anchors) clusters, centres initialised at ``anchors``."""
    features, anchors = _check(features, anchors)
    num_classes = len(anchors)
    centers, iterations = anchors.copy(), 0
    for iterations in range(1, max_iter + 1):
        labels = np.argmin(cosine_distance(features, centers), axis=1)
        new = np.zeros_like(centers)
        np.add.at(new, labels, features)
        empty = np.bincount(labels, minlength=num_classes) == 0
        new[empty] = anchors[empty]
        change = float(np.mean(np.diag(cosine_distance(new, centers))))
        centers = new
        if change < eps:
            break
    distances = cosine_distance(features, centers)
    labels = np.argmin(distances, axis=1)
    perm = align_clusters(centers, anchors)
    ordered_centers, ordered_dist = np.empty_like(centers), np.empty_like(distances)
    ordered_centers[perm] = centers
    ordered_dist[:, perm] = distances
    change = float(np.mean(np.diag(cosine_distance(ordered_centers, anchors))))
    return ClusteringResult(perm[labels], ordered_centers, ordered_dist, perm, iterations, change)
