"""Spherical k-means against a per-sample NumPy loop, empty clusters, Hungarian re-ordering, filtering."""
import numpy as np
import pytest

from mindcv_ext import da
from mindcv_ext.da.clustering import ClusteringError
from mindcv_ext.da.filtering import FilteringError


def reference_kmeans(feats, anchors, eps=1e-3, max_iter=100):
    """Plain loops: nearest centre by cosine, centre = sum of members, empty -> anchor."""
    def dist(a, b):
        return 0.5 * (1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    centers = [a.copy() for a in anchors]
    for _ in range(max_iter):
        labels = [min(range(len(centers)), key=lambda k: dist(f, centers[k])) for f in feats]
        new = []
        for k in range(len(centers)):
            members = [f for f, l in zip(feats, labels) if l == k]
            new.append(np.sum(members, 0) if members else anchors[k].copy())
        change = np.mean([dist(n, c) for n, c in zip(new, centers)])
        centers = new
        if change < eps:
            break
    labels = [min(range(len(centers)), key=lambda k: dist(f, centers[k])) for f in feats]
    return np.array(labels), np.array(centers)


def _blobs(k=4, per=30, d=8, seed=0, noise=0.4):
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((k, d))
    y = np.repeat(np.arange(k), per)
    x = dirs[y] + noise * rng.standard_normal((len(y), d))
    return x, y, dirs


def test_matches_reference_loop():
    x, _, dirs = _blobs(seed=0, noise=0.8)
    anchors = dirs + 0.5 * np.random.default_rng(1).standard_normal(dirs.shape)
    got = da.spherical_kmeans(x, anchors)
    labels, centers = reference_kmeans(x, anchors)
    perm = got.permutation
    np.testing.assert_array_equal(got.labels, perm[labels])
    np.testing.assert_allclose(got.centers[perm], centers, rtol=1e-10)
    d = 0.5 * (1 - (x / np.linalg.norm(x, axis=1, keepdims=True)) @
               (got.centers / np.linalg.norm(got.centers, axis=1, keepdims=True)).T)
    np.testing.assert_allclose(got.distances, d, atol=1e-12)
    np.testing.assert_allclose(got.dist_to_center, d.min(1), atol=1e-12)


def test_empty_cluster_falls_back_to_its_anchor():
    x, _, dirs = _blobs(k=3, seed=2)
    x, dirs = np.abs(x) + 0.1, np.abs(dirs) + 0.1        # everything in the positive orthant
    far = -np.ones((1, x.shape[1]))                     # an anchor no sample is near
    got = da.spherical_kmeans(x, np.concatenate([dirs, far]))
    assert not np.any(got.labels == 3)
    np.testing.assert_allclose(got.centers[3], far[0])
    labels, _ = reference_kmeans(x, np.concatenate([dirs, far]))
    np.testing.assert_array_equal(got.labels, got.permutation[labels])


def test_hungarian_maps_clusters_to_their_anchor_classes():
    x, y, dirs = _blobs(k=5, seed=3, noise=0.2)
    order = np.array([3, 0, 4, 1, 2])
    got = da.spherical_kmeans(x, dirs[order])  # class j's anchor is dirs[order[j]]
    np.testing.assert_array_equal(got.permutation, np.arange(5))
    np.testing.assert_array_equal(got.labels, np.argsort(order)[y])
    # a swapped initialisation is undone by the matching to the anchors
    perm = da.align_clusters(dirs[order][[1, 0, 2, 3, 4]], dirs[order])
    np.testing.assert_array_equal(perm, [1, 0, 2, 3, 4])


def test_filtering_by_distance_and_class_size():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    dist = np.array([0.1, 0.2, 0.6, 0.1, 0.7, 0.1, 0.1, 0.3, 0.9])
    sel = da.select(labels, dist, num_classes=4, threshold=0.5, min_samples=2)
    assert sel.classes == [0, 2]
    np.testing.assert_array_equal(sel.labels, [0, 0, -1, -1, -1, 2, 2, 2, -1])
    assert sel.kept_ratio == pytest.approx(6 / 9)
    assert da.select(labels, dist, 4, threshold=1.0, min_samples=2).classes == [0, 1, 2]


def test_bad_inputs():
    with pytest.raises(ClusteringError, match="share D"):
        da.spherical_kmeans(np.zeros((4, 3)), np.zeros((2, 5)))
    with pytest.raises(ClusteringError, match="NaN"):
        da.spherical_kmeans(np.full((4, 3), np.nan), np.ones((2, 3)))
    with pytest.raises(FilteringError, match="threshold"):
        da.filter_samples(np.zeros(3), 1.5)
