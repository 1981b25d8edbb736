"""PointGroup / MaskGroup training losses as MindSpore functions, plus their host-side targets.

Offset losses follow PointGroup (dvlab-research/PointGroup, ``model/pointgroup/pointgroup.py``):
with ``g_i = c_inst(i) - p_i`` (c = mean xyz of the point's instance) and only points that have
an instance label counting,
``L_reg = sum_i |o_i - g_i|_1 / (N_valid + eps)`` (L1 summed over xyz) and
``L_dir = -sum_i cos(o_i, g_i) / (N_valid + eps)`` (both vectors normalised with + 1e-8 norms).
The semantic loss is cross-entropy with ignore label -100; the proposal score is BCE on a
sigmoid against an IoU-mapped soft target; the MaskScoreNet mask loss is BCE per point of the
valid proposals (mean over the counted points).
"""
import numpy as np
import mindspore as ms
from mindspore import ops

__all__ = ["IGNORE_LABEL", "offset_targets", "offset_l1_loss", "offset_direction_loss", "semantic_loss",
           "score_loss", "mask_loss", "MaskGroupLoss"]

IGNORE_LABEL = -100
_EPS = 1e-6


def offset_targets(coords: np.ndarray, instance_labels: np.ndarray, ignore: int = IGNORE_LABEL):
    """(gt_offsets (N, 3) float32, valid (N,) float32): instance mean xyz minus the point."""
    coords = np.asarray(coords, np.float64)
    inst = np.asarray(instance_labels)
    if coords.ndim != 2 or coords.shape[1] != 3 or inst.shape != (coords.shape[0],):
        raise ValueError(f"offset_targets needs coords (N, 3) and instance labels (N,), got {coords.shape}, {inst.shape}")
    valid = inst != ignore
    gt = np.zeros_like(coords)
    if valid.any():
        ids, inverse = np.unique(inst[valid], return_inverse=True)
        counts = np.bincount(inverse)
        centres = np.stack([np.bincount(inverse, coords[valid, d]) for d in range(3)], 1) / counts[:, None]
        gt[valid] = centres[inverse] - coords[valid]
    return gt.astype(np.float32), valid.astype(np.float32)


def offset_l1_loss(pred_offsets, gt_offsets, valid):
    """Sum over valid points of the xyz-summed L1 distance, divided by the valid count."""
    dist = ops.abs(pred_offsets - gt_offsets).sum(-1)
    return (dist * valid).sum() / (valid.sum() + _EPS)


def offset_direction_loss(pred_offsets, gt_offsets, valid):
    """Minus the mean cosine between predicted and true offsets over valid points."""
    gt_n = gt_offsets / (ops.sqrt((gt_offsets * gt_offsets).sum(-1, keepdims=True)) + 1e-8)
    pt_n = pred_offsets / (ops.sqrt((pred_offsets * pred_offsets).sum(-1, keepdims=True)) + 1e-8)
    cos = (gt_n * pt_n).sum(-1)
    return -(cos * valid).sum() / (valid.sum() + _EPS)


def semantic_loss(logits, labels, ignore: int = IGNORE_LABEL):
    """Cross-entropy over the points whose label is not ``ignore`` (mean)."""
    valid = (labels != ignore).astype(ms.float32)
    safe = ops.where(labels == ignore, ops.zeros_like(labels), labels).astype(ms.int32)
    logp = ops.log_softmax(logits, -1)
    picked = ops.gather_elements(logp, 1, safe.reshape(-1, 1)).reshape(-1)
    return -(picked * valid).sum() / (valid.sum() + _EPS)


def _bce_with_logits(logits, target):
    """Elementwise, stable: max(x, 0) - x * t + log(1 + exp(-|x|))."""
    return ops.relu(logits) - logits * target + ops.log1p(ops.exp(-ops.abs(logits)))


def score_loss(score_logits, score_targets, proposal_valid):
    """BCE of the proposal scores (P,) against the soft targets, over the real (unpadded) proposals."""
    return (_bce_with_logits(score_logits, score_targets) * proposal_valid).sum() / (proposal_valid.sum() + _EPS)


def mask_loss(mask_logits, mask_targets, point_weight):
    """BCE of per-point mask logits (P, M); ``point_weight`` is 0 on padding and ignored proposals."""
    return (_bce_with_logits(mask_logits, mask_targets) * point_weight).sum() / (point_weight.sum() + _EPS)


class MaskGroupLoss(ms.nn.Cell):
    """Total training loss of a ``MaskGroupNet``: CE + L_reg + L_dir + BCE_score + BCE_mask.

    ``construct(features, *graph, proposal_index, proposal_valid, semantic_labels, gt_offsets,
    offset_valid, score_targets, proposal_mask, mask_targets, mask_weights)`` (the net's inputs
    followed by the targets of :func:`offset_targets` and ``seg3d.targets.proposal_targets``;
    ``proposal_mask`` (P,) is ``PackedProposals.proposal_valid``). PointGroup weighs the first
    four terms 1, 1, 1, 1; the mask weight (MaskGroup's extra term) defaults to 1 as well. Before
    proposals exist (PointGroup's ``prepare_epochs``) pass all-zero proposal masks: those terms
    are then 0.
    """

    def __init__(self, net, weights=(1.0, 1.0, 1.0, 1.0, 1.0)):
        super().__init__(auto_prefix=False)  # parameter names stay the model's (checkpoints load into it)
        if len(weights) != 5:
            raise ValueError(f"MaskGroupLoss needs 5 weights (sem, reg, dir, score, mask), got {weights}")
        self.net = net
        self.w = tuple(float(w) for w in weights)
        self.num_net_inputs = net.num_graph_inputs + 2

    def construct(self, features, *rest):
        n = self.num_net_inputs
        sem_logits, offsets, mask_logits, score_logits = self.net(features, *rest[:n])
        sem_labels, gt_offsets, offset_valid = rest[n], rest[n + 1], rest[n + 2]
        score_t, proposal_mask, mask_t, mask_w = rest[n + 3], rest[n + 4], rest[n + 5], rest[n + 6]
        return (self.w[0] * semantic_loss(sem_logits, sem_labels)
                + self.w[1] * offset_l1_loss(offsets, gt_offsets, offset_valid)
                + self.w[2] * offset_direction_loss(offsets, gt_offsets, offset_valid)
                + self.w[3] * score_loss(score_logits, score_t, proposal_mask)
                + self.w[4] * mask_loss(mask_logits, mask_t, mask_w))
