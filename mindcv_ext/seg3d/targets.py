"""MaskScoreNet inputs and targets: proposals packed into static shapes, IoU-mapped soft scores.

Score target (PointGroup's ScoreNet, dvlab-research/PointGroup): the IoU of a proposal with its
best-matching ground-truth instance, mapped to 1 above ``fg_thresh`` (0.75), 0 below
``bg_thresh`` (0.25) and linearly in between. Mask target (MaskGroup's mask branch, as in the
public HAIS code hustvl/HAIS): 1 for the points of the best-matching instance, 0 for the other
points of the proposal; proposals whose best IoU is under ``mask_iou_floor`` get no mask loss.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .grouping import Proposals
from .losses import IGNORE_LABEL

__all__ = ["PackedProposals", "pack_proposals", "proposal_instance_iou", "score_targets", "proposal_targets"]


@dataclass
class PackedProposals:
    """Static-shape view of at most P proposals of at most M points.

    ``index`` (P, M) int32 point indices (0 on padding), ``valid`` (P, M) float32,
    ``proposal_valid`` (P,) float32, ``source`` (P,) the proposal number in the original set (-1 pad).
    """
    index: np.ndarray
    valid: np.ndarray
    proposal_valid: np.ndarray
    source: np.ndarray


def pack_proposals(proposals: Proposals, max_proposals: int, max_points: Optional[int] = None,
                   rng: Optional[np.random.Generator] = None) -> PackedProposals:
    """Pad (or subsample) proposals to ``(max_proposals, max_points)``.

    More than ``max_proposals``: a random subset (``rng``) or the first ones (no rng). A proposal
    bigger than ``max_points`` keeps a random subset of its points (the first ones without rng).
    ``max_points=None``: the largest proposal size (no point is dropped; for inference).
    """
    if max_proposals < 1:
        raise ValueError(f"max_proposals must be >= 1, got {max_proposals}")
    chosen = np.arange(len(proposals))
    if len(chosen) > max_proposals:
        chosen = np.sort(rng.choice(chosen, max_proposals, replace=False)) if rng is not None else chosen[:max_proposals]
    if max_points is None:
        max_points = max([len(proposals.indices[k]) for k in chosen], default=1)
    index = np.zeros((max_proposals, max_points), np.int32)
    valid = np.zeros((max_proposals, max_points), np.float32)
    source = np.full(max_proposals, -1, np.int64)
    for row, k in enumerate(chosen):
        pts = proposals.indices[k]
        if len(pts) > max_points:
            pts = np.sort(rng.choice(pts, max_points, replace=False)) if rng is not None else pts[:max_points]
        index[row, :len(pts)] = pts
        valid[row, :len(pts)] = 1.0
        source[row] = k
    return PackedProposals(index, valid, (source >= 0).astype(np.float32), source)


def proposal_instance_iou(proposals: Proposals, instance_labels: np.ndarray, ignore: int = IGNORE_LABEL):
    """(iou (K, I), instance ids (I,)): point-set IoU of every proposal with every GT instance."""
    inst = np.asarray(instance_labels)
    ids, inverse = np.unique(inst, return_inverse=True)
    keep = ids != ignore
    inst_sizes = np.bincount(inverse, minlength=len(ids))
    iou = np.zeros((len(proposals), int(keep.sum())), np.float64)
    for k, pts in enumerate(proposals.indices):
        inter = np.bincount(inverse[pts], minlength=len(ids))
        union = inst_sizes + len(pts) - inter
        iou[k] = (inter / np.maximum(union, 1))[keep]
    return iou, ids[keep]


def score_targets(best_iou: np.ndarray, fg_thresh: float = 0.75, bg_thresh: float = 0.25) -> np.ndarray:
    """PointGroup's soft score target: 0 below bg, 1 above fg, linear between."""
    if not 0 <= bg_thresh < fg_thresh <= 1:
        raise ValueError(f"need 0 <= bg_thresh < fg_thresh <= 1, got {bg_thresh}, {fg_thresh}")
    return np.clip((np.asarray(best_iou) - bg_thresh) / (fg_thresh - bg_thresh), 0.0, 1.0).astype(np.float32)


def proposal_targets(packed: PackedProposals, proposals: Proposals, instance_labels: np.ndarray,
                     fg_thresh: float = 0.75, bg_thresh: float = 0.25, mask_iou_floor: float = 0.25):
    """(score_target (P,), mask_target (P, M), mask_weight (P, M)) for a packed proposal set.

    IoU is measured on the full proposal (not only its packed points).
    """
    inst = np.asarray(instance_labels)
    P, M = packed.index.shape
    score_t = np.zeros(P, np.float32)
    mask_t = np.zeros((P, M), np.float32)
    mask_w = np.zeros((P, M), np.float32)
    if len(proposals) == 0:
        return score_t, mask_t, mask_w
    iou, ids = proposal_instance_iou(proposals, inst)
    for row in np.flatnonzero(packed.source >= 0):
        k = packed.source[row]
        if iou.shape[1] == 0:
            continue
        best = int(np.argmax(iou[k]))
        score_t[row] = score_targets(iou[k, best], fg_thresh, bg_thresh)
        if iou[k, best] >= mask_iou_floor:
            mask_t[row] = (inst[packed.index[row]] == ids[best]) * packed.valid[row]
            mask_w[row] = packed.valid[row]
    return score_t, mask_t, mask_w
