"""Per-loop adaptation metrics and pictures: pseudo-label accuracy, kept ratio, confusion matrices."""
from typing import Dict, List, Optional, Sequence

import numpy as np


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    pred, labels = np.asarray(pred), np.asarray(labels)
    if pred.shape != labels.shape:
        raise ValueError(f"predictions {pred.shape} and labels {labels.shape} differ in shape")
    return float(np.mean(pred == labels)) if len(labels) else 0.0


def mean_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Mean of per-class recalls over the classes present (VisDA-2017's metric)."""
    cm = confusion_matrix(labels, pred, num_classes)
    support = cm.sum(1)
    return float(np.mean(np.diag(cm)[support > 0] / support[support > 0]))


def pseudo_label_accuracy(pseudo: np.ndarray, labels: np.ndarray, usable: Optional[np.ndarray] = None) -> float:
    """Accuracy of pseudo-labels against ground truth, over the usable samples (all when None)."""
    pseudo, labels = np.asarray(pseudo), np.asarray(labels)
    if usable is not None:
        pseudo, labels = pseudo[np.asarray(usable, bool)], labels[np.asarray(usable, bool)]
    return accuracy(pseudo, labels)


def kept_ratio(usable: np.ndarray) -> float:
    usable = np.asarray(usable, bool)
    return float(usable.mean()) if usable.size else 0.0


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts, row = true class, column = prediction."""
    labels, pred = np.asarray(labels, np.int64), np.asarray(pred, np.int64)
    if labels.shape != pred.shape:
        raise ValueError(f"labels {labels.shape} and predictions {pred.shape} differ in shape")
    if labels.size and (labels.min() < 0 or pred.min() < 0 or max(labels.max(), pred.max()) >= num_classes):
        raise ValueError(f"class ids must lie in [0, {num_classes})")
    return np.bincount(labels * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def save_confusion_png(cm: np.ndarray, path: str, class_names: Optional[Sequence[str]] = None,
                       title: str = "") -> str:
    """Row-normalised confusion matrix as a PNG (counts printed for small K)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    k = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = max(4.0, 0.35 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title or f"accuracy {np.trace(cm) / max(cm.sum(), 1):.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_loop_plot(history: List[Dict[str, float]], path: str,
                   keys: Sequence[str] = ("target_acc", "pseudo_label_acc", "kept_ratio")) -> str:
    """One line per metric over the adaptation loops (``history`` = one dict per loop)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        pts = [(i, h[key]) for i, h in enumerate(history) if h.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=key)
    ax.set_xlabel("loop")
    ax.set_ylim(0, 1.02)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
