"""ScanNet instance-segmentation AP (the benchmark's protocol, re-implemented from its description).

Protocol (ScanNet benchmark ``evaluate_semantic_instance``; used by PointGroup ``util/eval.py``):
- per class, over all scenes together; a prediction only meets GT instances of its own class;
- GT instances with fewer than ``min_region_size`` points (100 on ScanNet) are not counted, and
  predictions with fewer points than that are discarded;
- IoU thresholds 0.50, 0.55, ..., 0.90 (``arange(0.5, 0.95, 0.05)``: 0.95 itself is excluded)
  for AP, plus 0.25 for AP25; a match needs IoU strictly above the threshold;
- GT instances are visited in order; each takes the first not-yet-used prediction above the
  threshold as its true positive and keeps the highest score among every further match, each
  further match being a false positive (so duplicates are penalised);
- a prediction that matches no GT is a false positive unless the share of its points that lie on
  void (points of no evaluated instance) or on too-small GT instances of its class exceeds the
  threshold; unmatched GT instances count as false negatives;
- AP = sum_k precision_k * (recall_{k-1} - recall_{k+1}) / 2 over the operating points of each
  distinct score, with a final point (precision 1, recall 0); a class with GT but no prediction
  scores 0, a class without GT is left out (NaN) of the means.
"""
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

from .losses import IGNORE_LABEL

__all__ = ["AP_OVERLAPS", "average_precision", "evaluate_instances"]

AP_OVERLAPS = tuple(np.round(np.arange(0.5, 0.95, 0.05), 2))   # 0.50 .. 0.90


def average_precision(is_true: np.ndarray, scores: np.ndarray, hard_false_negatives: int) -> float:
    """AP of scored detections (1 = true positive) given the GT instances no detection found."""
    is_true = np.asarray(is_true, np.float64)
    scores = np.asarray(scores, np.float64)
    total_true = is_true.sum()
    thresholds = np.unique(scores)
    precision, recall = [], []
    for s in thresholds:
        taken = scores >= s
        tp = is_true[taken].sum()
        fp = taken.sum() - tp
        fn = (total_true - tp) + hard_false_negatives
        precision.append(tp / (tp + fp))
        recall.append(tp / (tp + fn) if tp + fn > 0 else 0.0)
    precision.append(1.0)
    recall.append(0.0)
    r = np.array(recall)
    before = np.concatenate([[r[0]], r[:-1]])
    after = np.concatenate([r[1:], [0.0]])
    return float(np.dot(precision, (before - after) / 2.0))


def _scene_instances(semantic: np.ndarray, instance: np.ndarray, class_labels: Sequence[int]):
    """GT instances of a scene: dict id -> (class, point mask); plus the void mask."""
    semantic, instance = np.asarray(semantic), np.asarray(instance)
    if semantic.shape != instance.shape or semantic.ndim != 1:
        raise ValueError(f"GT semantic and instance labels must be two equal 1-D arrays, got "
                         f"{semantic.shape} and {instance.shape}")
    gts = {}
    for gid in np.unique(instance):
        if gid == IGNORE_LABEL:
            continue
        mask = instance == gid
        cls = np.bincount(semantic[mask] - semantic[mask].min()).argmax() + semantic[mask].min()
        if cls in class_labels:
            gts[int(gid)] = (int(cls), mask)
    void = np.ones(len(instance), bool)
    for _, mask in gts.values():
        void &= ~mask
    return gts, void


def evaluate_instances(scenes: Iterable[Tuple[List, np.ndarray, np.ndarray]], class_labels: Sequence[int],
                       min_region_size: int = 100, class_names: Sequence[str] = None) -> Dict:
    """ScanNet AP / AP50 / AP25 over ``scenes`` = iterable of (predictions, gt_semantic, gt_instance).

    A prediction is any object with ``indices`` (point indices), ``label`` and ``score``
    (e.g. :class:`~mindcv_ext.seg3d.inference.Instance`); GT instance ids equal to -100 are void.
    Returns ``{"ap", "ap50", "ap25", "per_class": {name: {"ap", "ap50", "ap25"}}}`` (fractions).
    """
    class_labels = [int(c) for c in class_labels]
    names = list(class_names) if class_names is not None else [str(c) for c in class_labels]
    overlaps = list(AP_OVERLAPS) + [0.25]
    # per class, per overlap: detections (true flag, score), hard false negatives, has-gt/has-pred flags
    records = {c: {o: ([], [], [0]) for o in overlaps} for c in class_labels}
    has_gt = {c: False for c in class_labels}
    has_pred = {c: False for c in class_labels}
    for preds, semantic, instance in scenes:
        gts, void = _scene_instances(semantic, instance, class_labels)
        for c in class_labels:
            cls_gts = [(gid, mask) for gid, (gc, mask) in gts.items() if gc == c]
            big = [(gid, mask) for gid, mask in cls_gts if mask.sum() >= min_region_size]
            small_mask = np.zeros(len(void), bool)
            for gid, mask in cls_gts:
                if mask.sum() < min_region_size:
                    small_mask |= mask
            cls_preds = []
            for p in preds:
                if int(p.label) != c:
                    continue
                pm = np.zeros(len(void), bool)
                pm[np.asarray(p.indices, np.int64)] = True
                if pm.sum() >= min_region_size:
                    cls_preds.append((pm, float(p.score)))
            has_gt[c] |= bool(big)
            has_pred[c] |= bool(cls_preds)
            iou = np.zeros((len(big), len(cls_preds)))
            for i, (_, gm) in enumerate(big):
                for j, (pm, _) in enumerate(cls_preds):
                    inter = np.count_nonzero(gm & pm)
                    iou[i, j] = inter / (gm.sum() + pm.sum() - inter)
            ignored_share = np.array([np.count_nonzero(pm & (void | small_mask)) / pm.sum() for pm, _ in cls_preds])
            for o in overlaps:
                flags, scores, hard_fn = records[c][o]
                used = np.zeros(len(cls_preds), bool)
                for i in range(len(big)):
                    best = None
                    for j in range(len(cls_preds)):
                        if used[j] or iou[i, j] <= o:
                            continue
                        s = cls_preds[j][1]
                        if best is None:
                            best, used[j] = s, True
                        else:                        # a duplicate: the lower score is a false positive
                            flags.append(0)
                            scores.append(min(best, s))
                            best = max(best, s)
                    if best is None:
                        hard_fn[0] += 1
                    else:
                        flags.append(1)
                        scores.append(best)
                for j in range(len(cls_preds)):
                    if (iou[:, j] > o).any():
                        continue
                    if ignored_share[j] <= o:
                        flags.append(0)
                        scores.append(cls_preds[j][1])
    table = {}
    for c, name in zip(class_labels, names):
        row = []
        for o in overlaps:
            flags, scores, hard_fn = records[c][o]
            if has_gt[c] and has_pred[c]:
                row.append(average_precision(np.array(flags), np.array(scores), hard_fn[0]))
            else:
                row.append(0.0 if has_gt[c] else float("nan"))
        table[name] = {"ap": float(np.mean(row[:-1])), "ap50": row[0], "ap25": row[-1]}

    def mean(key):
        vals = [v[key] for v in table.values() if not np.isnan(v[key])]
        return float(np.mean(vals)) if vals else float("nan")

    return {"ap": mean("ap"), "ap50": mean("ap50"), "ap25": mean("ap25"), "per_class": table}
