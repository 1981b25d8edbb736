"""Quantizers and per-layer scale plans of AdderNet post-training quantization.

Formulas from the official MindSpore AdderQuant code ( b bits,
``L = 2^b - 1``):

* weights, signed: ``q_w = clip(round(w * L / (2 s)), -2^(b-1), 2^(b-1) - 1)``, value ``q_w * 2 s / L``;
* activations, unsigned (adder inputs follow a ReLU): ``q_a = clip(round(x * L / s), 0, L)``,
  value ``q_a * s / L``.

The weight step is twice the activation step, so inside one scale ``s``
``|x_hat - w_hat| = s / L * |q_a - 2 q_w|``: the adder layer becomes an integer L1 distance scaled
once per output. Rounding is half-to-even (``np.round`` / ``ops.round``), as in the reference.

A *plan* fixes, for one adder layer, which scale each output channel uses:

* ``shared`` (the earlier AdderNet scheme): one scale ``s = max(max|W|, a_r)`` for the
  whole layer and its input, no clamp;
* ``redistribute`` (official AdderQuant code): the kernels are clustered into groups by ``max_j |W[o, j]|``
  (1-D k-means, seeded); a group whose range ``m_g`` exceeds the activation range ``a_r`` gets
  ``s_g = a_r`` and its weights are clamped to ``[-a_r, a_r]``, the others keep ``s_g = m_g`` (or
  ``a_r`` with ``small_group_scale="act_range"``, the paper's ablation).

The clamp is lossless for inputs in ``[0, s]`` thanks to a per-channel constant
``b_o = -sum_j max(|W[o, j]| - s_o, 0)`` added to the output (official AdderQuant code): for ``0 <= x <= s`` and
``|w| > s``, ``|x - w| = |x - clip(w)| + (|w| - s)``.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np
import mindspore as ms
from mindspore import Tensor, ops

__all__ = ["WeightQuantizer", "ActivationQuantizer", "abs_quantile", "cluster_kernels", "AdderLayerPlan",
           "plan_shared", "plan_redistribute", "clamp_to_plan", "SCALE_FLOOR", "check_bits"]

SCALE_FLOOR = 1e-3  # the official code floors the activation range at 1e-3; scales use the same floor
MAX_BITS = 16


def check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= int(bits) <= MAX_BITS:
        raise ValueError(f"bit width must be an integer in [2, {MAX_BITS}], got {bits!r}")
    return int(bits)


def _check_scale(scale):
    s = np.asarray(scale, np.float64)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"quantization scales must be finite and positive, got {scale!r}")
    return s


class WeightQuantizer:
    """Signed ``b``-bit weight codes on the step ``2 s / (2^b - 1)``."""

    def __init__(self, bits: int):
        self.bits = check_bits(bits)
        self.levels = 2 ** self.bits - 1
        self.qmin, self.qmax = -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1

    def step(self, scale):
        return 2.0 * _check_scale(scale) / self.levels

    def codes(self, w: np.ndarray, scale) -> np.ndarray:
        """int32 codes of ``w``; ``scale`` is a number or broadcasts against ``w``."""
        w = np.asarray(w, np.float64)
        q = np.round(w * (self.levels / (2.0 * _check_scale(scale))))
        return np.clip(q, self.qmin, self.qmax).astype(np.int32)

    def dequantize(self, q: np.ndarray, scale) -> np.ndarray:
        return np.asarray(q, np.float64) * self.step(scale)


class ActivationQuantizer:
    """Unsigned ``b``-bit activation codes on the step ``s / (2^b - 1)``; works on numpy arrays and
    on MindSpore Tensors (the latter inside a Cell's ``construct``)."""

    def __init__(self, bits: int):
        self.bits = check_bits(bits)
        self.levels = 2 ** self.bits - 1
        self.qmin, self.qmax = 0, self.levels

    def step(self, scale):
        return _check_scale(scale) / self.levels

    def factor(self, scale) -> float:
        """The float32 multiplier ``L / s`` applied to the input before rounding."""
        return float(np.float32(self.levels / float(_check_scale(scale))))

    def codes(self, x, scale):
        """int32 codes of ``x`` (numpy in -> numpy out, Tensor in -> Tensor out)."""
        f = self.factor(scale)
        if isinstance(x, Tensor):
            return self.codes_tensor(x, f)
        q = np.round(np.asarray(x, np.float32) * np.float32(f))
        return np.clip(q, self.qmin, self.qmax).astype(np.int32)

    def codes_tensor(self, x, factor: float):
        q = ops.round(x * factor)
        return ops.cast(ops.clip_by_value(q, 0.0, float(self.qmax)), ms.int32)

    def dequantize(self, q, scale) -> np.ndarray:
        return np.asarray(q, np.float64) * self.step(scale)


def abs_quantile(x: np.ndarray, quantile: float = 0.9997) -> float:
    """The activation-range statistic of one calibration batch (official AdderQuant code): the value at index
    ``int((round(n * q) - 1) * q)`` of the ascending ``|x|`` (``np.partition``, no full sort).
    ``quantile = 1`` gives the plain maximum."""
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"act_quantile must be in (0, 1], got {quantile}")
    t = np.abs(np.asarray(x, np.float32)).ravel()
    if t.size == 0:
        raise ValueError("cannot take a quantile of an empty activation tensor")
    if quantile == 1.0:
        return float(t.max())
    idx = int((round(t.size * quantile) - 1) * quantile)
    idx = min(max(idx, 0), t.size - 1)
    return float(np.partition(t, idx)[idx])


def cluster_kernels(weight: np.ndarray, groups: int, seed: int = 0) -> np.ndarray:
    """Group label (0..groups-1) of every output channel of ``weight`` (Cout, ...).

    1-D k-means on ``max_j |W[o, j]|`` (k-means++, 10 starts, 300 iterations, tol 1e-4, seeded; the
    official code leaves the seed unset). Labels are renumbered by increasing centre, so
    the result depends only on the data and the seed. Raises when a group would be empty.
    """
    from sklearn.cluster import KMeans

    w = np.asarray(weight, np.float64)
    if w.ndim < 2:
        raise ValueError(f"weight must be (Cout, ...), got shape {w.shape}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    feature = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    if groups == 1:
        return np.zeros(w.shape[0], np.int64)
    distinct = np.unique(feature).size
    if w.shape[0] < groups or distinct < groups:
        raise ValueError(f"cannot split {w.shape[0]} kernels ({distinct} distinct ranges) into {groups} "
                         f"non-empty groups; lower quant.groups")
    km = KMeans(n_clusters=groups, init="k-means++", n_init=10, max_iter=300, tol=1e-4, random_state=seed)
    labels = km.fit_predict(feature[:, None])
    order = np.argsort(km.cluster_centers_[:, 0], kind="stable")
    remap = np.empty(groups, np.int64)
    remap[order] = np.arange(groups)
    labels = remap[labels]
    counts = np.bincount(labels, minlength=groups)
    if np.any(counts == 0):
        raise ValueError(f"k-means left group(s) {np.flatnonzero(counts == 0).tolist()} empty "
                         f"({groups} groups over {w.shape[0]} kernels)")
    return labels


@dataclass
class AdderLayerPlan:
    """Scales of one adder layer: ``labels[o]`` is channel o's group, ``scales[g]`` the group's scale
    (shared by its weights and by the input it meets), ``clamped[g]`` whether the group's weights
    are clamped to ``[-scales[g], scales[g]]``."""
    method: str
    labels: np.ndarray
    scales: np.ndarray
    clamped: np.ndarray
    act_range: float

    @property
    def groups(self) -> int:
        return int(self.scales.size)

    @property
    def channel_scales(self) -> np.ndarray:
        return self.scales[self.labels]


def _act_range(act_range: float) -> float:
    a = float(act_range)
    if not np.isfinite(a) or a < 0:
        raise ValueError(f"activation range must be finite and >= 0, got {act_range!r}")
    return max(a, SCALE_FLOOR)


def plan_shared(weight: np.ndarray, act_range: float) -> AdderLayerPlan:
    """One scale for the layer's weights and input: ``max(max|W|, a_r)``, no clamp (official AdderQuant code)."""
    a = _act_range(act_range)
    s = max(float(np.abs(weight).max()), a, SCALE_FLOOR)
    return AdderLayerPlan("shared", np.zeros(weight.shape[0], np.int64), np.array([s]), np.array([False]), a)


def plan_redistribute(weight: np.ndarray, act_range: float, groups: int = 4, seed: int = 0,
                      small_group_scale: str = "weight") -> AdderLayerPlan:
    """Kernel groups, one scale per group, clamp of the groups wider than the activations (official AdderQuant code)."""
    if small_group_scale not in ("weight", "act_range"):
        raise ValueError(f"small_group_scale must be 'weight' or 'act_range', got {small_group_scale!r}")
    a = _act_range(act_range)
    w = np.abs(np.asarray(weight, np.float64)).reshape(weight.shape[0], -1)
    labels = cluster_kernels(weight, groups, seed)
    scales, clamped = np.zeros(groups), np.zeros(groups, bool)
    for g in range(groups):
        m = float(w[labels == g].max())
        if m > a:
            scales[g], clamped[g] = a, True
        else:
            scales[g] = a if small_group_scale == "act_range" else max(m, SCALE_FLOOR)
    return AdderLayerPlan("redistribute", labels, scales, clamped, a)


def clamp_to_plan(weight: np.ndarray, plan: AdderLayerPlan, channel_scales: Optional[np.ndarray] = None):
    """``(clamped weight, per-channel output constant b)`` with ``b_o = -sum_j max(|W[o,j]| - s_o, 0)``.

    Channels of unclamped groups have ``|W| <= s_o`` and get ``b_o = 0``.
    """
    w = np.asarray(weight, np.float64)
    s = plan.channel_scales if channel_scales is None else np.asarray(channel_scales, np.float64)
    sb = s.reshape((-1,) + (1,) * (w.ndim - 1))
    clamped = np.clip(w, -sb, sb)
    bias = -np.maximum(np.abs(w) - sb, 0.0).reshape(w.shape[0], -1).sum(axis=1)
    return clamped, bias
