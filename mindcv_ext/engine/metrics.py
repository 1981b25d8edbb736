"""Top-k accuracy and loss over a loader."""
from typing import Dict

import numpy as np
import mindspore as ms


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


def evaluate(net, loader, loss_fn=None, predict=None) -> Dict[str, float]:
    """``{"top1", "top5", "loss", "n"}`` of ``net`` on every batch of ``loader`` (eval mode)."""
    was_training = net.training
    net.set_train(False)
    predict = predict or net
    n = correct1 = correct5 = 0
    loss_sum = 0.0
    for images, labels in loader.epoch(0):
        logits = predict(images)
        if loss_fn is not None:
            loss_sum += float(loss_fn(logits, labels).asnumpy()) * images.shape[0]
        lg, lb = logits.asnumpy(), labels.asnumpy()
        correct1 += topk_correct(lg, lb, 1)
        correct5 += topk_correct(lg, lb, 5)
        n += len(lb)
    net.set_train(was_training)
    if n == 0:
        raise ValueError("the evaluation set is empty")
    return {"top1": correct1 / n, "top5": correct5 / n, "loss": loss_sum / n if loss_fn is not None else float("nan"),
            "n": n}
