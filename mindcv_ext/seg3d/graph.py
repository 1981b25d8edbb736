"""Host-side neighbour indices for the point backbone of ``models/maskgroup.py``.

Level 0 is the input point set; level l >= 1 is the previous level voxelised at
``voxel_sizes[l - 1]`` (centre = mean of its points). Per level: ``coords`` (N_l, 3) and ``knn``
(N_l, k) nearest neighbours within the level (itself first); per l >= 1: ``pool`` (N_l, k),
the k nearest level-(l-1) points of each centre, and ``unpool`` (N_{l-1},), the level-l voxel of
each level-(l-1) point. With fewer than k points the neighbour lists repeat the nearest ones.
"""
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
from scipy.spatial import cKDTree

from .transforms import pool_by_voxel, voxelize

__all__ = ["PointGraph", "build_point_graph", "concat_graphs", "pad_graph"]


@dataclass
class PointGraph:
    coords: List[np.ndarray]
    knn: List[np.ndarray]
    pool: List[np.ndarray]     # pool[l - 1] belongs to level l
    unpool: List[np.ndarray]   # unpool[l - 1] maps level l-1 points to level l

    def inputs(self) -> Tuple[np.ndarray, ...]:
        """The graph tensors in the order ``MaskGroupPoints`` takes them:
        coords_0..L-1, knn_0..L-1, pool_1..L-1, unpool_1..L-1."""
        return tuple(self.coords) + tuple(self.knn) + tuple(self.pool) + tuple(self.unpool)


def _knn(tree_points: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    k_eff = min(k, len(tree_points))
    _, idx = cKDTree(tree_points).query(queries, k=k_eff)
    idx = idx.reshape(len(queries), k_eff)
    if k_eff < k:
        idx = idx[:, np.arange(k) % k_eff]
    return idx.astype(np.int32)


def build_point_graph(coords: np.ndarray, voxel_sizes: Sequence[float] = (0.15, 0.45), k: int = 16) -> PointGraph:
    """Neighbour indices of a point cloud for a ``len(voxel_sizes) + 1``-level backbone."""
    coords = np.asarray(coords, np.float64)
    if coords.ndim != 2 or coords.shape[1] != 3 or len(coords) == 0:
        raise ValueError(f"build_point_graph needs coords of shape (N, 3) with N > 0, got {coords.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    levels = [coords]
    pool, unpool = [], []
    for size in voxel_sizes:
        _, inverse, _ = voxelize(levels[-1], size)
        centres = pool_by_voxel(levels[-1], inverse).astype(np.float64)
        pool.append(_knn(levels[-1], centres, k))
        unpool.append(inverse.astype(np.int32))
        levels.append(centres)
    knn = [_knn(pts, pts, k) for pts in levels]
    return PointGraph([p.astype(np.float32) for p in levels], knn, pool, unpool)


def concat_graphs(graphs: Sequence[PointGraph]) -> PointGraph:
    """One graph for a batch of scenes (PointGroup batches scenes as one point set)."""
    num_levels = len(graphs[0].coords)
    if any(len(g.coords) != num_levels for g in graphs):
        raise ValueError("graphs of a batch must have the same number of levels")
    out = PointGraph([], [], [], [])
    for lvl in range(num_levels):
        starts = np.cumsum([0] + [len(g.coords[lvl]) for g in graphs])
        out.coords.append(np.concatenate([g.coords[lvl] for g in graphs]))
        out.knn.append(np.concatenate([g.knn[lvl] + s for g, s in zip(graphs, starts)]).astype(np.int32))
        if lvl:
            below = np.cumsum([0] + [len(g.coords[lvl - 1]) for g in graphs])
            out.pool.append(np.concatenate([g.pool[lvl - 1] + s for g, s in zip(graphs, below)]).astype(np.int32))
            out.unpool.append(np.concatenate([g.unpool[lvl - 1] + s for g, s in zip(graphs, starts)]).astype(np.int32))
    return out


def pad_graph(graph: PointGraph, sizes: Sequence[int]) -> Tuple[PointGraph, np.ndarray]:
    """Static shapes for compiled graphs: every level padded to ``sizes[l]`` rows by repeating its
    first rows (a repeated row copies the coordinates and neighbour lists of its source, so real
    rows are computed exactly as before; BatchNorm in training sees a few duplicates).

    Returns the padded graph and ``rows`` (sizes[0],): the original point of each level-0 row;
    gather the features and labels with it and give rows ``>= len(graph.coords[0])`` the ignore
    label (-100) and zero offset weight, so padding adds nothing to the losses.
    """
    if len(sizes) != len(graph.coords):
        raise ValueError(f"pad_graph needs one size per level ({len(graph.coords)}), got {list(sizes)}")
    src = []
    for lvl, size in enumerate(sizes):
        n = len(graph.coords[lvl])
        if size < n:
            raise ValueError(f"level {lvl} has {n} points, more than its padded size {size}")
        src.append(np.arange(size) % n)
    out = PointGraph([c[s] for c, s in zip(graph.coords, src)], [k[s] for k, s in zip(graph.knn, src)],
                     [p[s] for p, s in zip(graph.pool, src[1:])], [u[s] for u, s in zip(graph.unpool, src[:-1])])
    return out, src[0]
