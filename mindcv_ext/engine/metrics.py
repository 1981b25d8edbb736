"""Metrics: a small registry of accumulators (``update`` per batch, ``result`` at the end).

``topk`` (classification) is built in; tasks register theirs (mIoU, instance AP) with
``register_metric``.
"""
import difflib
from typing import Dict

import numpy as np

_METRICS: Dict[str, type] = {}


def register_metric(name: str):
    def deco(cls):
        _METRICS[name] = cls
        return cls
    return deco


def create_metric(name: str, **kwargs):
    if name not in _METRICS:
        close = difflib.get_close_matches(name, list(_METRICS), n=3, cutoff=0.5)
        raise ValueError(f"unknown metric '{name}'" + (f" (did you mean {', '.join(close)}?)" if close else "")
                         + f"; registered: {', '.join(sorted(_METRICS))}")
    return _METRICS[name](**kwargs)


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


@register_metric("topk")
class TopK:
    """Top-k accuracies of (N, C) logits against (N,) integer labels: ``{"top1": .., "top5": ..}``."""

    def __init__(self, ks=(1, 5)):
        self.ks, self.correct, self.n = tuple(ks), {k: 0 for k in ks}, 0

    def update(self, logits: np.ndarray, labels: np.ndarray) -> None:
        for k in self.ks:
            self.correct[k] += topk_correct(logits, labels, k)
        self.n += len(labels)

    def result(self) -> Dict[str, float]:
        if self.n == 0:
            raise ValueError("the evaluation set is empty")
        return {f"top{k}": self.correct[k] / self.n for k in self.ks}


def evaluate(net, loader, loss_fn=None, predict=None) -> Dict[str, float]:
    """``{"top1", "top5", "loss", "n"}`` of a classifier on every batch of ``loader`` (eval mode)."""
    was_training = net.training
    net.set_train(False)
    predict = predict or net
    acc, loss_sum = TopK(), 0.0
    for images, labels in loader.epoch(0):
        logits = predict(images)
        if loss_fn is not None:
            loss_sum += float(loss_fn(logits, labels).asnumpy()) * images.shape[0]
        acc.update(logits.asnumpy(), labels.asnumpy())
    net.set_train(was_training)
    out = acc.result()
    out.update(loss=loss_sum / acc.n if loss_fn is not None else float("nan"), n=acc.n)
    return out
