"""Classification losses: cross entropy with label smoothing; soft-target cross entropy."""
from mindspore import nn, ops


class ClassificationLoss(nn.Cell):
    """Integer labels -> (smoothed) cross entropy; (N, C) float targets -> soft-target cross entropy."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"loss.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.ce = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def construct(self, logits, target):
        if target.ndim == 2:
            return (-target * ops.log_softmax(logits, -1)).sum(-1).mean()
        return self.ce(logits, target)


def create_loss(name: str, label_smoothing: float = 0.0) -> nn.Cell:
    if name not in ("ce", "soft_target"):
        raise ValueError(f"unknown loss.name '{name}' (ce, soft_target)")
    return ClassificationLoss(label_smoothing)
