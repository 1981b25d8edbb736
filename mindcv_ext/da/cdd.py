"""Contrastive Domain Discrepancy (CDD) over class-aware blocks, as used by SFDA-DE.

CDD comes from CAN (Kang et al., CVPR 2019); SFDA-DE applies it between surrogate source features
(sampled from the estimated source Gaussians) and pseudo-labelled target features. Facts from the
third-party implementation CvNoob/SFDA-DE (``discrepancy/cdd.py``):

* for classes (c1, c2): D(c1, c2) = mean k(S_c1, S_c1) + mean k(T_c2, T_c2) - 2 mean k(S_c1, T_c2)
  (biased MMD^2, diagonals included);
* the kernel is summed over layers (features, classifier probabilities) and over ``kernel_num``
  Gaussian bandwidths per layer, exp(-d / g_q) with g_q = g * mul^(q - num // 2), where g is the
  mean squared distance over the distinct pairs of S_c1 u T_c2 (one g per class pair and layer);
* bandwidths are detached and clamped at >= 1e-5, d / g is clamped to [1e-5, 1e5];
* loss = intra - inter, intra = sum_c D(c, c) / K, inter = sum_{c != c'} D(c, c') / (K (K - 1)),
  the sums over the classes in the batch and K the dataset's number of classes (a CAN quirk that
  only rescales the loss).

Inputs are in class blocks of static size: ``classes_per_batch * samples_per_class`` rows, block c
holding class ``class_ids[c]`` for both domains. ``class_mask`` (C,) zeroes padded blocks.
Pure MindSpore ops with static shapes, so it runs inside a compiled train step.
"""
from typing import Sequence

import numpy as np
import mindspore as ms
from mindspore import nn, ops


class CDDError(ValueError):
    """Bad CDD configuration."""


class CDD(nn.Cell):
    def __init__(self, num_classes: int, classes_per_batch: int, samples_per_class: int,
                 kernel_num: Sequence[int] = (5, 5), kernel_mul: Sequence[float] = (2.0, 2.0),
                 intra_only: bool = False):
        super().__init__()
        if len(kernel_num) != len(kernel_mul) or not kernel_num:
            raise CDDError(f"kernel_num and kernel_mul need one entry per layer, got {kernel_num}, {kernel_mul}")
        if classes_per_batch < 1 or samples_per_class < 2:
            raise CDDError(f"need classes_per_batch >= 1 and samples_per_class >= 2, got "
                           f"{classes_per_batch}, {samples_per_class}")
        if num_classes < classes_per_batch:
            raise CDDError(f"num_classes ({num_classes}) < classes_per_batch ({classes_per_batch})")
        self.num_classes, self.c, self.s = num_classes, classes_per_batch, samples_per_class
        self.num_layers = len(kernel_num)
        self.intra_only = intra_only or num_classes == 1
        # per layer: the bandwidth multipliers mul^(q - num // 2), q = 0..num-1
        self.scales = [ms.Tensor(np.array([float(m) ** (q - n // 2) for q in range(n)], np.float32))
                       for n, m in zip(kernel_num, kernel_mul)]
        s = samples_per_class
        self.pair_count = float(4 * s * s - 2 * s)  # distinct ordered pairs in S_c1 u T_c2
        self.off_diag = ms.Tensor(1.0 - np.eye(classes_per_batch, dtype=np.float32))

    def _sq_dist(self, a, b):
        return ops.sum(ops.square(ops.expand_dims(a, -2) - ops.expand_dims(b, -3)), -1)

    def _kernel(self, dist, gamma):
        """sum_q exp(-clamp(dist / gamma_q)); gamma has a leading bandwidth axis."""
        return ops.sum(ops.exp(-ops.clamp(ops.expand_dims(dist, 0) / gamma, 1e-5, 1e5)), 0)

    def _layer(self, source, target, scales):
        c, s = self.c, self.s
        src, tgt = source.reshape(c, s, -1), target.reshape(c, s, -1)
        d_ss = self._sq_dist(src, src)                                  # (C, S, S)
        d_tt = self._sq_dist(tgt, tgt)                                  # (C, S, S)
        d_st = self._sq_dist(source, target).reshape(c, s, c, s)        # (C1, S, C2, S)
        block_st = ops.sum(d_st, (1, 3))                                # (C1, C2)
        gamma = (ops.sum(d_ss, (1, 2)).reshape(c, 1) + ops.sum(d_tt, (1, 2)).reshape(1, c)
                 + 2.0 * block_st) / self.pair_count
        gamma = ops.stop_gradient(gamma)
        gammas = ops.clamp(scales.reshape(-1, 1, 1) * ops.expand_dims(gamma, 0), 1e-5, None)  # (Q, C1, C2)
        q = gammas.shape[0]
        k_st = self._kernel(d_st, gammas.reshape(q, c, 1, c, 1))
        k_ss = self._kernel(d_ss.reshape(c, 1, s, s), gammas.reshape(q, c, c, 1, 1))
        k_tt = self._kernel(d_tt.reshape(1, c, s, s), gammas.reshape(q, c, c, 1, 1))
        return ops.mean(k_ss, (2, 3)), ops.mean(k_tt, (2, 3)), ops.mean(k_st, (1, 3))

    def construct(self, source_layers, target_layers, class_mask=None):
        """Returns (cdd, intra, inter); ``*_layers`` are tuples with one (C*S, D_l) tensor per layer."""
        e_ss, e_tt, e_st = 0.0, 0.0, 0.0
        for i in range(self.num_layers):
            ss, tt, st = self._layer(source_layers[i], target_layers[i], self.scales[i])
            e_ss, e_tt, e_st = e_ss + ss, e_tt + tt, e_st + st
        mmd = e_ss + e_tt - 2.0 * e_st                                  # (C1, C2)
        if class_mask is None:
            pair_mask = ops.ones((self.c, self.c), ms.float32)
        else:
            pair_mask = ops.expand_dims(class_mask, 1) * ops.expand_dims(class_mask, 0)
        eye = 1.0 - self.off_diag
        intra = ops.sum(mmd * pair_mask * eye) / self.num_classes
        if self.intra_only:
            return intra, intra, ops.zeros((), ms.float32)
        inter = ops.sum(mmd * pair_mask * self.off_diag) / (self.num_classes * (self.num_classes - 1))
        return intra - inter, intra, inter


class SFDALoss(nn.Cell):
    """CDD between surrogate source features and a target batch, through a frozen classifier.

    ``net`` exposes ``features_and_logits(x)`` and ``forward_head(f)`` (e.g. ``ShotNet``).
    construct(target_images, surrogate_features, class_mask) -> weighted CDD (scalar).
    The surrogate features are constants (no gradient); their probabilities come from the same
    classifier, which is excluded from the optimiser.
    """

    def __init__(self, net: nn.Cell, cdd: CDD, weight: float = 1.0):
        super().__init__(auto_prefix=False)  # the net's parameter names stay those of its checkpoints
        self.net, self.cdd, self.weight = net, cdd, weight

    def construct(self, target_images, surrogate_features, class_mask):
        t_feat, t_logits = self.net.features_and_logits(target_images)
        s_feat = ops.stop_gradient(surrogate_features)
        s_prob = ops.stop_gradient(ops.softmax(self.net.forward_head(s_feat), -1))
        loss, _, _ = self.cdd((s_feat, s_prob), (t_feat, ops.softmax(t_logits, -1)), class_mask)
        return self.weight * loss
