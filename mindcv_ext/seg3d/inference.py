"""From scored proposals to instances: mask > 0.5, score threshold, min points, point-set NMS.

Thresholds default to PointGroup's test settings (dvlab-research/PointGroup, ``test.py`` and
``config/pointgroup_run1_scannet.yaml``): score 0.09, more than 100 points, NMS IoU 0.3.
"""
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from .grouping import Proposals
from .targets import PackedProposals

__all__ = ["Instance", "point_nms", "finalize_instances"]


@dataclass
class Instance:
    indices: np.ndarray   # point indices into the scene
    label: int            # semantic class
    score: float


def _iou_matrix(sets: List[np.ndarray], num_points: int) -> np.ndarray:
    if not sets:
        return np.zeros((0, 0))
    from scipy.sparse import csr_matrix
    rows = np.concatenate([np.full(len(s), i) for i, s in enumerate(sets)])
    cols = np.concatenate(sets)
    m = csr_matrix((np.ones(len(cols), np.float64), (rows, cols)), shape=(len(sets), num_points))
    inter = (m @ m.T).toarray()
    sizes = np.diag(inter)
    return inter / np.maximum(sizes[:, None] + sizes[None, :] - inter, 1e-12)


def point_nms(sets: List[np.ndarray], scores: np.ndarray, iou_threshold: float = 0.3,
              num_points: Optional[int] = None) -> np.ndarray:
    """Indices of the kept sets, best score first: a set is dropped when its point IoU with an
    already kept set exceeds ``iou_threshold``."""
    scores = np.asarray(scores, np.float64)
    if len(sets) != len(scores):
        raise ValueError(f"point_nms got {len(sets)} sets and {len(scores)} scores")
    if not sets:
        return np.zeros(0, np.int64)
    n = num_points or int(max(s.max() for s in sets if len(s)) + 1)
    iou = _iou_matrix(sets, n)
    order = np.argsort(-scores, kind="stable")
    alive = np.ones(len(sets), bool)
    keep = []
    for i in order:
        if alive[i]:
            keep.append(i)
            alive &= iou[i] <= iou_threshold
            alive[i] = False
    return np.array(keep, np.int64)


def finalize_instances(proposals: Proposals, packed: PackedProposals, score_prob: np.ndarray,
                       mask_prob: Optional[np.ndarray] = None, mask_threshold: float = 0.5,
                       score_threshold: float = 0.09, min_points: int = 100, nms_iou: float = 0.3,
                       num_points: Optional[int] = None) -> List[Instance]:
    """Turn MaskScoreNet outputs on packed proposals into final instances.

    ``score_prob`` (P,) and ``mask_prob`` (P, M) are sigmoid outputs; ``mask_prob=None`` keeps
    every packed point (the "without mask" ablation). Pack with ``max_points=None`` at inference,
    so no point of a proposal is left out. The class is the proposal's grouping class (all its
    points share one predicted class, as PointGroup's first-point rule gives).
    """
    sets, scores, labels = [], [], []
    for row in np.flatnonzero(packed.source >= 0):
        k = packed.source[row]
        keep = packed.valid[row] > 0
        if mask_prob is not None:
            keep &= mask_prob[row] > mask_threshold
        pts = np.unique(packed.index[row][keep])
        if score_prob[row] <= score_threshold or len(pts) <= min_points:   # PointGroup keeps > thresholds
            continue
        sets.append(pts)
        scores.append(float(score_prob[row]))
        labels.append(int(proposals.classes[k]))
    kept = point_nms(sets, np.array(scores), nms_iou, num_points)
    return [Instance(sets[i], labels[i], scores[i]) for i in kept]
