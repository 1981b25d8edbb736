"""Segmentation metrics from a confusion matrix (NumPy), as the official TokenFusion evaluation
computes them (``utils/meter.py``): pixel accuracy, mean class accuracy and mean IoU, in percent.

Rows of the confusion matrix are ground-truth classes, columns predictions. Pixels whose label is
the ignore label (or any value >= num_classes, as upstream) are left out. Classes that never occur
in the ground truth are left out of the mean accuracy; classes absent from both ground truth and
prediction are left out of the mean IoU (NaN-mean, as upstream).
"""
from typing import Dict, Sequence

import cv2
import numpy as np

IGNORE_INDEX = 255


class MetricInputError(ValueError):
    """Labels/predictions that cannot be scored."""


def confusion_matrix(gt, pred, num_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(num_classes, num_classes) int64 counts of (gt, pred) pairs over labelled pixels."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise MetricInputError(f"confusion_matrix: gt {gt.shape} and pred {pred.shape} differ in shape")
    if num_classes <= 0:
        raise MetricInputError(f"confusion_matrix: num_classes must be positive, got {num_classes}")
    gt, pred = gt.astype(np.int64).ravel(), pred.astype(np.int64).ravel()
    keep = (gt >= 0) & (gt < num_classes) & (gt != ignore_index)
    gt, pred = gt[keep], pred[keep]
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise MetricInputError(f"confusion_matrix: predictions must lie in [0, {num_classes}), "
                               f"got values in [{pred.min()}, {pred.max()}]")
    return np.bincount(num_classes * gt + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def segmentation_scores(conf: np.ndarray) -> Dict[str, float]:
    """``{"pixel_acc", "mean_acc", "miou"}`` in percent (zeros for an empty matrix) and per-class IoU."""
    conf = np.asarray(conf, np.float64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise MetricInputError(f"segmentation_scores: a square confusion matrix is needed, got {conf.shape}")
    total = conf.sum()
    if total == 0:
        return {"pixel_acc": 0.0, "mean_acc": 0.0, "miou": 0.0, "iou": [float("nan")] * conf.shape[0]}
    diag = np.diag(conf)
    rows, cols = conf.sum(1), conf.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = diag / rows
        iou = diag / (rows + cols - diag)
    return {"pixel_acc": float(diag.sum() / total * 100), "mean_acc": float(np.nanmean(acc) * 100),
            "miou": float(np.nanmean(iou) * 100), "iou": [float(v) for v in iou]}


def logits_to_labels(logits, size=None) -> np.ndarray:
    """Arg-max labels of (C, h, w) logits, first resized to ``size`` = (H, W) with bicubic
    interpolation (cv2, as the official evaluation does)."""
    logits = np.asarray(logits, np.float32)
    if logits.ndim != 3:
        raise MetricInputError(f"logits_to_labels: (C, h, w) logits expected, got {logits.shape}")
    hwc = np.ascontiguousarray(logits.transpose(1, 2, 0))
    if size is not None and tuple(size) != hwc.shape[:2]:
        hwc = cv2.resize(hwc, (int(size[1]), int(size[0])), interpolation=cv2.INTER_CUBIC)
        if hwc.ndim == 2:  # cv2 drops a single channel
            hwc = hwc[..., None]
    return hwc.argmax(axis=2).astype(np.int64)


class SegMeter:
    """Confusion matrices for several outputs (e.g. rgb, depth, ensemble) over an evaluation."""

    def __init__(self, num_classes: int, names: Sequence[str] = ("rgb", "depth", "ensemble"),
                 ignore_index: int = IGNORE_INDEX):
        self.num_classes, self.names, self.ignore_index = int(num_classes), tuple(names), ignore_index
        self.conf = {n: np.zeros((self.num_classes, self.num_classes), np.int64) for n in self.names}

    def update(self, logits_per_output: Sequence, mask) -> None:
        """``logits_per_output``: one (B, C, h, w) array per name; ``mask``: (B, H, W) labels."""
        if len(logits_per_output) != len(self.names):
            raise MetricInputError(f"SegMeter: {len(self.names)} outputs expected ({', '.join(self.names)}), "
                                   f"got {len(logits_per_output)}")
        mask = np.asarray(mask)
        for name, logits in zip(self.names, logits_per_output):
            logits = np.asarray(logits)
            if logits.ndim != 4 or logits.shape[0] != mask.shape[0]:
                raise MetricInputError(f"SegMeter: '{name}' logits {logits.shape} do not match masks {mask.shape}")
            for b in range(mask.shape[0]):
                pred = logits_to_labels(logits[b, :self.num_classes], mask.shape[1:])
                self.conf[name] += confusion_matrix(mask[b], pred, self.num_classes, self.ignore_index)

    def scores(self) -> Dict[str, float]:
        """Flat dict: ``{name}_pixel_acc``, ``{name}_mean_acc``, ``{name}_miou`` for every output."""
        out = {}
        for name in self.names:
            s = segmentation_scores(self.conf[name])
            out.update({f"{name}_pixel_acc": s["pixel_acc"], f"{name}_mean_acc": s["mean_acc"],
                        f"{name}_miou": s["miou"]})
        return out
