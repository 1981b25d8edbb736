"""SegFormer (Xie et al., NeurIPS 2021, arXiv 2105.15203): Mix Transformer encoders MiT-B0..B5 and
the all-MLP decoder head.

Layer order, initialisation, LayerNorm epsilons and parameter names follow the official release
(NVlabs/SegFormer, ``mmseg/models/backbones/mix_transformer.py`` and the SegFormer head), so an
ImageNet MiT state dict maps onto ``encoder.*`` by renaming LayerNorm entries only
(``mit_imagenet_to_encoder``). Stage layout per variant: overlapping patch embeddings (7x7 stride 4,
then 3x3 stride 2), blocks of efficient self-attention (keys/values from a strided ``sr`` conv with
ratios 8/4/2/1) and Mix-FFN (Linear, 3x3 depth-wise conv, GELU, Linear), a LayerNorm closing each
stage. Feature maps come out at strides 4, 8, 16, 32.

``SegFormerHead``: one Linear per stage to ``embed_dim``, bilinear resize to the stride-4 map,
concatenation (stage 4 first), 1x1 conv + BN + ReLU, Dropout2d(0.1), 1x1 classifier. The model
returns logits at 1/4 of the input size (the loss resizes them to the label size).

``segformer_mit_tiny`` is a small MiT (dims 16/32/64/128) for CPU experiments; it has no official
counterpart.
"""
import math
from typing import Dict, List, Sequence

import numpy as np
from mindspore import nn, ops
from mindspore.common.initializer import HeNormal, Normal, TruncatedNormal

from ..layers.drop_path import DropPath
from ..layers.gelu import GELU
from .registry import Family, register_model

__all__ = ["MIT_CONFIGS", "MixVisionTransformer", "SegFormerHead", "SegFormer", "OverlapPatchEmbed",
           "EfficientAttention", "MixFFN", "MiTBlock", "AttentionCore", "mit_imagenet_to_encoder",
           "load_mit_imagenet", "drop_path_rates"]

DEFAULT_INPUT = {"segformer_mit_tiny": 64}
STATUS = "tested (structure, counts, NumPy attention reference); no released SegFormer weights converted"

# MiT variant table (official mix_transformer.py): embed dims, depths; shared by all variants:
# heads (1, 2, 5, 8), MLP ratio 4, SR ratios (8, 4, 2, 1), qkv bias, drop path 0.1.
MIT_CONFIGS = {
    "mit_b0": {"embed_dims": (32, 64, 160, 256), "depths": (2, 2, 2, 2)},
    "mit_b1": {"embed_dims": (64, 128, 320, 512), "depths": (2, 2, 2, 2)},
    "mit_b2": {"embed_dims": (64, 128, 320, 512), "depths": (3, 4, 6, 3)},
    "mit_b3": {"embed_dims": (64, 128, 320, 512), "depths": (3, 4, 18, 3)},
    "mit_b4": {"embed_dims": (64, 128, 320, 512), "depths": (3, 8, 27, 3)},
    "mit_b5": {"embed_dims": (64, 128, 320, 512), "depths": (3, 6, 40, 3)},
}
for _cfg in MIT_CONFIGS.values():
    _cfg.update(num_heads=(1, 2, 5, 8), mlp_ratio=4, sr_ratios=(8, 4, 2, 1), drop_path_rate=0.1)
# CPU-sized MiT (no official counterpart): heads 1/2/4/8, SR 8/4/2/1; depths may be overridden.
MIT_CONFIGS["mit_tiny"] = {"embed_dims": (16, 32, 64, 128), "depths": (1, 1, 1, 1), "num_heads": (1, 2, 4, 8),
                           "mlp_ratio": 4, "sr_ratios": (8, 4, 2, 1), "drop_path_rate": 0.1}

# Head width: 256 for MiT-B0 and 768 for B1..B5 in the original SegFormer configs; 64 for the tiny MiT.
HEAD_EMBED_DIM = {"mit_b0": 256, "mit_b1": 768, "mit_b2": 768, "mit_b3": 768, "mit_b4": 768, "mit_b5": 768,
                  "mit_tiny": 64}

# Official epsilons: block and stage norms 1e-6; patch-embedding and spatial-reduction norms keep
# torch's default 1e-5.
BLOCK_EPS = 1e-6
EMBED_EPS = 1e-5


class MiTConfigError(ValueError):
    """A MiT configuration that cannot be built (bad dims/heads/depths)."""


def dense(cin: int, cout: int, bias: bool = True) -> nn.Dense:
    """Linear layer with the official init: truncated normal (std 0.02) weights, zero bias."""
    return nn.Dense(cin, cout, has_bias=bias, weight_init=TruncatedNormal(0.02), bias_init="zeros")


def conv(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, groups: int = 1) -> nn.Conv2d:
    """Conv with bias and the official init: normal(0, sqrt(2 / fan_out)), fan_out = k*k*cout/groups."""
    fan_out = kernel * kernel * cout // groups
    return nn.Conv2d(cin, cout, kernel, stride=stride, pad_mode="pad", padding=padding, group=groups,
                     has_bias=True, weight_init=Normal(math.sqrt(2.0 / fan_out)), bias_init="zeros")


def layer_norm(dim: int, eps: float) -> nn.LayerNorm:
    return nn.LayerNorm((dim,), begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)


def drop_path_rates(depths: Sequence[int], rate: float) -> List[float]:
    """Stochastic depth rising linearly from 0 to ``rate`` over all blocks (torch.linspace rule)."""
    total = int(sum(depths))
    return [float(v) for v in np.linspace(0.0, rate, total)] if total > 1 else [0.0] * total


def tokens_to_map(x, h: int, w: int):
    """(B, H*W, C) -> (B, C, H, W)."""
    return ops.transpose(x, (0, 2, 1)).reshape(x.shape[0], x.shape[2], h, w)


def map_to_tokens(x):
    """(B, C, H, W) -> (B, H*W, C)."""
    b, c = x.shape[0], x.shape[1]
    return ops.transpose(x.reshape(b, c, -1), (0, 2, 1))


class AttentionCore(nn.Cell):
    """softmax(q k^T * scale) v per head; q (B, N, C), kv (B, M, 2C) with keys then values -> (B, N, C)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise MiTConfigError(f"attention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5

    def construct(self, q, kv):
        b, n, c = q.shape
        m = kv.shape[1]
        q = ops.transpose(q.reshape(b, n, self.num_heads, self.head_dim), (0, 2, 1, 3))
        kv = ops.transpose(kv.reshape(b, m, 2, self.num_heads, self.head_dim), (2, 0, 3, 1, 4))
        k, v = kv[0], kv[1]
        attn = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * self.scale, axis=-1)
        out = ops.matmul(attn, v)  # (B, heads, N, head_dim)
        return ops.transpose(out, (0, 2, 1, 3)).reshape(b, n, c)

    def macs(self, inputs, output) -> int:
        q, kv = inputs[0], inputs[1]
        return 2 * int(q.shape[0]) * int(q.shape[1]) * int(kv.shape[1]) * int(q.shape[2])


class EfficientAttention(nn.Cell):
    """Multi-head attention whose keys/values come from a ``sr_ratio``-strided conv of the tokens."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool = True):
        super().__init__()
        self.q = dense(dim, dim, qkv_bias)
        self.kv = dense(dim, 2 * dim, qkv_bias)
        self.proj = dense(dim, dim)
        self.core = AttentionCore(dim, num_heads)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = conv(dim, dim, sr_ratio, stride=sr_ratio)
            self.norm = layer_norm(dim, EMBED_EPS)

    def construct(self, x, h: int, w: int):
        src = x
        if self.sr_ratio > 1:
            src = self.norm(map_to_tokens(self.sr(tokens_to_map(x, h, w))))
        return self.proj(self.core(self.q(x), self.kv(src)))


class DWConv(nn.Cell):
    """3x3 depth-wise conv over the token grid (the positional cue of Mix-FFN)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = conv(dim, dim, 3, 1, 1, groups=dim)

    def construct(self, x, h: int, w: int):
        return map_to_tokens(self.dwconv(tokens_to_map(x, h, w)))


class MixFFN(nn.Cell):
    """Linear -> depth-wise 3x3 conv -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = dense(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = GELU()
        self.fc2 = dense(hidden, dim)

    def construct(self, x, h: int, w: int):
        return self.fc2(self.act(self.dwconv(self.fc1(x), h, w)))


class MiTBlock(nn.Cell):
    """x + DropPath(Attn(LN(x))), then x + DropPath(MixFFN(LN(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, sr_ratio: int, drop_path: float):
        super().__init__()
        self.norm1 = layer_norm(dim, BLOCK_EPS)
        self.attn = EfficientAttention(dim, num_heads, sr_ratio)
        self.drop_path = DropPath(drop_path)
        self.norm2 = layer_norm(dim, BLOCK_EPS)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio))

    def construct(self, x, h: int, w: int):
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class OverlapPatchEmbed(nn.Cell):
    """Conv(k, stride, padding k // 2) then LayerNorm over channels; returns tokens and the grid size."""

    def __init__(self, cin: int, dim: int, patch: int, stride: int):
        super().__init__()
        self.proj = conv(cin, dim, patch, stride, patch // 2)
        self.norm = layer_norm(dim, EMBED_EPS)

    def construct(self, x):
        x = self.proj(x)
        h, w = x.shape[2], x.shape[3]
        return self.norm(map_to_tokens(x)), h, w


def check_mit_config(cfg: Dict) -> None:
    dims, depths, heads, srs = cfg["embed_dims"], cfg["depths"], cfg["num_heads"], cfg["sr_ratios"]
    if not (len(dims) == len(depths) == len(heads) == len(srs) == 4):
        raise MiTConfigError(f"MiT needs 4 stages of embed_dims/depths/num_heads/sr_ratios, got {cfg}")
    for d, n, hd, sr in zip(dims, depths, heads, srs):
        if int(d) <= 0 or int(n) <= 0 or int(hd) <= 0 or int(sr) <= 0 or d % hd:
            raise MiTConfigError(f"bad MiT stage: dim {d}, depth {n}, heads {hd}, sr {sr} "
                                 "(all positive, dim divisible by heads)")


def patch_specs(cin: int, dims: Sequence[int]):
    """(in_channels, out_channels, kernel, stride) of the four overlapping patch embeddings."""
    return [(cin, dims[0], 7, 4), (dims[0], dims[1], 3, 2), (dims[1], dims[2], 3, 2), (dims[2], dims[3], 3, 2)]


class MixVisionTransformer(nn.Cell):
    """MiT encoder: ``construct(x)`` returns the four stage maps (B, C_i, H/s_i, W/s_i), s = 4, 8, 16, 32."""

    def __init__(self, embed_dims, depths, num_heads, sr_ratios, mlp_ratio=4, drop_path_rate=0.1, in_channels=3):
        super().__init__()
        cfg = dict(embed_dims=tuple(embed_dims), depths=tuple(depths), num_heads=tuple(num_heads),
                   sr_ratios=tuple(sr_ratios))
        check_mit_config(cfg)
        self.embed_dims, self.depths, self.in_channels = cfg["embed_dims"], cfg["depths"], in_channels
        dpr = drop_path_rates(depths, drop_path_rate)
        cur = 0
        for i, (cin, cout, k, s) in enumerate(patch_specs(in_channels, self.embed_dims)):
            setattr(self, f"patch_embed{i + 1}", OverlapPatchEmbed(cin, cout, k, s))
            setattr(self, f"block{i + 1}", nn.CellList([
                MiTBlock(cout, num_heads[i], mlp_ratio, sr_ratios[i], dpr[cur + j]) for j in range(depths[i])]))
            setattr(self, f"norm{i + 1}", layer_norm(cout, BLOCK_EPS))
            cur += depths[i]

    def construct(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"MiT: expected input (N, {self.in_channels}, H, W), got {x.shape}")
        c1 = self._stage(x, self.patch_embed1, self.block1, self.norm1)
        c2 = self._stage(c1, self.patch_embed2, self.block2, self.norm2)
        c3 = self._stage(c2, self.patch_embed3, self.block3, self.norm3)
        c4 = self._stage(c3, self.patch_embed4, self.block4, self.norm4)
        return c1, c2, c3, c4

    def _stage(self, x, embed, blocks, norm):
        x, h, w = embed(x)
        for blk in blocks:
            x = blk(x, h, w)
        return tokens_to_map(norm(x), h, w)


class ConvBNReLU(nn.Cell):
    """mmcv ConvModule(k=1, norm BN): conv without bias (a norm follows; Kaiming normal, fan_out, as
    mmcv initialises it), BN, ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, has_bias=False, weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.9)
        self.activate = nn.ReLU()

    def construct(self, x):
        return self.activate(self.bn(self.conv(x)))


class LinearEmbed(nn.Cell):
    """Per-stage Linear applied to every position of a (B, C, H, W) map -> (B, E, H, W)."""

    def __init__(self, cin: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Dense(cin, embed_dim)

    def construct(self, x):
        h, w = x.shape[2], x.shape[3]
        return tokens_to_map(self.proj(map_to_tokens(x)), h, w)


class SegFormerHead(nn.Cell):
    """All-MLP decoder over the four stage maps; logits at the stride-4 resolution."""

    def __init__(self, in_channels: Sequence[int], embed_dim: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        if len(in_channels) != 4:
            raise MiTConfigError(f"SegFormerHead needs 4 input widths, got {in_channels}")
        if int(num_classes) <= 0:
            raise MiTConfigError(f"SegFormerHead: num_classes must be positive, got {num_classes}")
        for i, cin in enumerate(in_channels):
            setattr(self, f"linear_c{i + 1}", LinearEmbed(cin, embed_dim))
        self.linear_fuse = ConvBNReLU(4 * embed_dim, embed_dim)
        self.dropout = nn.Dropout2d(p=dropout) if dropout > 0 else nn.Identity()
        self.linear_pred = nn.Conv2d(embed_dim, num_classes, 1, has_bias=True)

    def construct(self, feats):
        c1, c2, c3, c4 = feats
        size = (c1.shape[2], c1.shape[3])
        up = []
        for layer, f in ((self.linear_c4, c4), (self.linear_c3, c3), (self.linear_c2, c2)):
            up.append(ops.interpolate(layer(f), size=size, mode="bilinear", align_corners=False))
        up.append(self.linear_c1(c1))
        x = self.linear_fuse(ops.concat(up, axis=1))
        return self.linear_pred(self.dropout(x))


class SegFormer(nn.Cell):
    """MiT encoder + SegFormer head; ``construct(x)`` -> logits (B, classes, H/4, W/4)."""

    def __init__(self, variant: str, num_classes: int = 150, in_channels: int = 3, embed_dim: int = None,
                 depths=None, drop_path_rate: float = None):
        super().__init__()
        cfg = dict(MIT_CONFIGS[variant])
        if depths is not None:
            cfg["depths"] = tuple(depths)
        if drop_path_rate is not None:
            cfg["drop_path_rate"] = drop_path_rate
        self.encoder = MixVisionTransformer(in_channels=in_channels, **cfg)
        self.decoder = SegFormerHead(self.encoder.embed_dims, embed_dim or HEAD_EMBED_DIM[variant], num_classes)

    def construct(self, x):
        return self.decoder(self.encoder(x))


def _segformer(variant, num_classes, in_channels, kw):
    return SegFormer(variant, num_classes=num_classes, in_channels=in_channels, **kw)


@register_model
def segformer_mit_b0(num_classes: int = 150, in_channels: int = 3, **kw):
    return _segformer("mit_b0", num_classes, in_channels, kw)


@register_model
def segformer_mit_b1(num_classes: int = 150, in_channels: int = 3, **kw):
    return _segformer("mit_b1", num_classes, in_channels, kw)


@register_model
def segformer_mit_b2(num_classes: int = 150, in_channels: int = 3, **kw):
    return _segformer("mit_b2", num_classes, in_channels, kw)


@register_model
def segformer_mit_b3(num_classes: int = 150, in_channels: int = 3, **kw):
    return _segformer("mit_b3", num_classes, in_channels, kw)


@register_model
def segformer_mit_b4(num_classes: int = 150, in_channels: int = 3, **kw):
    return _segformer("mit_b4", num_classes, in_channels, kw)


@register_model
def segformer_mit_b5(num_classes: int = 150, in_channels: int = 3, **kw):
    return _segformer("mit_b5", num_classes, in_channels, kw)


@register_model
def segformer_mit_tiny(num_classes: int = 150, in_channels: int = 3, **kw):
    return _segformer("mit_tiny", num_classes, in_channels, kw)


# ------------------------------------------------------------------------------- ImageNet MiT weights

def _is_mit_norm(key: str) -> bool:
    """Whether an official MiT key belongs to a LayerNorm (patch_embed*.norm, norm1/2, attn.norm, norm{1-4})."""
    parts = key.split(".")
    return len(parts) >= 2 and (parts[-2].startswith("norm") or parts[-2].startswith("ln_"))


def mit_imagenet_to_encoder(state_dict: Dict[str, np.ndarray], prefix: str = "encoder.") -> Dict[str, np.ndarray]:
    """Rename an official ImageNet MiT state dict (``patch_embed1.proj.weight``, ``block1.0.norm1.weight``,
    ...) to this module's encoder names; the classifier ``head.*`` is dropped as the segmentation code does.
    LayerNorm ``weight/bias`` become ``gamma/beta``; convolution and linear layouts are unchanged."""
    from .keymaps import ConversionError

    if "patch_embed1.proj.weight" not in state_dict:
        raise ConversionError("not an ImageNet MiT state dict: no 'patch_embed1.proj.weight' "
                              f"(first keys: {', '.join(list(state_dict)[:5])})")
    out = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if key.startswith("head."):
            continue
        if _is_mit_norm(key):
            key = key[:-len("weight")] + "gamma" if key.endswith(".weight") else key[:-len("bias")] + "beta"
        out[prefix + key] = np.asarray(value, np.float32)
    return out


def load_param_dict(net: nn.Cell, values: Dict[str, np.ndarray], what: str) -> List[str]:
    """Assign ``values`` onto ``net``'s parameters of the same names; every key must exist with the
    same shape. Returns the names of the parameters left untouched."""
    from mindspore import Tensor
    from .keymaps import ConversionError

    params = net.parameters_dict()
    unknown = sorted(set(values) - set(params))
    bad = [f"{k}: {np.shape(values[k])} vs {tuple(params[k].shape)}" for k in values
           if k in params and tuple(np.shape(values[k])) != tuple(params[k].shape)]
    if unknown or bad:
        raise ConversionError(f"{what}: {len(unknown)} keys not in the model ({', '.join(unknown[:10])}); "
                              f"{len(bad)} shapes differ ({'; '.join(bad[:10])})")
    for k, v in values.items():
        params[k].set_data(Tensor(np.asarray(v, np.float32)))
    return sorted(set(params) - set(values))


def load_mit_imagenet(net: SegFormer, state_dict: Dict[str, np.ndarray]) -> List[str]:
    """Initialise ``net.encoder`` from official ImageNet MiT weights; every encoder parameter must be
    covered. Returns the parameters left at their init (the decoder)."""
    from .keymaps import ConversionError

    values = mit_imagenet_to_encoder(state_dict)
    left = load_param_dict(net, values, "ImageNet MiT -> SegFormer")
    missing = [k for k in left if k.startswith("encoder.")]
    if missing:
        raise ConversionError(f"ImageNet MiT -> SegFormer: {len(missing)} encoder parameters have no value "
                              f"(wrong variant?): {', '.join(missing[:10])}")
    return left


FAMILY = Family(input_size=512, input_sizes=dict(DEFAULT_INPUT), crop_pct=1.0,
                paper="SegFormer (arXiv 2105.15203)", status=STATUS)
