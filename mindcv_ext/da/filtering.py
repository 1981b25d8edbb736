"""Pseudo-label filtering (SFDA-DE third-party code CvNoob/SFDA-DE, ``solver/utils.py``).

A target sample is kept when its cosine distance to its cluster centre is below ``threshold``
(0.078 in the VisDA-2017 config, 0.5 for Office-31, 1.0 = keep all); a class is kept when at least
``min_samples`` (``MIN_SN_PER_CLASS``, 5 by default) of its samples survive.
"""
from dataclasses import dataclass
from typing import List

import numpy as np


class FilteringError(ValueError):
    """Bad filtering arguments."""


@dataclass
class Selection:
    labels: np.ndarray      # (N,) pseudo-label, -1 where the sample or its class is dropped
    sample_mask: np.ndarray  # (N,) bool: passed the distance threshold
    classes: List[int]      # kept classes, ascending

    @property
    def kept_ratio(self) -> float:
        """Fraction of target samples that pass the distance threshold (the third-party 'select' ratio)."""
        return float(np.mean(self.sample_mask)) if len(self.sample_mask) else 0.0

    @property
    def usable_mask(self) -> np.ndarray:
        return self.labels >= 0


def filter_samples(dist_to_center: np.ndarray, threshold: float) -> np.ndarray:
    if not 0.0 <= threshold <= 1.0:
        raise FilteringError(f"filtering threshold must be in [0, 1] (cosine distance), got {threshold}")
    return np.asarray(dist_to_center) < threshold


def filter_classes(labels: np.ndarray, mask: np.ndarray, num_classes: int, min_samples: int) -> List[int]:
    if min_samples < 2:
        raise FilteringError(f"min_samples per class must be >= 2 (a spread is estimated), got {min_samples}")
    counts = np.bincount(np.asarray(labels)[np.asarray(mask)], minlength=num_classes)
    return [c for c in range(num_classes) if counts[c] >= min_samples]


def select(labels: np.ndarray, dist_to_center: np.ndarray, num_classes: int, threshold: float = 1.0,
           min_samples: int = 5) -> Selection:
    """Apply both filters; returns pseudo-labels with -1 for every unusable sample."""
    labels = np.asarray(labels, np.int64)
    mask = filter_samples(dist_to_center, threshold)
    classes = filter_classes(labels, mask, num_classes, min_samples)
    usable = mask & np.isin(labels, classes)
    return Selection(np.where(usable, labels, -1), mask, classes)
