"""TokenFusion segmentation loss (yikaiw/TokenFusion ``semantic_segmentation/main.py``).

Each output (RGB, depth, ensemble logits) is resized bilinearly to the label size, passed through
log-softmax and scored by NLL with the ignore label (mean over the labelled pixels); the three terms
are summed and ``lamda * sum |s|`` is added, the sum running over batch, tokens, blocks and
modalities (a sum, not a mean). The ensemble logits are built from detached branch logits, so its
term only trains ``alpha``.
"""
import mindspore as ms
from mindspore import nn, ops

IGNORE_INDEX = 255


class LossInputError(ValueError):
    """Bad loss settings. (Checks reachable from compiled graphs raise plain ValueError: graph mode
    only accepts built-in exception types.)"""


def seg_cross_entropy(logits, mask, ignore_index: int = IGNORE_INDEX):
    """Mean NLL of log-softmax(logits resized to the mask) over pixels whose label is not ``ignore_index``.

    logits (B, C, h, w) float, mask (B, H, W) integer. Zero when no pixel is labelled.
    """
    if logits.ndim != 4 or mask.ndim != 3 or logits.shape[0] != mask.shape[0]:
        raise ValueError(f"seg_cross_entropy: logits (B, C, h, w) and mask (B, H, W) expected, got "
                             f"{logits.shape} and {mask.shape}")
    num_classes = logits.shape[1]
    size = (mask.shape[1], mask.shape[2])
    if (logits.shape[2], logits.shape[3]) != size:
        logits = ops.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    logp = ops.log_softmax(logits, axis=1)
    mask = mask.astype(ms.int32)
    valid = mask != ignore_index
    target = ops.select(valid, mask, ops.zeros_like(mask))
    onehot = ops.one_hot(target, num_classes, ops.ones((), logp.dtype), ops.zeros((), logp.dtype), axis=1)
    nll = -(logp * onehot).sum(axis=1)
    validf = valid.astype(logp.dtype)
    return (nll * validf).sum() / ops.maximum(validf.sum(), ops.ones((), logp.dtype))


def score_l1(scores):
    """sum_l sum_m sum_tokens |s| over a tuple of score tensors."""
    total = ops.abs(scores[0]).sum()
    for s in scores[1:]:
        total = total + ops.abs(s).sum()
    return total


def tokenfusion_loss(outputs, mask, lamda: float, ignore_index: int = IGNORE_INDEX):
    """CE on every logits output of ``outputs`` (all items but the last, the score tuple) summed,
    plus ``lamda`` times the L1 sum of the scores."""
    if len(outputs) < 2:
        raise ValueError(f"tokenfusion_loss: expected (logits..., scores), got {len(outputs)} items")
    logits, scores = outputs[:-1], outputs[-1]
    loss = seg_cross_entropy(logits[0], mask, ignore_index)
    for out in logits[1:]:
        loss = loss + seg_cross_entropy(out, mask, ignore_index)
    if lamda > 0:
        loss = loss + lamda * score_l1(scores)
    return loss


class TokenFusionLoss(nn.Cell):
    """``construct(outputs, mask)`` = :func:`tokenfusion_loss` (usable inside a compiled train step)."""

    def __init__(self, lamda: float = 1e-4, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        if lamda < 0:
            raise LossInputError(f"TokenFusionLoss: lamda must be >= 0, got {lamda}")
        self.lamda = float(lamda)
        self.ignore_index = int(ignore_index)

    def construct(self, outputs, mask):
        return tokenfusion_loss(outputs, mask, self.lamda, self.ignore_index)
