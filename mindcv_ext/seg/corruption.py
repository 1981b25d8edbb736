"""Do low scores mark corrupted tokens? AUROC of "low score" against a known corruption mask (NumPy).

Pixel masks are brought to the token grid by the fraction of corrupted pixels inside each token's
stride cell (``token_mask``). ``corruption_auroc`` ranks tokens by ``-score`` (lower score = more
likely substituted) or, with ``threshold``, by the hard decision ``score < threshold`` (whose AUROC
is the balanced accuracy of that decision).
"""
import numpy as np
from scipy.stats import rankdata


class AurocInputError(ValueError):
    """Inputs the AUROC cannot be computed from."""


def auroc(labels, values) -> float:
    """Area under the ROC curve of ``values`` as a detector of ``labels == 1`` (Mann-Whitney U with
    average ranks for ties)."""
    labels = np.asarray(labels).astype(bool).ravel()
    values = np.asarray(values, np.float64).ravel()
    if labels.shape != values.shape:
        raise AurocInputError(f"auroc: {labels.size} labels but {values.size} values")
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise AurocInputError(f"auroc: both classes are needed (got {n_pos} positives, {n_neg} negatives)")
    ranks = rankdata(values)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def token_mask(pixel_mask, grid, min_fraction: float = 0.5) -> np.ndarray:
    """(B, H, W) boolean pixel mask -> (B, h*w) token mask: a token is corrupted when at least
    ``min_fraction`` of the pixels of its cell (H/h x W/w) are."""
    m = np.asarray(pixel_mask, np.float64)
    if m.ndim != 3:
        raise AurocInputError(f"token_mask: (B, H, W) mask expected, got {m.shape}")
    h, w = grid
    b, hh, ww = m.shape
    if hh % h or ww % w:
        raise AurocInputError(f"token_mask: a {hh}x{ww} mask does not divide into a {h}x{w} token grid")
    frac = m.reshape(b, h, hh // h, w, ww // w).mean(axis=(2, 4))
    return (frac >= min_fraction).reshape(b, h * w)


def corruption_auroc(scores, pixel_mask, grid, threshold: float = None, min_fraction: float = 0.5) -> float:
    """AUROC of low ``scores`` (B, h*w) against the corruption ``pixel_mask`` (B, H, W)."""
    scores = np.asarray(scores, np.float64)
    labels = token_mask(pixel_mask, grid, min_fraction)
    if scores.shape != labels.shape:
        raise AurocInputError(f"corruption_auroc: scores {scores.shape} vs token grid {labels.shape}")
    values = (scores < threshold).astype(np.float64) if threshold is not None else -scores
    return auroc(labels, values)
