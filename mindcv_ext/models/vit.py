"""Vision Transformer (Dosovitskiy et al., ICLR 2021) in the timm / MAE layout.

Blocks are pre-norm (LayerNorm eps 1e-6) attention + MLP with a fused ``qkv`` projection, as in
timm's ``vision_transformer.py`` and the MAE / FastMIM code (ggjy/FastMIM.pytorch ``models_vit.py``,
``mim_vit_pretrain.py``). Parameter names mirror timm's (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.{i}.norm1/attn.qkv/attn.proj/norm2/mlp.fc1/mlp.fc2``, ``norm``, ``fc_norm``,
``head``), so checkpoints map by renaming LayerNorm entries only.

Position embedding: ``pos_embed='learned'`` (timm, fine-tuning; a grid other than the built one
is resized bicubically on the fly, checkpoints are resized on load by the converter) or
``'sincos'`` (fixed 2-D sin-cos recomputed for the current token grid, as FastMIM pre-training uses
it; nothing stored). Any input size divisible by the patch size is accepted.

``global_pool='token'`` classifies the class token after ``norm`` (timm); ``'avg'`` averages the
patch tokens and applies ``fc_norm`` instead of ``norm`` (MAE / FastMIM fine-tuning).
For masked image modelling ``forward_features`` returns all tokens (class token first) after
``norm``; ``output_stride`` and ``num_prefix_tokens`` describe them.
"""
from typing import Dict, Optional

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, TruncatedNormal, initializer

from ..layers.drop_path import DropPath
from ..layers.gelu import GELU
from ..layers.pos_embed import (PosEmbedError, resize_axis, resize_pos_embed_np, sincos_2d, sincos_2d_np,
                                sincos_omega)
from .registry import Family, register_model

__all__ = ["VisionTransformer", "Attention", "Block", "Mlp", "convert_official_state_dict",
           "vit_state_dict_from_torch", "VIT_CFGS"]

# name -> (patch, dim, depth, heads); timm's configurations (vision_transformer.py), plus a tiny
# CPU model (patch 8, dim 64, depth 4, heads 4) for the FastMIM demonstration.
VIT_CFGS = {
    "vit_small_patch16_224": (16, 384, 12, 6),
    "vit_base_patch16_224": (16, 768, 12, 12),
    "vit_large_patch16_224": (16, 1024, 24, 16),
    "vit_pico_patch8_56": (8, 64, 4, 4),
}
DEFAULT_INPUT = {"vit_pico_patch8_56": 56}
STATUS = "timm layout, tested (counts, converters, MIM pre-training)"


class VitConfigError(ValueError):
    """A ViT argument or input that does not fit the model."""


def _dense(cin: int, cout: int, bias: bool = True) -> nn.Dense:
    return nn.Dense(cin, cout, has_bias=bias, weight_init=TruncatedNormal(0.02), bias_init="zeros")


def _layer_norm(dim: int, eps: float) -> nn.LayerNorm:
    return nn.LayerNorm((dim,), epsilon=eps)


class Mlp(nn.Cell):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = _dense(dim, hidden)
        self.act = GELU()
        self.fc2 = _dense(hidden, dim)

    def construct(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Cell):
    """Multi-head self-attention with a fused qkv projection (rows ordered q | k | v, head-major)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise VitConfigError(f"Attention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = _dense(dim, 3 * dim, bias=qkv_bias)
        self.proj = _dense(dim, dim)

    def construct(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ops.softmax(ops.bmm(q * self.scale, k.swapaxes(-1, -2)), axis=-1)
        out = ops.bmm(attn, v).transpose(0, 2, 1, 3).reshape(b, n, c)
        return self.proj(out)


class Block(nn.Cell):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = _layer_norm(dim, norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = _layer_norm(dim, norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def construct(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Cell):
    def __init__(self, patch_size: int, in_channels: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size, pad_mode="valid", has_bias=True,
                              weight_init=TruncatedNormal(0.02), bias_init="zeros")

    def construct(self, x):
        x = self.proj(x)  # (B, D, h, w)
        b, d, h, w = x.shape
        return x.reshape(b, d, h * w).transpose(0, 2, 1)


class VisionTransformer(nn.Cell):
    """ViT classifier; see the module docstring for the options."""

    def __init__(self, patch_size: int = 16, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 num_classes: int = 1000, in_channels: int = 3, img_size: int = 224, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 global_pool: str = "token", pos_embed: str = "learned", norm_eps: float = 1e-6):
        super().__init__()
        if global_pool not in ("token", "avg"):
            raise VitConfigError(f"VisionTransformer: global_pool must be 'token' or 'avg', got {global_pool!r}")
        if pos_embed not in ("learned", "sincos"):
            raise VitConfigError(f"VisionTransformer: pos_embed must be 'learned' or 'sincos', got {pos_embed!r}")
        if img_size % patch_size:
            raise VitConfigError(f"VisionTransformer: img_size {img_size} is not divisible by patch {patch_size}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise VitConfigError(f"VisionTransformer: drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.patch_size = patch_size
        self.output_stride = patch_size
        self.num_prefix_tokens = 1
        self.embed_dim = self.num_features = embed_dim
        self.in_channels = in_channels
        self.global_pool = global_pool
        self.pos_embed_type = pos_embed
        self.grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_channels, embed_dim)
        self.cls_token = Parameter(initializer(Normal(1e-6), (1, 1, embed_dim)), name="cls_token")
        if pos_embed == "learned":
            self.pos_embed = Parameter(initializer(TruncatedNormal(0.02), (1, 1 + self.grid ** 2, embed_dim)),
                                       name="pos_embed")
        else:
            self.omega = Tensor(sincos_omega(embed_dim))
        rates = [float(r) for r in np.linspace(0.0, drop_path_rate, depth)]
        self.blocks = nn.SequentialCell([Block(embed_dim, num_heads, mlp_ratio, qkv_bias, rates[i], norm_eps)
                                         for i in range(depth)])
        if global_pool == "token":
            self.norm = _layer_norm(embed_dim, norm_eps)
        else:
            self.fc_norm = _layer_norm(embed_dim, norm_eps)
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.head = _dense(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def _grid_pos_embed(self, grid_h: int, grid_w: int):
        """(1, grid_h * grid_w, D) position embedding of the patch tokens for the current grid."""
        if self.pos_embed_type == "sincos":
            return sincos_2d(self.omega, grid_h, grid_w)
        pos = self.pos_embed[:, 1:]
        if grid_h == self.grid and grid_w == self.grid:
            return pos
        pos = pos.reshape(1, self.grid, self.grid, -1)
        pos = resize_axis(resize_axis(pos, 1, grid_h), 2, grid_w)
        return pos.reshape(1, grid_h * grid_w, -1)

    def _cls_pos(self):
        if self.pos_embed_type == "sincos":
            return self.cls_token  # the sin-cos table has a zero row for the class token (MAE)
        return self.cls_token + self.pos_embed[:, :1]

    def forward_tokens(self, x):
        """Patch embedding + position + class token + blocks (no final norm): (B, 1 + h*w, D)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"VisionTransformer expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % self.patch_size or x.shape[3] % self.patch_size:
            raise ValueError(f"VisionTransformer: input {tuple(x.shape[2:])} is not divisible by the patch "
                                 f"size {self.patch_size}")
        grid_h, grid_w = x.shape[2] // self.patch_size, x.shape[3] // self.patch_size
        x = self.patch_embed(x) + self._grid_pos_embed(grid_h, grid_w)
        cls = ops.broadcast_to(self._cls_pos(), (x.shape[0], 1, x.shape[2]))
        return self.blocks(ops.concat([cls, x], axis=1))

    def forward_features(self, x):
        """All tokens after the final norm (class token first), as FastMIM's pre-training encoder."""
        x = self.forward_tokens(x)
        return self.norm(x) if self.global_pool == "token" else x

    def forward_head(self, x):
        if self.global_pool == "avg":
            x = self.fc_norm(ops.mean(x[:, self.num_prefix_tokens:], 1))
        else:
            x = x[:, 0]
        return self.head(self.dropout(x))

    def construct(self, x):
        return self.forward_head(self.forward_features(x))


def _build(name: str, num_classes: int, in_channels: int, **kwargs) -> VisionTransformer:
    patch, dim, depth, heads = VIT_CFGS[name]
    kwargs.setdefault("img_size", DEFAULT_INPUT.get(name, 224))
    # num_heads may be overridden: FastMIM pre-trains ViT-B with 6 heads (see mindcv_ext.mim)
    heads = kwargs.pop("num_heads", heads)
    return VisionTransformer(patch, dim, depth, heads, num_classes=num_classes, in_channels=in_channels, **kwargs)


@register_model
def vit_small_patch16_224(num_classes: int = 1000, in_channels: int = 3, **kwargs):
    """ViT-S/16: 22,050,664 params (timm)."""
    return _build("vit_small_patch16_224", num_classes, in_channels, **kwargs)


@register_model
def vit_base_patch16_224(num_classes: int = 1000, in_channels: int = 3, **kwargs):
    """ViT-B/16: 86,567,656 params (timm)."""
    return _build("vit_base_patch16_224", num_classes, in_channels, **kwargs)


@register_model
def vit_large_patch16_224(num_classes: int = 1000, in_channels: int = 3, **kwargs):
    """ViT-L/16: 304,326,632 params (timm)."""
    return _build("vit_large_patch16_224", num_classes, in_channels, **kwargs)


@register_model
def vit_pico_patch8_56(num_classes: int = 10, in_channels: int = 3, **kwargs):
    """A tiny ViT for CPU runs: patch 8, dim 64, depth 4, 4 heads, 56 px (7 x 7 tokens)."""
    return _build("vit_pico_patch8_56", num_classes, in_channels, **kwargs)


# ----------------------------------------------------------------------------- checkpoints

_DROP_PREFIXES = ("decoder_", "mask_token")  # FastMIM / MAE pre-training parts outside the encoder


def _ln_rename(key: str) -> str:
    for norm in ("norm1", "norm2", "norm", "fc_norm"):
        for torch_name, ms_name in (("weight", "gamma"), ("bias", "beta")):
            if key.endswith(f"{norm}.{torch_name}") and (key == f"{norm}.{torch_name}" or
                                                         key.endswith(f".{norm}.{torch_name}")):
                return key[: -len(torch_name)] + ms_name
    return key


def vit_state_dict_from_torch(state_dict: Dict[str, np.ndarray], grid: Optional[int] = None,
                              global_pool: str = "token", num_classes: Optional[int] = None,
                              pos_embed: str = "learned") -> Dict[str, np.ndarray]:
    """Map a timm / MAE / FastMIM ViT state dict onto :class:`VisionTransformer` names.

    - LayerNorm ``weight/bias`` -> ``gamma/beta``; Linear and conv layouts are the same.
    - BEiT/SimMIM-style ``attn.q_bias`` + ``attn.v_bias`` become one ``attn.qkv.bias`` (k bias 0).
    - Pre-training parts (``mask_token``, ``decoder_*``) and an ``encoder.`` prefix are dropped.
    - ``pos_embed`` is resized bicubically to ``grid`` x ``grid`` (e.g. FastMIM's 8x8 -> 14x14);
      with ``pos_embed='sincos'`` it is dropped (the model recomputes it).
    - ``global_pool='avg'`` keeps ``fc_norm`` and drops ``norm`` (MAE fine-tuning: the pre-trained
      final norm is not used); ``'token'`` drops ``fc_norm``.
    - ``head`` is dropped when its class count differs from ``num_classes``.
    """
    from .keymaps import ConversionError

    sd = {(k[len("encoder."):] if k.startswith("encoder.") else k): np.asarray(v) for k, v in state_dict.items()}
    if "patch_embed.proj.weight" not in sd or not any(k.startswith("blocks.") for k in sd):
        raise ConversionError("this does not look like a ViT checkpoint: no 'patch_embed.proj.weight' or "
                              f"'blocks.*' entries (first keys: {', '.join(list(sd)[:5])})")
    out: Dict[str, np.ndarray] = {}
    for key, value in sd.items():
        if key.startswith(_DROP_PREFIXES) or key.endswith("relative_position_index"):
            continue
        if key.endswith(("attn.q_bias", "attn.v_bias")):
            continue
        if key == "pos_embed":
            if pos_embed == "sincos":
                continue
            if grid is not None:
                try:
                    value = resize_pos_embed_np(value, (grid, grid), num_prefix_tokens=1)
                except PosEmbedError as err:
                    raise ConversionError(f"pos_embed: {err}") from err
        if global_pool == "avg" and key.startswith("norm."):
            continue
        if global_pool == "token" and key.startswith("fc_norm."):
            continue
        if key.startswith("head.") and num_classes is not None and value.shape[0] != num_classes:
            continue
        out[_ln_rename(key)] = value
    for key in sd:
        if key.endswith("attn.q_bias"):
            prefix = key[: -len("q_bias")]
            q_bias, v_bias = sd[key], sd[prefix + "v_bias"]
            out[prefix + "qkv.bias"] = np.concatenate([q_bias, np.zeros_like(q_bias), v_bias])
    return out


def convert_official_state_dict(state_dict: Dict[str, np.ndarray], model_name: str) -> Dict[str, np.ndarray]:
    """timm / MAE / FastMIM checkpoint -> ``model_name`` built with its defaults (token pooling,
    learned position embedding at the model's default grid, 1000 classes)."""
    from .keymaps import ConversionError

    if model_name not in VIT_CFGS:
        raise ConversionError(f"convert_official_state_dict (vit): unknown model '{model_name}' "
                              f"(one of {', '.join(VIT_CFGS)})")
    patch = VIT_CFGS[model_name][0]
    grid = DEFAULT_INPUT.get(model_name, 224) // patch
    return vit_state_dict_from_torch(state_dict, grid=grid, global_pool="token")


def sincos_table(dim: int, grid: int, cls_token: bool = True) -> np.ndarray:
    """The fixed (prefix + grid^2, dim) sin-cos table with a zero class-token row (MAE layout)."""
    table = sincos_2d_np(dim, grid, grid)
    if cls_token:
        table = np.concatenate([np.zeros((1, dim)), table], axis=0)
    return table.astype(np.float32)


FAMILY = Family(converter=convert_official_state_dict, input_sizes=dict(DEFAULT_INPUT), status=STATUS,
                paper="Dosovitskiy et al., An Image is Worth 16x16 Words, ICLR 2021; pre-training: Guo et al., FastMIM, 2022")
