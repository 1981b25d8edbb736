"""Point grouping on the host: ball-query components and Hierarchical Point Grouping (HPG).

MaskGroup (Zhong et al., arXiv 2203.14662) shifts every point to its predicted instance centre,
groups the shifted points into small clusters, clusters those clusters again level by level,
and keeps the groups of *all* levels as instance candidates. No code of the paper is public; the
level rules below are a reconstruction with explicit knobs. Level 0 is PointGroup's clustering
(dvlab-research/PointGroup, ``bfs_cluster``): points closer than ``radius`` with the same
predicted class are linked and the connected components are the clusters (radius 0.03 m there).

Everything is exact and runs with ``scipy.spatial.cKDTree.query_pairs`` plus
``scipy.sparse.csgraph.connected_components``, per semantic class, so two classes never link.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = ["GroupingError", "Proposals", "ball_query_components", "hierarchical_grouping", "single_radius_grouping",
           "merge_proposals"]


class GroupingError(ValueError):
    """Bad input to the grouping functions."""


@dataclass
class Proposals:
    """Instance candidates: point indices (into the scene) with the class and origin of each.

    ``level`` is the HPG level that produced the group (0 = point clusters); ``source`` is
    ``"shifted"`` (clustering of p + o) or ``"original"`` (PointGroup's dual set on p).
    """
    indices: List[np.ndarray] = field(default_factory=list)
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    levels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sources: List[str] = field(default_factory=list)

    def __len__(self):
        return len(self.indices)

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(i) for i in self.indices], np.int64)

    def subset(self, keep: Sequence[int]) -> "Proposals":
        keep = list(keep)
        return Proposals([self.indices[k] for k in keep], self.classes[keep], self.levels[keep],
                         [self.sources[k] for k in keep])


def _check_points(points: np.ndarray, labels: np.ndarray, what: str = "points") -> None:
    if points.ndim != 2 or points.shape[1] != 3:
        raise GroupingError(f"{what} must have shape (N, 3), got {points.shape}")
    if labels.shape != (points.shape[0],):
        raise GroupingError(f"semantic labels must have shape ({points.shape[0]},), got {labels.shape}")
    if not np.all(np.isfinite(points)):
        raise GroupingError(f"{what} contain NaN or inf")


def _components_per_class(points: np.ndarray, labels: np.ndarray, radius: np.ndarray,
                          weights: Optional[np.ndarray] = None, adaptive_exponent: float = 0.0) -> np.ndarray:
    """Component id of every node; nodes link when same class and distance < their radius.

    ``radius`` is one value for all pairs, or per node when ``adaptive_exponent`` > 0: then the
    pair radius is ``radius * ((w_a + w_b) / 2) ** exponent``, with ``radius`` the largest allowed.
    """
    n = points.shape[0]
    comp = np.full(n, -1, np.int64)
    next_id = 0
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        pts = points[members]
        pairs = cKDTree(pts).query_pairs(float(radius), output_type="ndarray")
        if adaptive_exponent and len(pairs):
            w = weights[members]
            mean_w = (w[pairs[:, 0]] + w[pairs[:, 1]]) / 2.0
            pair_r = radius * (mean_w / w.max()) ** adaptive_exponent
            dist = np.linalg.norm(pts[pairs[:, 0]] - pts[pairs[:, 1]], axis=1)
            pairs = pairs[dist < pair_r]
        m = len(members)
        graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(m, m))
        count, local = connected_components(graph, directed=False)
        comp[members] = local + next_id
        next_id += count
    return comp


def ball_query_components(points: np.ndarray, labels: np.ndarray, radius: float) -> np.ndarray:
    """Cluster id of every point: connected components of the same-class radius graph.

    Pairs at distance strictly below ``radius`` link (cKDTree uses <=; the difference is measure
    zero). Ids are 0..C-1, numbered per class in class order.
    """
    points = np.asarray(points, np.float64)
    labels = np.asarray(labels)
    _check_points(points, labels)
    if radius <= 0:
        raise GroupingError(f"radius must be positive, got {radius}")
    if points.shape[0] == 0:
        return np.zeros(0, np.int64)
    return _components_per_class(points, labels, radius)


def single_radius_grouping(coords: np.ndarray, offsets: Optional[np.ndarray], semantic: np.ndarray,
                           foreground: np.ndarray, radius: float = 0.03, min_points: int = 50,
                           source: str = "shifted") -> Proposals:
    """PointGroup's clustering: one ball-query BFS on (shifted) foreground points."""
    return hierarchical_grouping(coords, offsets, semantic, foreground, radius=radius, levels=0,
                                 min_points=min_points, dual_set=False, source=source)


def hierarchical_grouping(coords: np.ndarray, offsets: Optional[np.ndarray], semantic: np.ndarray,
                          foreground: np.ndarray, radius: float = 0.03, levels: int = 2, growth: float = 2.5,
                          adaptive_exponent: float = 0.0, min_points: int = 50, min_node_points: int = 1,
                          dual_set: bool = False, dual_radius: Optional[float] = None,
                          source: str = "shifted") -> Proposals:
    """Hierarchical Point Grouping on ``q = coords + offsets`` (offsets None: on coords).

    1. Level 0: same-class ball-query components of the foreground points (radius ``radius``).
    2. Level t = 1..levels: nodes are the groups of level t-1 (those with >= ``min_node_points``
       points), placed at their point-weighted mean of q; same-class nodes closer than
       ``r_t = radius * growth ** t`` are merged (connected components). With
       ``adaptive_exponent`` > 0 the pair radius shrinks for small groups:
       ``r_t * (mean size of the pair / largest size) ** adaptive_exponent``.
    3. Stops after ``levels`` levels or when fewer than two nodes are left. A group that a level
       leaves unchanged is kept once (with its first level); groups under ``min_points`` are
       dropped from the output but still take part in merging.
    ``dual_set`` adds PointGroup's second set: level-0 components on the original coordinates
    (radius ``dual_radius``, default ``radius``). Returns all groups of all levels.
    """
    coords = np.asarray(coords, np.float64)
    semantic = np.asarray(semantic)
    foreground = np.asarray(foreground, bool)
    _check_points(coords, semantic, "coords")
    if foreground.shape != semantic.shape:
        raise GroupingError(f"foreground mask must have shape {semantic.shape}, got {foreground.shape}")
    if radius <= 0 or growth <= 0 or levels < 0:
        raise GroupingError(f"need radius > 0, growth > 0, levels >= 0; got {radius}, {growth}, {levels}")
    shifted = coords
    if offsets is not None:
        offsets = np.asarray(offsets, np.float64)
        if offsets.shape != coords.shape:
            raise GroupingError(f"offsets must have shape {coords.shape}, got {offsets.shape}")
        shifted = coords + offsets
        _check_points(shifted, semantic, "shifted coords")
    fg = np.flatnonzero(foreground)
    out = Proposals()
    if len(fg) == 0:
        return out
    q, cls = shifted[fg], semantic[fg]
    group_of = _components_per_class(q, cls, radius)         # group id of every foreground point
    emitted = set()

    def emit(ids, level, src, only=None):
        sizes = np.bincount(ids)
        order = np.argsort(ids, kind="stable")
        starts = np.concatenate([[0], np.cumsum(sizes)])
        for g in (np.flatnonzero(sizes >= min_points) if only is None else only):
            if sizes[g] < min_points:
                continue
            members = np.sort(fg[order[starts[g]:starts[g + 1]]])
            key = members.tobytes()
            if key in emitted:
                continue
            emitted.add(key)
            out.indices.append(members)
            out.sources.append(src)
            out.classes = np.append(out.classes, semantic[members[0]])
            out.levels = np.append(out.levels, level)

    emit(group_of, 0, source)
    for level in range(1, levels + 1):
        n_groups = group_of.max() + 1
        sizes = np.bincount(group_of, minlength=n_groups).astype(np.float64)
        centres = np.stack([np.bincount(group_of, q[:, d], n_groups) for d in range(3)], 1) / sizes[:, None]
        group_cls = np.zeros(n_groups, cls.dtype)
        group_cls[group_of] = cls
        nodes = np.flatnonzero(sizes >= min_node_points)
        if len(nodes) < 2:
            break
        node_ids = _components_per_class(centres[nodes], group_cls[nodes], radius * growth ** level,
                                         sizes[nodes], adaptive_exponent)
        if node_ids.max() + 1 == len(nodes):
            continue   # nothing merged at this radius; the next level's is larger
        new_id = np.arange(n_groups) + node_ids.max() + 1   # groups left out of the merge keep their own id
        new_id[nodes] = node_ids
        _, new_id = np.unique(new_id, return_inverse=True)
        group_of = new_id[group_of]
        changed = np.flatnonzero(np.bincount(node_ids) > 1)
        emit(group_of, level, source, only=np.unique(new_id[nodes[np.isin(node_ids, changed)]]))
    if dual_set:
        dual = hierarchical_grouping(coords, None, semantic, foreground, radius=dual_radius or radius, levels=0,
                                     min_points=min_points, source="original")
        out = merge_proposals(out, dual)
    return out


def merge_proposals(*sets: Proposals) -> Proposals:
    """Concatenate proposal sets."""
    out = Proposals()
    for s in sets:
        out.indices += list(s.indices)
        out.sources += list(s.sources)
        out.classes = np.concatenate([out.classes, s.classes]).astype(np.int64)
        out.levels = np.concatenate([out.levels, s.levels]).astype(np.int64)
    return out
