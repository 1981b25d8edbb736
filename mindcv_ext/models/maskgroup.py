"""MaskGroup (Zhong et al., arXiv 2203.14662): point backbone, semantic/offset heads, MaskScoreNet.

The paper builds on PointGroup (dvlab-research/PointGroup): a submanifold sparse-convolution
U-Net, a semantic head Linear(m -> classes) and an offset head Linear-BN-ReLU-Linear(m -> 3).
MindSpore has no sparse convolution, so the backbone here is a **point-based U-Net**: EdgeConv
layers (DGCNN-style: MLP on [x_i, x_j - x_i, p_j - p_i], max over the k neighbours) on the
input points and on two voxel-downsampled levels, PointNet++-style pooling between levels and
skip-concatenating unpooling back. It was chosen over a dense 3D U-Net because it keeps every
point at full resolution (a 32^3 dense grid over a 4 m room is 12.5 cm per cell, coarser than
the 2-5 cm detail instances need), its cost grows with the point count, not the room volume,
and its only irregular part, the neighbour search, is done on the host
(``mindcv_ext.seg3d.graph.build_point_graph``), leaving static-shape gathers, dense layers and
max reductions that compile on CPU and Ascend alike.

MaskScoreNet (no public code; reconstructed): a PointNet over each padded proposal (backbone
features + coordinates centred on the proposal) -> masked max-pooled global vector concatenated
back to every point -> per-point mask logit; and a proposal score logit from the masked max of
the mask-branch features. Padded proposals have static shapes (P, M) with a validity mask.

Inputs of :class:`MaskGroupNet` (all explicit tensors, so a train step can take them as a batch):
``features`` (N, in_channels) (RGB in [-1, 1] + xyz by default), the graph tensors of
``PointGraph.inputs()`` (coords_0..L-1 float32, knn_0..L-1, pool_1..L-1, unpool_1..L-1 int32)
and ``proposal_index`` (P, M) int32, ``proposal_valid`` (P, M) float32.
"""
from typing import Sequence

import mindspore as ms
from mindspore import nn, ops

from .registry import Family, register_model

__all__ = ["MaskGroupPoints", "MaskScoreNet", "MaskGroupNet", "EdgeConv", "masked_max"]

STATUS = "reconstruction (no public code), point backbone instead of sparse conv, tested on CPU"

_CFGS = {
    "maskgroup_tiny": {"channels": (16, 32, 48), "k": 8, "mask_hidden": 32},
    "maskgroup_small": {"channels": (32, 64, 96), "k": 16, "mask_hidden": 64},
    "maskgroup_base": {"channels": (64, 96, 128), "k": 16, "mask_hidden": 128},
}


def _bn(c):
    return nn.BatchNorm1d(c, momentum=0.9, eps=1e-5)


class _DenseBNReLU(nn.Cell):
    """Dense + BatchNorm + ReLU over the last axis of any-rank input."""

    def __init__(self, cin, cout):
        super().__init__()
        self.fc = nn.Dense(cin, cout, has_bias=False)
        self.bn = _bn(cout)
        self.relu = nn.ReLU()
        self.cout = cout

    def construct(self, x):
        shape = x.shape
        y = self.relu(self.bn(self.fc(x.reshape(-1, shape[-1]))))
        return y.reshape(shape[:-1] + (self.cout,))


class EdgeConv(nn.Cell):
    """``y_i = max_j MLP([x_i, x_j - x_i, p_j - p_i])`` over the neighbours ``j`` in ``index[i]``.

    ``index`` (N_out, k) points into the ``n_in`` source points (``x`` (n_in, C), ``p_src``
    (n_in, 3)); ``p_dst`` (N_out, 3) are the centres. With ``x_dst=None`` the centre term is
    left out (pooling from a finer level, PointNet++ set abstraction).
    """

    def __init__(self, cin, cout, with_centre: bool = True):
        super().__init__()
        self.with_centre = with_centre
        self.mlp = _DenseBNReLU((2 * cin if with_centre else cin) + 3, cout)

    def construct(self, x, p_src, p_dst, index):
        nb = ops.gather(x, index, 0)                                  # (N, k, C)
        rel = ops.gather(p_src, index, 0) - p_dst.expand_dims(1)      # (N, k, 3)
        if self.with_centre:
            centre = ops.broadcast_to(x.expand_dims(1), nb.shape)
            edge = ops.concat((centre, nb - centre, rel), -1)
        else:
            edge = ops.concat((nb, rel), -1)
        return ops.amax(self.mlp(edge), 1)


class MaskGroupPoints(nn.Cell):
    """Point U-Net + semantic and offset heads. Returns (sem_logits, offsets, point_features)."""

    def __init__(self, num_classes: int = 20, in_channels: int = 6, channels: Sequence[int] = (32, 64, 96)):
        super().__init__()
        self.num_levels = len(channels)
        self.stem = _DenseBNReLU(in_channels, channels[0])
        self.enc = nn.CellList([EdgeConv(c, c) for c in channels])
        self.down = nn.CellList([EdgeConv(channels[i], channels[i + 1], with_centre=False)
                                 for i in range(self.num_levels - 1)])
        self.up = nn.CellList([_DenseBNReLU(channels[i + 1] + channels[i], channels[i])
                               for i in range(self.num_levels - 1)])
        self.refine = EdgeConv(channels[0], channels[0])
        self.semantic_head = nn.Dense(channels[0], num_classes)
        self.offset_head = nn.SequentialCell([_DenseBNReLU(channels[0], channels[0]), nn.Dense(channels[0], 3)])
        self.out_channels = channels[0]

    def construct(self, features, *graph):
        n = self.num_levels
        coords, knn = graph[:n], graph[n:2 * n]
        pool, unpool = graph[2 * n:3 * n - 1], graph[3 * n - 1:4 * n - 2]
        x = self.stem(features)
        skips = []
        for lvl in range(n):
            if lvl:
                x = self.down[lvl - 1](x, coords[lvl - 1], coords[lvl], pool[lvl - 1])
            x = self.enc[lvl](x, coords[lvl], coords[lvl], knn[lvl])
            skips.append(x)
        for lvl in range(n - 2, -1, -1):
            x = self.up[lvl](ops.concat((ops.gather(x, unpool[lvl], 0), skips[lvl]), -1))
        x = self.refine(x, coords[0], coords[0], knn[0])
        return self.semantic_head(x), self.offset_head(x), x


def masked_max(x, valid):
    """Max over axis 1 of (P, M, C) where ``valid`` (P, M) is 1; 0 for empty rows."""
    v = valid.expand_dims(-1)
    return ops.amax(x * v + (v - 1.0) * 1e4, 1) * (ops.amax(valid, 1, keepdims=True) > 0).astype(x.dtype)


class MaskScoreNet(nn.Cell):
    """PointNet over padded proposals: per-point mask logits (P, M) and score logits (P,)."""

    def __init__(self, in_channels: int, hidden: int = 64):
        super().__init__()
        self.local = nn.SequentialCell([nn.Dense(in_channels + 3, hidden), nn.ReLU(), nn.Dense(hidden, hidden), nn.ReLU()])
        self.fuse = nn.SequentialCell([nn.Dense(2 * hidden, hidden), nn.ReLU()])
        self.mask_head = nn.Dense(hidden, 1)
        self.score_head = nn.SequentialCell([nn.Dense(hidden, hidden), nn.ReLU(), nn.Dense(hidden, 1)])

    def construct(self, point_features, coords, proposal_index, proposal_valid):
        feats = ops.gather(point_features, proposal_index, 0)          # (P, M, C)
        xyz = ops.gather(coords, proposal_index, 0)                     # (P, M, 3)
        count = proposal_valid.sum(1, keepdims=True).expand_dims(-1) + 1e-6
        centre = (xyz * proposal_valid.expand_dims(-1)).sum(1, keepdims=True) / count
        h = self.local(ops.concat((feats, xyz - centre), -1))
        g = ops.broadcast_to(masked_max(h, proposal_valid).expand_dims(1), h.shape)
        f = self.fuse(ops.concat((h, g), -1))
        mask_logits = self.mask_head(f).squeeze(-1)
        score_logits = self.score_head(masked_max(f, proposal_valid)).squeeze(-1)
        return mask_logits, score_logits


class MaskGroupNet(nn.Cell):
    """Backbone + heads (``.points``) and MaskScoreNet (``.mask_score``) in one Cell.

    ``construct(features, *graph, proposal_index, proposal_valid)`` returns
    (sem_logits (N, classes), offsets (N, 3), mask_logits (P, M), score_logits (P,)).
    """

    def __init__(self, num_classes: int = 20, in_channels: int = 6, channels: Sequence[int] = (32, 64, 96),
                 mask_hidden: int = 64, k: int = 16):
        super().__init__()
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive widths, got {channels}")
        self.k = k   # neighbours per point the graph should be built with
        self.in_channels = in_channels
        self.points = MaskGroupPoints(num_classes, in_channels, channels)
        self.mask_score = MaskScoreNet(self.points.out_channels, mask_hidden)
        self.num_graph_inputs = 4 * len(channels) - 2

    def construct(self, features, *inputs):
        graph = inputs[:self.num_graph_inputs]
        proposal_index, proposal_valid = inputs[self.num_graph_inputs], inputs[self.num_graph_inputs + 1]
        sem_logits, offsets, feats = self.points(features, *graph)
        mask_logits, score_logits = self.mask_score(feats, graph[0], proposal_index, proposal_valid)
        return sem_logits, offsets, mask_logits, score_logits


def _family_example_inputs(net):
    return example_inputs(net, num_points=64, num_proposals=2, proposal_points=8)


def _build(name, num_classes=20, in_channels=6, **kwargs):
    cfg = dict(_CFGS[name])
    cfg.update(kwargs)
    return MaskGroupNet(num_classes=num_classes, in_channels=in_channels, **cfg)


@register_model
def maskgroup_tiny(num_classes=6, in_channels=6, **kwargs):
    """3-level point U-Net 16/32/48, k = 8 (CPU tests and the procedural-room demo)."""
    return _build("maskgroup_tiny", num_classes, in_channels, **kwargs)


@register_model
def maskgroup_small(num_classes=20, in_channels=6, **kwargs):
    """3-level point U-Net 32/64/96, k = 16 (the CPU demonstration size of the method)."""
    return _build("maskgroup_small", num_classes, in_channels, **kwargs)


@register_model
def maskgroup_base(num_classes=20, in_channels=6, **kwargs):
    """3-level point U-Net 64/96/128, k = 16 (ScanNet-sized runs)."""
    return _build("maskgroup_base", num_classes, in_channels, **kwargs)


def example_inputs(net: MaskGroupNet, num_points: int = 256, num_proposals: int = 4, proposal_points: int = 32,
                   seed: int = 0):
    """Random but well-formed inputs for ``net`` (export, shape checks): a point cloud in a 2 m
    cube with a neighbour graph of the layout ``mindcv_ext.seg3d.graph`` builds, random
    features of ``net.in_channels`` and random proposals. Returns a tuple of Tensors in ``MaskGroupNet.construct`` order."""
    import numpy as np
    from scipy.spatial import cKDTree
    rng = np.random.default_rng(seed)
    n_levels = net.points.num_levels
    coords = [rng.random((num_points, 3)).astype(np.float32) * 2]
    pool, unpool = [], []
    for lvl in range(1, n_levels):
        keys = np.floor(coords[-1] / (0.25 * 2 ** lvl)).astype(np.int64)
        _, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        counts = np.bincount(inverse)
        centres = np.stack([np.bincount(inverse, coords[-1][:, d]) for d in range(3)], 1) / counts[:, None]
        k = min(net.k, len(coords[-1]))
        pool.append(cKDTree(coords[-1]).query(centres, k=k)[1].reshape(len(centres), k)[:, np.arange(net.k) % k])
        unpool.append(inverse)
        coords.append(centres.astype(np.float32))
    knn = []
    for pts in coords:
        k = min(net.k, len(pts))
        knn.append(cKDTree(pts).query(pts, k=k)[1].reshape(len(pts), k)[:, np.arange(net.k) % k])
    feats = rng.uniform(-1, 1, (num_points, net.in_channels)).astype(np.float32)
    index = rng.integers(0, num_points, (num_proposals, proposal_points)).astype(np.int32)
    valid = (rng.random((num_proposals, proposal_points)) < 0.8).astype(np.float32)
    arrays = [feats] + coords + [a.astype(np.int32) for a in knn + pool + unpool] + [index, valid]
    return tuple(ms.Tensor(a) for a in arrays)


FAMILY = Family(paper="MaskGroup: Hierarchical Point Grouping and Masking for 3D Instance Segmentation "
                      "(arXiv 2203.14662)", status=STATUS, example_inputs=_family_example_inputs)
