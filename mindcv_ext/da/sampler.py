"""Class-aware sampling with static shapes (CAS of CAN, reused by the SFDA-DE third-party code).

Each iteration draws ``classes_per_batch`` distinct kept classes and ``samples_per_class`` target
samples of each (pseudo-label), in class blocks, so every batch has the same shape
(``classes_per_batch * samples_per_class``). Where fewer classes are kept than
``classes_per_batch`` (the third-party code then shrinks the batch), the batch is padded with
repeated kept classes whose ``class_mask`` entry is 0, so the CDD can ignore them and shapes stay
static. A class with fewer samples than ``samples_per_class`` is drawn with replacement.
Batches are a pure function of ``(seed, loop, step)``, which makes resumed runs exact.
"""
from typing import Iterator, Sequence, Tuple

import numpy as np


class SamplerError(ValueError):
    """Bad class-aware sampler arguments."""


class ClassAwareSampler:
    def __init__(self, labels: np.ndarray, classes: Sequence[int], classes_per_batch: int,
                 samples_per_class: int, seed: int = 0, loop: int = 0):
        if classes_per_batch < 1 or samples_per_class < 1:
            raise SamplerError(f"classes_per_batch and samples_per_class must be >= 1, got "
                               f"{classes_per_batch}, {samples_per_class}")
        labels = np.asarray(labels, np.int64)
        self.classes = [int(c) for c in classes]
        if not self.classes:
            raise SamplerError("no class is kept after filtering; nothing to sample (lower the filtering "
                               "threshold or min samples per class)")
        self.members = {c: np.flatnonzero(labels == c) for c in self.classes}
        empty = [c for c, idx in self.members.items() if len(idx) == 0]
        if empty:
            raise SamplerError(f"kept classes {empty} have no sample with that pseudo-label")
        self.classes_per_batch, self.samples_per_class = classes_per_batch, samples_per_class
        self.seed, self.loop = seed, loop

    @property
    def batch_size(self) -> int:
        return self.classes_per_batch * self.samples_per_class

    def rng(self, step: int) -> np.random.Generator:
        """The generator of batch ``step``; also use it for the surrogate source samples."""
        return np.random.default_rng((self.seed, self.loop, step))

    def batch(self, step: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
        """(indices (C*S,), class_ids (C,), class_mask (C,) float32, rng for this step)."""
        rng = self.rng(step)
        num = self.classes_per_batch
        kept = np.asarray(self.classes)
        if len(kept) >= num:
            class_ids = rng.choice(kept, num, replace=False)
            mask = np.ones(num, np.float32)
        else:
            class_ids = np.resize(rng.permutation(kept), num)
            mask = (np.arange(num) < len(kept)).astype(np.float32)
        indices = []
        for c in class_ids:
            idx = self.members[int(c)]
            indices.append(rng.choice(idx, self.samples_per_class, replace=len(idx) < self.samples_per_class))
        return np.concatenate(indices).astype(np.int64), class_ids.astype(np.int64), mask, rng

    def iterate(self, num_steps: int, start: int = 0) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                         np.random.Generator]]:
        for step in range(start, num_steps):
            yield self.batch(step)
