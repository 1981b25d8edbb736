"""Host-side pieces of one SFDA-DE adaptation loop (third-party order, CvNoob/SFDA-DE ``anchor_solver.py``):
extract target features in eval mode -> anchor-initialised spherical k-means -> filtering ->
source Gaussian estimation from the usable samples -> class-aware sampler. The training steps
(``cdd.SFDALoss`` in a train step) run between two refreshes.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import mindspore as ms
from mindspore import nn

from .clustering import ClusteringResult, spherical_kmeans
from .estimation import SourceGaussians, estimate_source_gaussians
from .filtering import Selection, select
from .sampler import ClassAwareSampler


def extract_features(net: nn.Cell, images: np.ndarray, batch_size: int = 256) -> Tuple[np.ndarray, np.ndarray]:
    """(features, logits) of ``images`` with ``net.features_and_logits`` in eval mode (BN running stats).

    Use the deterministic test transform for ``images`` (the third-party clustering loader reuses
    the random training transform; a fixed transform gives stable pseudo-labels).
    """
    was_training = net.training
    net.set_train(False)
    feats, logits = [], []
    for start in range(0, len(images), batch_size):
        f, z = net.features_and_logits(ms.Tensor(np.ascontiguousarray(images[start:start + batch_size])))
        feats.append(f.asnumpy())
        logits.append(z.asnumpy())
    net.set_train(was_training)
    return np.concatenate(feats), np.concatenate(logits)


@dataclass
class LoopState:
    clustering: ClusteringResult
    selection: Selection
    gaussians: SourceGaussians
    sampler: ClassAwareSampler


def refresh(features: np.ndarray, anchors: np.ndarray, classes_per_batch: int, samples_per_class: int,
            threshold: float = 1.0, min_samples: int = 5, eps: float = 1e-3, variance_mult: float = 1.0,
            covariance: str = "diag", shrinkage: Optional[float] = None, seed: int = 0, loop: int = 0) -> LoopState:
    """Pseudo-labels, source estimate and sampler for one loop from the current target features."""
    num_classes = len(anchors)
    clustering = spherical_kmeans(features, anchors, eps=eps)
    selection = select(clustering.labels, clustering.dist_to_center, num_classes, threshold, min_samples)
    usable = selection.usable_mask
    gaussians = estimate_source_gaussians(features[usable], selection.labels[usable], anchors, selection.classes,
                                          variance_mult, covariance, shrinkage)
    labels = np.where(np.isin(selection.labels, gaussians.classes), selection.labels, -1)
    sampler = ClassAwareSampler(labels, gaussians.classes, classes_per_batch, samples_per_class, seed, loop)
    return LoopState(clustering, selection, gaussians, sampler)
