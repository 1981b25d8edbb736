"""Vision GNN (ViG, arXiv 2206.00272): isotropic ViG-Ti/S/B and Pyramid ViG-Ti/S/M/B.

The layout, block schedules and parameter names follow the official PyTorch release
(huawei-noah/Efficient-AI-Backbones, ``vig_pytorch``) as read from that code,
so an official state dict maps onto these Cells by renaming BatchNorm entries only
(``convert_official_state_dict``).

Every block is a ``Grapher`` (graph convolution over a k-nearest-neighbour graph of the patch
features) followed by an ``FFN``. The kNN graph is rebuilt for every image from L2-normalised
features; neighbours are ranked by squared distance, computed with the expansion
``|x|^2 - 2 x.y + |y|^2`` as the reference does; ties are broken by the smaller key index
(the documented order of ``ops.topk(sorted=True)``), so the same input always gives the same graph.

Inputs other than 224x224 work: the position embedding and the frozen relative-position term
are resized (PyTorch-compatible bicubic, align_corners=False) to the feature size at hand, and
each Grapher lowers its dilation (and, for very small maps, its k) so that ``k * dilation``
never exceeds the number of key nodes.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import HeNormal

from ..layers.drop_path import DropPath
from ..layers.gelu import GELU, set_gelu_export_mode
from ..layers.pos_embed import resize_axis, resize_axis_np
from .registry import Family, register_model

__all__ = [
    "DeepGCN", "PyramidDeepGCN", "Grapher", "FFN", "DyGraphConv2d", "MRConv2d", "DenseDilatedKnnGraph",
    "convert_official_state_dict", "prepare_for_export", "relative_pos_table", "default_cfgs",
    "isotropic_schedule", "pyramid_schedule", "nearest_keys", "effective_k_dilation",
]

# ------------------------------------------------------------------------------------------------
# Variant table (values from the official vig.py / pyramid_vig.py).
# ------------------------------------------------------------------------------------------------
_ISOTROPIC = {
    "vig_ti_224_gelu": {"channels": 192, "blocks": 12},
    "vig_s_224_gelu": {"channels": 320, "blocks": 16},
    "vig_b_224_gelu": {"channels": 640, "blocks": 16},
}
_PYRAMID = {
    "pvig_ti_224_gelu": {"channels": (48, 96, 240, 384), "blocks": (2, 2, 6, 2)},
    "pvig_s_224_gelu": {"channels": (80, 160, 400, 640), "blocks": (2, 2, 6, 2)},
    "pvig_m_224_gelu": {"channels": (96, 192, 384, 768), "blocks": (2, 2, 16, 2)},
    "pvig_b_224_gelu": {"channels": (128, 256, 512, 1024), "blocks": (2, 2, 18, 2)},
}
_PYRAMID_REDUCE = (4, 2, 1, 1)   # key-node pooling per stage
_BASE_SIZE = 224                 # the resolution the parameters are laid out for
_HEAD_DIM = 1024                 # hidden width of the prediction head (hard-coded upstream)
_DEFAULT_K = 9

# Evaluation preprocessing of the released checkpoints (official ViG code).
default_cfgs = {
    name: {"input_size": (3, 224, 224), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
           "interpolation": "bicubic", "crop_pct": 0.95 if name == "pvig_b_224_gelu" else 0.9,
           "first_conv": "stem.convs.0", "classifier": "prediction.4"}
    for name in list(_ISOTROPIC) + list(_PYRAMID)
}


# ------------------------------------------------------------------------------------------------
# Small builders and numeric helpers.
# ------------------------------------------------------------------------------------------------
def _conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """Conv with bias and symmetric padding; Kaiming-normal (fan_in, ReLU gain) weights, zero bias."""
    return nn.Conv2d(cin, cout, kernel, stride=stride, pad_mode="pad", padding=kernel // 2, group=groups,
                     has_bias=True, weight_init=HeNormal(mode="fan_in", nonlinearity="relu"), bias_init="zeros")


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9)


# bicubic resizing of position terms (PyTorch's interpolate rule): shared with ViT/Swin
_resize_axis_np, _resize_axis = resize_axis_np, resize_axis


def _sincos_2d(channels: int, grid: int) -> np.ndarray:
    """2-D sin-cos position table (grid*grid, channels), float64, row-major nodes.

    The first half of the channels encodes the column (x) coordinate, the second half the row;
    each half is [sin(p * w_i), cos(p * w_i)] with w_i = 10000 ** (-i / (channels / 4)).
    """
    if channels % 4:
        raise ValueError(f"the sin-cos position table needs channels divisible by 4, got {channels}")
    quarter = channels // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    rows, cols = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")

    def encode(pos):
        angles = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([encode(cols), encode(rows)], axis=1)


def relative_pos_table(channels: int, grid: int, reduce_ratio: int) -> np.ndarray:
    """The frozen relative-position term of a pyramid Grapher, shape (1, N, N // r^2), float32.

    ``-(2 / C) P P^T`` (P = 2-D sin-cos table of the grid) with its key axis bicubic-resized from
    N to N / r^2 (official ViG code). It is added to the squared feature distances.
    """
    table = _sincos_2d(channels, grid)
    n = grid * grid
    rel = (2.0 * table @ table.T / channels).astype(np.float32).astype(np.float64)
    rel = _resize_axis_np(rel, 1, n // (reduce_ratio * reduce_ratio))
    return (-rel[None]).astype(np.float32)


def _l2_normalize(x, axis: int):
    norm = ops.sqrt((x * x).sum(axis, keepdims=True))
    return x / ops.maximum(norm, 1e-12)


def effective_k_dilation(k: int, dilation: int, num_keys: int) -> Tuple[int, int]:
    """(k, dilation) actually used with ``num_keys`` candidate nodes: k * dilation <= num_keys."""
    k_eff = max(1, min(k, num_keys))
    d_eff = max(1, min(dilation, num_keys // k_eff))
    return k_eff, d_eff


# ------------------------------------------------------------------------------------------------
# Graph construction and graph convolution.
# ------------------------------------------------------------------------------------------------
def nearest_keys(dist, count: int):
    """Indices of the ``count`` smallest entries along the last axis, ordered by (value, index).

    ``ops.topk`` alone does not order equal values by index for a partial k (its CPU kernel returns
    ties in heap order), so the choice is made exactly, in float32 ops that export anywhere:
    1. ``thr`` = the count-th smallest value (topk values are exact whatever the tie order);
    2. a unique integer-valued key, ``2M - j`` below ``thr``, ``M - j`` equal to it, 0 above,
       whose top ``count`` are every entry below ``thr`` plus the lowest-index ones equal to it;
    3. the rank of each chosen entry by (value, index) among the chosen, a permutation, by which
       the chosen indices are reordered.
    """
    f32 = ms.float32
    m = dist.shape[-1]
    neg_vals, _ = ops.topk(-dist, count)
    thr = -neg_vals[:, :, count - 1:count]
    m_minus_j = Tensor(np.arange(m, 0, -1, dtype=np.float32))
    key = (dist <= thr).astype(f32) * m_minus_j + (dist < thr).astype(f32) * float(m)
    _, chosen = ops.topk(key, count)
    chosen_dist = ops.gather_elements(dist, 2, chosen)
    chosen_f = chosen.astype(f32)
    da, db = chosen_dist.expand_dims(3), chosen_dist.expand_dims(2)
    ia, ib = chosen_f.expand_dims(3), chosen_f.expand_dims(2)
    rank = ((db < da).astype(f32) + (db == da).astype(f32) * (ib < ia).astype(f32)).sum(3)
    _, order = ops.topk(-rank, count)
    return ops.gather_elements(chosen, 2, order)


class DenseDilatedKnnGraph(nn.Cell):
    """Neighbour indices of a dilated kNN graph between centre nodes x and key nodes y.

    Inputs: x (B, C, N), y (B, C, M), optional relative_pos (1, N, M). Output: int32 (B, N, k)
    indices into the M key nodes. Nothing here carries gradient. Ranking: squared distance of the
    L2-normalised features (plus relative_pos), nearest first, ties to the smaller key index; the
    k * d nearest are kept and every d-th is taken. With ``stochastic`` set, training picks k random
    ones of the k * d instead, with probability ``epsilon`` per call (off in the released models).
    """

    def __init__(self, k: int = 9, dilation: int = 1, stochastic: bool = False, epsilon: float = 0.2):
        super().__init__()
        if k < 1 or dilation < 1:
            raise ValueError(f"kNN graph needs k >= 1 and dilation >= 1, got k={k}, dilation={dilation}")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"kNN graph epsilon must be in [0, 1], got {epsilon}")
        self.k = int(k)
        self.dilation = int(dilation)
        self.stochastic = bool(stochastic)
        self.epsilon = float(epsilon)

    def construct(self, x, y, relative_pos=None):
        x = ops.stop_gradient(x)
        y = ops.stop_gradient(y)
        k, d = effective_k_dilation(self.k, self.dilation, y.shape[2])
        x = _l2_normalize(x, 1).transpose(0, 2, 1)   # (B, N, C)
        y = _l2_normalize(y, 1)                      # (B, C, M)
        x_sq = (x * x).sum(-1, keepdims=True)        # (B, N, 1)
        y_sq = (y * y).sum(1, keepdims=True)         # (B, 1, M)
        dist = x_sq + (-2.0 * ops.bmm(x, y)) + y_sq  # (B, N, M)
        if relative_pos is not None:
            dist = dist + relative_pos
        nn_idx = nearest_keys(dist, k * d)           # nearest first, ties -> lower index
        if d == 1:
            return nn_idx
        if self.stochastic and self.training:
            if ops.rand((1,))[0] < self.epsilon:
                picks = ops.sort(ops.rand((k * d,)))[1][:k]   # k random positions of the k * d
                out = ops.gather(nn_idx, picks, 2)
            else:
                out = nn_idx[:, :, ::d]
            return out
        return nn_idx[:, :, ::d]

    def macs(self, inputs, output) -> int:
        """The distance matmul: B * N * M * C (what torchprofile counts for the reference)."""
        b, c, n = inputs[0].shape
        return int(b) * int(n) * int(inputs[1].shape[2]) * int(c)

    def extend_repr(self):
        return f"k={self.k}, dilation={self.dilation}, stochastic={self.stochastic}"


class MRConv2d(nn.Cell):
    """Max-relative graph convolution: [x_i, max_j (x_j - x_i)] interleaved, grouped 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 4):
        super().__init__()
        self.nn = nn.SequentialCell([_conv(2 * in_channels, out_channels, 1, groups=groups), _bn(out_channels),
                                     GELU()])

    def construct(self, x, nn_idx, y, height: int, width: int):
        b, c, n = x.shape
        m = y.shape[2]
        k = nn_idx.shape[2]
        keys = y.transpose(0, 2, 1).reshape(b * m, c)
        offset = (ops.arange(b, dtype=ms.int32) * m).reshape(b, 1, 1)
        x_j = ops.gather(keys, (nn_idx + offset).reshape(-1), 0).reshape(b, n, k, c)
        # max_j (x_j - x_i) == max_j x_j - x_i exactly (rounding is monotone), without a (B,C,N,k) copy of x_i.
        rel = x_j.max(axis=2).transpose(0, 2, 1) - x
        # Channel 2c holds x_c and channel 2c+1 holds rel_c, as the reference's stack+reshape does.
        both = ops.concat((x.reshape(b, c, 1, n), rel.reshape(b, c, 1, n)), axis=2)
        return self.nn(both.reshape(b, 2 * c, height, width))


class DyGraphConv2d(nn.Cell):
    """Builds the kNN graph (keys pooled by ``reduce_ratio``) and applies the MR graph conv."""

    def __init__(self, in_channels: int, out_channels: int, k: int = 9, dilation: int = 1, reduce_ratio: int = 1,
                 stochastic: bool = False, epsilon: float = 0.2):
        super().__init__()
        self.r = int(reduce_ratio)
        self.gconv = MRConv2d(in_channels, out_channels)
        self.dilated_knn_graph = DenseDilatedKnnGraph(k, dilation, stochastic, epsilon)
        self.pool = nn.AvgPool2d(self.r, self.r) if self.r > 1 else None

    def construct(self, x, relative_pos=None):
        b, c, h, w = x.shape
        if self.r > 1:
            y = self.pool(x).reshape(b, c, -1)
        else:
            y = x.reshape(b, c, -1)
        x = x.reshape(b, c, -1)
        if relative_pos is None:
            nn_idx = self.dilated_knn_graph(x, y)
        else:
            nn_idx = self.dilated_knn_graph(x, y, relative_pos)
        return self.gconv(x, nn_idx, y, h, w)


class Grapher(nn.Cell):
    """fc1 (1x1 conv + BN) -> dynamic graph conv (C -> 2C) -> fc2 (1x1 conv + BN) -> drop path, + x."""

    def __init__(self, channels: int, k: int = 9, dilation: int = 1, reduce_ratio: int = 1, drop_path: float = 0.0,
                 relative_pos_grid: Optional[int] = None, stochastic: bool = False, epsilon: float = 0.2):
        super().__init__()
        self.channels = channels
        self.r = int(reduce_ratio)
        self.fc1 = nn.SequentialCell([_conv(channels, channels), _bn(channels)])
        self.graph_conv = DyGraphConv2d(channels, 2 * channels, k, dilation, reduce_ratio, stochastic, epsilon)
        self.fc2 = nn.SequentialCell([_conv(2 * channels, channels), _bn(channels)])
        self.drop_path = DropPath(drop_path)
        self.use_relative_pos = relative_pos_grid is not None
        if self.use_relative_pos:
            table = relative_pos_table(channels, relative_pos_grid, self.r)
            self.relative_pos = Parameter(Tensor(table), name="relative_pos", requires_grad=False)
        else:
            self.relative_pos = None

    def _relative_pos_for(self, height: int, width: int):
        """The relative-position term for an (height x width) map: stored table, resized if needed."""
        if self.relative_pos is None:
            return None
        n = height * width
        m = (height // self.r) * (width // self.r)
        rel = self.relative_pos
        if rel.shape[1] == n and rel.shape[2] == m:
            return rel
        return _resize_axis(_resize_axis(rel, 1, n), 2, m)

    def construct(self, x):
        shortcut = x
        _, _, h, w = x.shape
        if h < self.r or w < self.r:
            raise ValueError(f"Grapher: a {h}x{w} feature map is smaller than the key pooling {self.r}x{self.r}; "
                             "use a larger input image")
        x = self.fc1(x)
        if self.use_relative_pos:
            x = self.graph_conv(x, self._relative_pos_for(h, w))
        else:
            x = self.graph_conv(x)
        x = self.fc2(x)
        return self.drop_path(x) + shortcut


class FFN(nn.Cell):
    """1x1 conv + BN (C -> 4C), GELU, 1x1 conv + BN (4C -> C), drop path, + x."""

    def __init__(self, channels: int, hidden: int, drop_path: float = 0.0):
        super().__init__()
        self.fc1 = nn.SequentialCell([_conv(channels, hidden), _bn(hidden)])
        self.act = GELU()
        self.fc2 = nn.SequentialCell([_conv(hidden, channels), _bn(channels)])
        self.drop_path = DropPath(drop_path)

    def construct(self, x):
        return self.drop_path(self.fc2(self.act(self.fc1(x)))) + x


class Downsample(nn.Cell):
    """3x3 stride-2 conv + BN between pyramid stages (no activation)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.SequentialCell([_conv(cin, cout, 3, stride=2), _bn(cout)])

    def construct(self, x):
        return self.conv(x)


class Stem(nn.Cell):
    """3x3 convs: stride 2 for each entry of ``widths`` after the first, then a stride-1 conv + BN."""

    def __init__(self, in_channels: int, widths: Sequence[int]):
        super().__init__()
        layers: List[nn.Cell] = []
        cin = in_channels
        for width in widths[:-1]:
            layers += [_conv(cin, width, 3, stride=2), _bn(width), GELU()]
            cin = width
        layers += [_conv(cin, widths[-1], 3, stride=1), _bn(widths[-1])]
        self.convs = nn.SequentialCell(layers)

    def construct(self, x):
        return self.convs(x)


def _prediction_head(channels: int, num_classes: int, drop_rate: float) -> nn.SequentialCell:
    return nn.SequentialCell([_conv(channels, _HEAD_DIM), _bn(_HEAD_DIM), GELU(), nn.Dropout(p=drop_rate),
                              _conv(_HEAD_DIM, num_classes)])


def _drop_path_rates(rate: float, n: int) -> List[float]:
    return [float(v) for v in np.linspace(0.0, rate, n, dtype=np.float32)]


def isotropic_schedule(blocks: int, k: int = _DEFAULT_K) -> List[Tuple[int, int]]:
    """(k, dilation) per block: k = int(linspace(k, 2k)), dilation = min(i // 4 + 1, 196 // max k)."""
    knn = [int(v) for v in np.linspace(k, 2 * k, blocks)]
    max_dilation = (_BASE_SIZE // 16) ** 2 // max(knn)
    return [(knn[i], min(i // 4 + 1, max_dilation)) for i in range(blocks)]


def pyramid_schedule(blocks: Sequence[int], k: int = _DEFAULT_K) -> List[Tuple[int, int]]:
    """(k, dilation) per block: constant k, dilation = min(i // 4 + 1, 49 // k) over all blocks."""
    max_dilation = (_BASE_SIZE // 32) ** 2 // k
    return [(k, min(i // 4 + 1, max_dilation)) for i in range(sum(blocks))]


class _ViGBase(nn.Cell):
    """Shared forward: stem + resized position embedding, backbone, average pool, head."""

    def _pos_embed_for(self, height: int, width: int):
        pos = self.pos_embed
        return _resize_axis(_resize_axis(pos, 2, height), 3, width)

    def forward_features(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects input (N, {self.in_channels}, H, W), got {x.shape}")
        x = self.stem(x)
        x = x + self._pos_embed_for(x.shape[2], x.shape[3])
        return self.backbone(x)

    def construct(self, x):
        x = self.forward_features(x)
        x = ops.mean(x, (2, 3), keep_dims=True)
        x = self.prediction(x)
        return x.reshape(x.shape[0], -1)


class DeepGCN(_ViGBase):
    """Isotropic ViG: stride-16 stem, ``blocks`` x (Grapher, FFN) at a constant width."""

    def __init__(self, channels: int, blocks: int, num_classes: int = 1000, in_channels: int = 3, k: int = _DEFAULT_K,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0, use_stochastic: bool = False,
                 epsilon: float = 0.2):
        super().__init__()
        self.in_channels = in_channels
        self.num_features = channels
        dpr = _drop_path_rates(drop_path_rate, blocks)
        self.schedule = isotropic_schedule(blocks, k)
        self.stem = Stem(in_channels, [channels // 8, channels // 4, channels // 2, channels, channels])
        grid = _BASE_SIZE // 16
        self.pos_embed = Parameter(Tensor(np.zeros((1, channels, grid, grid), np.float32)), name="pos_embed")
        self.backbone = nn.SequentialCell([
            nn.SequentialCell([
                Grapher(channels, knn_i, dil_i, 1, dpr[i], None, use_stochastic, epsilon),
                FFN(channels, 4 * channels, dpr[i]),
            ]) for i, (knn_i, dil_i) in enumerate(self.schedule)])
        self.prediction = _prediction_head(channels, num_classes, drop_rate)


class PyramidDeepGCN(_ViGBase):
    """Pyramid ViG: stride-4 stem, four stages (key pooling 4, 2, 1, 1) joined by stride-2 convs."""

    def __init__(self, channels: Sequence[int], blocks: Sequence[int], num_classes: int = 1000, in_channels: int = 3,
                 k: int = _DEFAULT_K, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 use_stochastic: bool = False, epsilon: float = 0.2):
        super().__init__()
        self.in_channels = in_channels
        self.num_features = channels[-1]
        grid = _BASE_SIZE // 4
        dpr = _drop_path_rates(drop_path_rate, sum(blocks))
        self.schedule = pyramid_schedule(blocks, k)
        self.stem = Stem(in_channels, [channels[0] // 2, channels[0], channels[0]])
        self.pos_embed = Parameter(Tensor(np.zeros((1, channels[0], grid, grid), np.float32)), name="pos_embed")
        cells: List[nn.Cell] = []
        idx = 0
        for stage, (width, depth) in enumerate(zip(channels, blocks)):
            if stage > 0:
                cells.append(Downsample(channels[stage - 1], width))
                grid //= 2
            for _ in range(depth):
                knn_i, dil = self.schedule[idx]
                cells.append(nn.SequentialCell([
                    Grapher(width, knn_i, dil, _PYRAMID_REDUCE[stage], dpr[idx], grid, use_stochastic, epsilon),
                    FFN(width, 4 * width, dpr[idx]),
                ]))
                idx += 1
        self.backbone = nn.SequentialCell(cells)
        self.prediction = _prediction_head(channels[-1], num_classes, drop_rate)


# ------------------------------------------------------------------------------------------------
# Builders.
# ------------------------------------------------------------------------------------------------
_EXTRA_KWARGS = ("k", "use_stochastic", "epsilon")


def _build(name: str, num_classes: int, in_channels: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
           kernels: str = "auto", **kwargs) -> nn.Cell:
    unknown = sorted(set(kwargs) - set(_EXTRA_KWARGS))
    if unknown:
        raise TypeError(f"{name}: unknown argument(s) {', '.join(unknown)} "
                        f"(accepted: drop_rate, drop_path_rate, kernels, {', '.join(_EXTRA_KWARGS)})")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{name}: num_classes must be a positive integer, got {num_classes!r}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"{name}: in_channels must be a positive integer, got {in_channels!r}")
    for label, value in (("drop_rate", drop_rate), ("drop_path_rate", drop_path_rate)):
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{name}: {label} must be in [0, 1), got {value}")
    k = kwargs.get("k", _DEFAULT_K)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"{name}: k must be a positive integer, got {k!r}")
    common = dict(num_classes=num_classes, in_channels=in_channels, k=k, drop_rate=float(drop_rate),
                  drop_path_rate=float(drop_path_rate), use_stochastic=bool(kwargs.get("use_stochastic", False)),
                  epsilon=float(kwargs.get("epsilon", 0.2)))
    if name in _ISOTROPIC:
        return DeepGCN(**_ISOTROPIC[name], **common)
    return PyramidDeepGCN(**_PYRAMID[name], **common)


@register_model
def vig_ti_224_gelu(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> nn.Cell:
    """ViG-Ti: 192 channels, 12 blocks (7.18 M params, 1.30 G MACs at 224)."""
    return _build("vig_ti_224_gelu", num_classes, in_channels, **kwargs)


@register_model
def vig_s_224_gelu(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> nn.Cell:
    """ViG-S: 320 channels, 16 blocks (22.75 M params, 4.52 G MACs at 224)."""
    return _build("vig_s_224_gelu", num_classes, in_channels, **kwargs)


@register_model
def vig_b_224_gelu(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> nn.Cell:
    """ViG-B: 640 channels, 16 blocks (86.84 M params, 17.64 G MACs at 224)."""
    return _build("vig_b_224_gelu", num_classes, in_channels, **kwargs)


@register_model
def pvig_ti_224_gelu(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> nn.Cell:
    """Pyramid ViG-Ti: 48/96/240/384 channels, 2/2/6/2 blocks (10.71 M trainable params, 1.70 G MACs)."""
    return _build("pvig_ti_224_gelu", num_classes, in_channels, **kwargs)


@register_model
def pvig_s_224_gelu(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> nn.Cell:
    """Pyramid ViG-S: 80/160/400/640 channels, 2/2/6/2 blocks (27.25 M trainable params, 4.55 G MACs)."""
    return _build("pvig_s_224_gelu", num_classes, in_channels, **kwargs)


@register_model
def pvig_m_224_gelu(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> nn.Cell:
    """Pyramid ViG-M: 96/192/384/768 channels, 2/2/16/2 blocks (49.53 M trainable params, 8.85 G MACs)."""
    return _build("pvig_m_224_gelu", num_classes, in_channels, **kwargs)


@register_model
def pvig_b_224_gelu(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> nn.Cell:
    """Pyramid ViG-B: 128/256/512/1024 channels, 2/2/18/2 blocks (92.98 M trainable params, 16.80 G MACs)."""
    return _build("pvig_b_224_gelu", num_classes, in_channels, **kwargs)


# ------------------------------------------------------------------------------------------------
# Export and checkpoint conversion.
# ------------------------------------------------------------------------------------------------
def prepare_for_export(net: nn.Cell, file_format: str) -> nn.Cell:
    """Ready ``net`` for ``file_format``: ONNX gets the erf-free GELU (MindSpore cannot export Erf).

    MINDIR keeps the fused exact GELU. Call with the format again to switch back.
    """
    fmt = file_format.upper()
    if fmt not in ("MINDIR", "ONNX"):
        raise ValueError(f"unknown export format '{file_format}' (MINDIR or ONNX)")
    set_gelu_export_mode(net, erf_free=(fmt == "ONNX"))
    return net


def _is_pyramid_checkpoint(keys) -> bool:
    return any(key.endswith(".conv.0.weight") and key.startswith("backbone.") for key in keys) or \
        any(key.endswith(".relative_pos") for key in keys)


def convert_official_state_dict(state_dict: Dict[str, np.ndarray], model_name: str) -> Dict[str, np.ndarray]:
    """Map an official ViG / Pyramid ViG state dict onto this module's parameter names.

    Convolutions, ``pos_embed`` and ``relative_pos`` keep their names; every BatchNorm (recognised
    by its ``running_mean`` entry) is renamed to gamma/beta/moving_mean/moving_variance.
    Isotropic and pyramid files are told apart by their keys (pyramid ones hold the stage
    downsampling convs ``backbone.<i>.conv.0.weight`` and ``relative_pos`` tables).
    """
    from .keymaps import ConversionError, bn_key_map

    if model_name not in _ISOTROPIC and model_name not in _PYRAMID:
        raise ConversionError(f"'{model_name}' is not a ViG model ({', '.join(list(_ISOTROPIC) + list(_PYRAMID))})")
    if not any(key.startswith("backbone.") for key in state_dict):
        raise ConversionError("this does not look like an official ViG checkpoint: no 'backbone.*' keys "
                              f"(first keys: {', '.join(list(state_dict)[:5])})")
    pyramid_ckpt = _is_pyramid_checkpoint(state_dict)
    pyramid_model = model_name in _PYRAMID
    if pyramid_ckpt != pyramid_model:
        found = "a pyramid ViG (stage downsampling convs / relative_pos)" if pyramid_ckpt else "an isotropic ViG"
        raise ConversionError(f"the checkpoint holds {found}, but '{model_name}' is "
                              f"{'a pyramid' if pyramid_model else 'an isotropic'} model")
    renames: Dict[str, str] = {}
    for key in state_dict:
        if key.endswith(".running_mean"):
            prefix = key[: -len(".running_mean")]
            renames.update(dict(bn_key_map(prefix, prefix)))
    out: Dict[str, np.ndarray] = {}
    for key, value in state_dict.items():
        new_key = renames.get(key, key)
        if new_key in out:
            raise ConversionError(f"two checkpoint entries map onto '{new_key}'")
        out[new_key] = np.asarray(value)
    return out


FAMILY = Family(converter=convert_official_state_dict, crop_pct=0.9,
                paper="Han et al., Vision GNN: An Image is Worth Graph of Nodes, NeurIPS 2022")
