"""Point-cloud preprocessing: voxelisation (mean pooling per voxel) and PointGroup's augmentations.

PointGroup (dvlab-research/PointGroup, ``data/scannetv2_inst.py``) augments training scenes with
a random linear map (identity + N(0, 0.1) jitter, x-flip, z-rotation), then two elastic
distortions in voxel units at scale 50 (2 cm voxels): granularity 6 / magnitude 40 and
granularity 20 / magnitude 160; :func:`augment_scene` takes them in metres (divided by 50).
"""
from typing import Optional, Tuple

import numpy as np
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import convolve1d

__all__ = ["voxelize", "pool_by_voxel", "random_linear_map", "elastic_distortion", "augment_scene"]


def voxelize(coords: np.ndarray, voxel_size: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(voxel integer coords (V, 3), voxel of each point (N,), points per voxel (V,))."""
    coords = np.asarray(coords, np.float64)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"voxelize needs coords of shape (N, 3), got {coords.shape}")
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    keys = np.floor(coords / voxel_size).astype(np.int64)
    voxels, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    return voxels, inverse.reshape(-1), counts


def pool_by_voxel(values: np.ndarray, inverse: np.ndarray, num_voxels: Optional[int] = None) -> np.ndarray:
    """Mean of ``values`` (N, C) over the points of each voxel (V, C)."""
    values = np.asarray(values, np.float64)
    v = num_voxels or int(inverse.max()) + 1
    counts = np.bincount(inverse, minlength=v)
    sums = np.stack([np.bincount(inverse, values[:, c], v) for c in range(values.shape[1])], 1)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def random_linear_map(rng: np.random.Generator, jitter: bool = True, flip: bool = True, rotate: bool = True):
    """3x3 matrix: identity (+ N(0, 0.1) entries), random sign on x, random rotation about z."""
    m = np.eye(3)
    if jitter:
        m = m + rng.normal(0, 0.1, (3, 3))
    if flip:
        m[0, 0] *= rng.choice([-1.0, 1.0])
    if rotate:
        t = rng.random() * 2 * np.pi
        m = m @ np.array([[np.cos(t), np.sin(t), 0], [-np.sin(t), np.cos(t), 0], [0, 0, 1]])
    return m


def elastic_distortion(coords: np.ndarray, granularity: float, magnitude: float, rng: np.random.Generator):
    """Displace points by a smooth random field: Gaussian noise on a grid of cell ``granularity``,
    smoothed by three passes of a 3-tap box filter along each axis, trilinearly interpolated and
    scaled by ``magnitude`` (same units as ``coords``)."""
    coords = np.asarray(coords, np.float64)
    lo = coords.min(0)
    shape = ((coords.max(0) - lo) // granularity).astype(int) + 3
    noise = rng.normal(size=(3, *shape))
    box = np.ones(3) / 3
    for _ in range(3):
        for axis in (1, 2, 3):
            noise = convolve1d(noise, box, axis=axis, mode="constant")
    axes = [lo[d] + granularity * (np.arange(shape[d]) - 1) for d in range(3)]
    field = np.stack([RegularGridInterpolator(axes, noise[d], bounds_error=False, fill_value=0.0)(coords)
                      for d in range(3)], 1)
    return coords + field * magnitude


def augment_scene(coords: np.ndarray, rng: np.random.Generator, elastic: bool = True,
                  jitter: bool = True, flip: bool = True, rotate: bool = True) -> np.ndarray:
    """PointGroup's training augmentation on coordinates in metres (labels are unchanged)."""
    xyz = np.asarray(coords, np.float64) - np.asarray(coords, np.float64).mean(0)
    xyz = xyz @ random_linear_map(rng, jitter, flip, rotate)
    if elastic:
        xyz = elastic_distortion(xyz, 6 / 50, 40 / 50, rng)
        xyz = elastic_distortion(xyz, 20 / 50, 160 / 50, rng)
    return (xyz - xyz.min(0)).astype(np.float32)
