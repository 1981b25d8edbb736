"""Swin Transformer (Liu et al., ICCV 2021) in the official layout (microsoft/Swin-Transformer), as
FastMIM pre-trains and fine-tunes it (ggjy/FastMIM.pytorch ``mim_swin_pretrain.py``).

Window attention with a learned relative-position-bias table ((2w-1)^2 x heads), shifted windows
(cyclic shift by w/2 on every second block, with the -100 attention mask between regions), patch
merging (2x2 neighbours -> LayerNorm(4C) -> Linear(4C, 2C, no bias)) at the end of stages 1-3.
Parameter names follow the official code: ``patch_embed.proj/norm``,
``layers.{s}.blocks.{j}.norm1/attn.relative_position_bias_table/attn.qkv/attn.proj/norm2/mlp.fc1/fc2``,
``layers.{s}.downsample.norm/reduction``, ``norm``, ``head``.

The window size is a parameter and nothing depends on the built image size: the shift mask and
the relative index are computed for each stage's actual map. As in the official code, a stage map
no larger than the window uses one window covering it (window = map side, no shift); otherwise each
side must be divisible by the window (FastMIM: window 4 at 128 px, window 7 at 224 px).
``forward_features`` returns the final-norm tokens (B, h*w, C) at stride 32 (``output_stride``).
"""
from typing import Dict, Optional, Sequence

import numpy as np
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import TruncatedNormal, initializer

from ..layers.drop_path import DropPath
from ..layers.gelu import GELU
from ..layers.pos_embed import PosEmbedError, resize_rel_pos_bias_table
from .registry import Family, register_model

__all__ = ["SwinTransformer", "WindowAttention", "SwinBlock", "PatchMerging", "SWIN_CFGS",
           "convert_official_state_dict", "swin_state_dict_from_torch"]

# name -> (embed dim, depths, heads, window); the official / timm configurations.
SWIN_CFGS = {
    "swin_tiny_patch4_window7_224": (96, (2, 2, 6, 2), (3, 6, 12, 24), 7),
    "swin_small_patch4_window7_224": (96, (2, 2, 18, 2), (3, 6, 12, 24), 7),
    "swin_base_patch4_window7_224": (128, (2, 2, 18, 2), (4, 8, 16, 32), 7),
    "swin_large_patch4_window7_224": (192, (2, 2, 18, 2), (6, 12, 24, 48), 7),
}
STATUS = "official layout, tested (counts, shift mask, converters)"
MASK_VALUE = -100.0  # the official shifted-window mask value


class SwinConfigError(ValueError):
    """A Swin argument or input size that the window constraint does not allow."""


def _dense(cin: int, cout: int, bias: bool = True) -> nn.Dense:
    return nn.Dense(cin, cout, has_bias=bias, weight_init=TruncatedNormal(0.02), bias_init="zeros")


def stage_window(height: int, width: int, window: int):
    """(effective window, shift) of a stage map, or a SwinConfigError.

    Official rule (``SwinTransformerBlock``): a map no larger than the window gets one window of
    the map's size and no shift; otherwise the window and shift ``window // 2`` apply.
    """
    if min(height, width) <= window:
        eff = min(height, width)
        if height != width:
            raise ValueError(f"Swin: a {height}x{width} stage map smaller than the window {window} must be square")
        return eff, 0
    if height % window or width % window:
        raise ValueError(f"Swin: stage map {height}x{width} is not divisible by the window {window}; "
                              "choose an input size whose stage maps are multiples of the window "
                              "(or no larger than it)")
    return window, window // 2


def relative_position_index_np(eff: int, window: int) -> np.ndarray:
    """(eff^2, eff^2) indices into a ((2*window-1)^2)-row table (official indexing, dh major)."""
    coords = np.stack(np.meshgrid(np.arange(eff), np.arange(eff), indexing="ij")).reshape(2, -1)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return (rel[0] * (2 * window - 1) + rel[1]).astype(np.int32)


def shift_mask_np(height: int, width: int, window: int, shift: int) -> np.ndarray:
    """(num_windows, w^2, w^2) mask: 0 within a region, -100 across regions (official SW-MSA)."""
    img = np.zeros((height, width))
    cnt = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            img[hs, ws] = cnt
            cnt += 1
    win = img.reshape(height // window, window, width // window, window).transpose(0, 2, 1, 3)
    win = win.reshape(-1, window * window)
    diff = win[:, None, :] - win[:, :, None]
    return np.where(diff != 0, MASK_VALUE, 0.0).astype(np.float32)


def _shift_mask(height: int, width: int, window: int, shift: int):
    """``shift_mask_np`` from ops (graph-mode safe): region ids from comparisons of static aranges."""
    rows = (ops.arange(height) >= height - window).astype(np.int32) + (ops.arange(height) >= height - shift).astype(np.int32)
    cols = (ops.arange(width) >= width - window).astype(np.int32) + (ops.arange(width) >= width - shift).astype(np.int32)
    img = (rows.reshape(-1, 1) * 3 + cols.reshape(1, -1)).astype(np.float32)
    win = img.reshape(height // window, window, width // window, window).transpose(0, 2, 1, 3)
    win = win.reshape(-1, window * window)
    diff = win.expand_dims(1) - win.expand_dims(2)
    return ops.where(diff != 0, ops.full_like(diff, MASK_VALUE), ops.zeros_like(diff))


def _relative_index(eff: int, window: int):
    coords = ops.arange(eff)
    ch = ops.tile(coords.reshape(-1, 1), (1, eff)).reshape(-1)
    cw = ops.tile(coords.reshape(1, -1), (eff, 1)).reshape(-1)
    dh = ch.reshape(-1, 1) - ch.reshape(1, -1) + (window - 1)
    dw = cw.reshape(-1, 1) - cw.reshape(1, -1) + (window - 1)
    return (dh * (2 * window - 1) + dw).reshape(-1)


def _cyclic_shift(x, shift: int):
    """``torch.roll(x, (-shift, -shift), (1, 2))`` on (B, H, W, C) by slicing and concatenation
    (the Roll kernel is not available on every backend)."""
    h, w = x.shape[1], x.shape[2]
    sh, sw = shift % h, shift % w
    x = ops.concat([x[:, sh:], x[:, :sh]], axis=1)
    return ops.concat([x[:, :, sw:], x[:, :, :sw]], axis=2)


class Mlp(nn.Cell):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = _dense(dim, hidden)
        self.act = GELU()
        self.fc2 = _dense(hidden, dim)

    def construct(self, x):
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Cell):
    """Multi-head attention inside windows with the relative position bias."""

    def __init__(self, dim: int, window: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise SwinConfigError(f"WindowAttention: dim {dim} is not divisible by num_heads {num_heads}")
        self.window = window
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.relative_position_bias_table = Parameter(
            initializer(TruncatedNormal(0.02), ((2 * window - 1) ** 2, num_heads)),
            name="relative_position_bias_table")
        self.qkv = _dense(dim, 3 * dim, bias=qkv_bias)
        self.proj = _dense(dim, dim)

    def construct(self, x, rel_index, mask):
        """x: (B * num_windows, n, C) with n = window^2; rel_index: (n * n,) table rows;
        mask: (num_windows, n, n), zeros for unshifted windows."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, self.head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = ops.bmm(q, k.swapaxes(-1, -2))  # (bw, heads, n, n)
        bias = ops.gather(self.relative_position_bias_table, rel_index, 0)
        attn = attn + bias.reshape(n, n, self.num_heads).transpose(2, 0, 1).expand_dims(0)
        nw = mask.shape[0]
        attn = attn.reshape(bw // nw, nw, self.num_heads, n, n) + mask.expand_dims(1).expand_dims(0)
        attn = attn.reshape(bw, self.num_heads, n, n)
        attn = ops.softmax(attn, axis=-1)
        out = ops.bmm(attn, v).transpose(0, 2, 1, 3).reshape(bw, n, c)
        return self.proj(out)


def window_partition(x, window: int):
    """(B, H, W, C) -> (B * H/w * W/w, w*w, C)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def window_reverse(windows, window: int, height: int, width: int):
    c = windows.shape[-1]
    x = windows.reshape(-1, height // window, width // window, window, window, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, height, width, c)


class SwinBlock(nn.Cell):
    """(shifted) window attention + MLP, pre-norm; ``shifted`` marks the odd blocks of a stage."""

    def __init__(self, dim: int, num_heads: int, window: int, shifted: bool, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_path: float = 0.0):
        super().__init__()
        self.window = window
        self.shifted = shifted
        self.norm1 = nn.LayerNorm((dim,), epsilon=1e-5)
        self.attn = WindowAttention(dim, window, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm((dim,), epsilon=1e-5)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def construct(self, x):
        """x: (B, H, W, C) stage map -> same shape."""
        b, height, width, c = x.shape
        eff, shift = stage_window(height, width, self.window)
        if not self.shifted:
            shift = 0
        shortcut = x
        x = self.norm1(x)
        if shift > 0:
            x = _cyclic_shift(x, shift)
            mask = _shift_mask(height, width, eff, shift)
        else:
            mask = ops.zeros(((height // eff) * (width // eff), eff * eff, eff * eff), x.dtype)
        windows = self.attn(window_partition(x, eff), _relative_index(eff, self.window), mask)
        x = window_reverse(windows, eff, height, width)
        if shift > 0:
            x = _cyclic_shift(x, -shift)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Cell):
    """2x2 neighbours (order x0 = (0,0), x1 = (1,0), x2 = (0,1), x3 = (1,1)) -> LN(4C) -> Linear(4C, 2C)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm((4 * dim,), epsilon=1e-5)
        self.reduction = nn.Dense(4 * dim, 2 * dim, has_bias=False, weight_init=TruncatedNormal(0.02))

    def construct(self, x):
        """(B, H, W, C) -> (B, H/2, W/2, 2C)."""
        b, height, width, c = x.shape
        if height % 2 or width % 2:
            raise ValueError(f"PatchMerging: stage map {height}x{width} has an odd side")
        x = x.reshape(b, height // 2, 2, width // 2, 2, c)
        x0, x1 = x[:, :, 0, :, 0], x[:, :, 1, :, 0]
        x2, x3 = x[:, :, 0, :, 1], x[:, :, 1, :, 1]
        x = ops.concat([x0, x1, x2, x3], axis=-1)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Cell):
    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, qkv_bias: bool,
                 drop_paths: Sequence[float], downsample: bool):
        super().__init__()
        self.blocks = nn.CellList([SwinBlock(dim, num_heads, window, j % 2 == 1, mlp_ratio, qkv_bias, drop_paths[j])
                                   for j in range(depth)])
        self.downsample = PatchMerging(dim) if downsample else None

    def construct(self, x):
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class PatchEmbed(nn.Cell):
    def __init__(self, patch_size: int, in_channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size, pad_mode="valid", has_bias=True,
                              weight_init=TruncatedNormal(0.02), bias_init="zeros")
        self.norm = nn.LayerNorm((dim,), epsilon=1e-5)

    def construct(self, x):
        """(B, 3, H, W) -> (B, H/p, W/p, C) channels-last map."""
        return self.norm(self.proj(x).transpose(0, 2, 3, 1))


class SwinTransformer(nn.Cell):
    """Swin classifier (global average pool over the final-norm tokens, then ``head``)."""

    def __init__(self, embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 7, num_classes: int = 1000,
                 in_channels: int = 3, patch_size: int = 4, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.1):
        super().__init__()
        if len(depths) != len(num_heads):
            raise SwinConfigError(f"Swin: depths {tuple(depths)} and num_heads {tuple(num_heads)} differ in length")
        if not isinstance(window_size, int) or window_size < 1:
            raise SwinConfigError(f"Swin: window_size must be a positive integer, got {window_size!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise SwinConfigError(f"Swin: drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.patch_size = patch_size
        self.window_size = window_size
        self.depths = tuple(depths)
        self.in_channels = in_channels
        self.num_stages = len(depths)
        self.output_stride = patch_size * 2 ** (self.num_stages - 1)
        self.num_prefix_tokens = 0
        self.num_features = int(embed_dim * 2 ** (self.num_stages - 1))
        self.patch_embed = PatchEmbed(patch_size, in_channels, embed_dim)
        rates = [float(r) for r in np.linspace(0.0, drop_path_rate, sum(depths))]
        layers = []
        for s, (depth, heads) in enumerate(zip(depths, num_heads)):
            start = sum(depths[:s])
            layers.append(BasicLayer(embed_dim * 2 ** s, depth, heads, window_size, mlp_ratio, qkv_bias,
                                     rates[start:start + depth], downsample=s < self.num_stages - 1))
        self.layers = nn.CellList(layers)
        self.norm = nn.LayerNorm((self.num_features,), epsilon=1e-5)
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.head = _dense(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def check_input_size(self, height: int, width: int) -> None:
        """Raise SwinConfigError unless every stage map fits the window rule."""
        if height % self.output_stride or width % self.output_stride:
            raise ValueError(f"Swin: input {height}x{width} is not divisible by {self.output_stride} "
                                  f"(patch {self.patch_size} x {2 ** (self.num_stages - 1)} merges)")
        h, w = height // self.patch_size, width // self.patch_size
        for _ in range(self.num_stages):
            stage_window(h, w, self.window_size)
            h, w = h // 2, w // 2

    def forward_features(self, x):
        """(B, 3, H, W) -> final-norm tokens (B, H/32 * W/32, C), row-major."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SwinTransformer expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % self.output_stride or x.shape[3] % self.output_stride:
            raise ValueError(f"Swin: input {x.shape[2]}x{x.shape[3]} is not divisible by {self.output_stride}")
        # the window rule is checked per stage inside the blocks (stage_window); ``check_input_size``
        # does the same up front on the host (a call to it here would break graph-mode gradients)
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        b, h, w, c = x.shape
        return self.norm(x.reshape(b, h * w, c))

    def forward_head(self, x):
        return self.head(self.dropout(ops.mean(x, 1)))

    def construct(self, x):
        return self.forward_head(self.forward_features(x))


def _build(name: str, num_classes: int, in_channels: int, **kwargs) -> SwinTransformer:
    dim, depths, heads, window = SWIN_CFGS[name]
    kwargs.setdefault("window_size", window)
    return SwinTransformer(dim, depths, heads, num_classes=num_classes, in_channels=in_channels, **kwargs)


@register_model
def swin_tiny_patch4_window7_224(num_classes: int = 1000, in_channels: int = 3, **kwargs):
    """Swin-T: 28,288,354 params (timm)."""
    return _build("swin_tiny_patch4_window7_224", num_classes, in_channels, **kwargs)


@register_model
def swin_small_patch4_window7_224(num_classes: int = 1000, in_channels: int = 3, **kwargs):
    """Swin-S: 49,606,258 params (timm)."""
    return _build("swin_small_patch4_window7_224", num_classes, in_channels, **kwargs)


@register_model
def swin_base_patch4_window7_224(num_classes: int = 1000, in_channels: int = 3, **kwargs):
    """Swin-B: 87,768,224 params (timm)."""
    return _build("swin_base_patch4_window7_224", num_classes, in_channels, **kwargs)


@register_model
def swin_large_patch4_window7_224(num_classes: int = 1000, in_channels: int = 3, **kwargs):
    """Swin-L: 196,532,476 params (timm)."""
    return _build("swin_large_patch4_window7_224", num_classes, in_channels, **kwargs)


# ----------------------------------------------------------------------------- checkpoints

_DROP_SUFFIXES = ("relative_position_index", "attn_mask", "relative_coords_table")
_DROP_PREFIXES = ("decoder_", "mask_token")


def _ln_rename(key: str) -> str:
    for norm in ("norm1", "norm2", "norm"):
        for torch_name, ms_name in (("weight", "gamma"), ("bias", "beta")):
            if key == f"{norm}.{torch_name}" or key.endswith(f".{norm}.{torch_name}"):
                return key[: -len(torch_name)] + ms_name
    return key


def _timm_to_official(sd: Dict[str, np.ndarray], num_stages: int) -> Dict[str, np.ndarray]:
    """timm >= 0.9 puts stage s's patch merging at the start of stage s + 1 and names the classifier
    ``head.fc``; move both back to the official places. Old-style (official) keys pass unchanged."""
    merging_last = any(k.startswith(f"layers.{num_stages - 1}.downsample.") for k in sd)
    merging_first = any(k.startswith("layers.0.downsample.") for k in sd)
    timm_style = "head.fc.weight" in sd or (merging_last and not merging_first)
    if not timm_style:
        return sd
    out = {}
    for key, value in sd.items():
        if key.startswith("head.fc."):
            key = "head." + key[len("head.fc."):]
        elif key.startswith("layers.") and ".downsample." in key:
            parts = key.split(".")
            parts[1] = str(int(parts[1]) - 1)
            key = ".".join(parts)
        out[key] = value
    return out


def swin_state_dict_from_torch(state_dict: Dict[str, np.ndarray], window_size: int, num_stages: int = 4,
                               num_classes: Optional[int] = None, mode: str = "geometric") -> Dict[str, np.ndarray]:
    """Map an official / timm / FastMIM Swin state dict onto :class:`SwinTransformer` names.

    - FastMIM pre-training checkpoints: ``encoder.`` prefix stripped, ``mask_token`` / ``decoder_*`` dropped.
    - timm >= 0.9 layout (merging at stage start, ``head.fc``) moved to the official layout.
    - ``relative_position_index`` / ``attn_mask`` buffers dropped (recomputed); every
      ``relative_position_bias_table`` resized to ``window_size`` (FastMIM fine-tuning: 7x7 entries
      of window 4 -> 13x13 of window 7) with ``mode`` (``'geometric'``, the official default, or ``'bicubic'``).
    - LayerNorm ``weight/bias`` -> ``gamma/beta``; ``head`` dropped if its class count differs.
    """
    from .keymaps import ConversionError

    sd = {(k[len("encoder."):] if k.startswith("encoder.") else k): np.asarray(v) for k, v in state_dict.items()}
    if "patch_embed.proj.weight" not in sd or not any(k.startswith("layers.") for k in sd):
        raise ConversionError("this does not look like a Swin checkpoint: no 'patch_embed.proj.weight' or "
                              f"'layers.*' entries (first keys: {', '.join(list(sd)[:5])})")
    sd = _timm_to_official(sd, num_stages)
    out: Dict[str, np.ndarray] = {}
    for key, value in sd.items():
        if key.startswith(_DROP_PREFIXES) or key.endswith(_DROP_SUFFIXES):
            continue
        if key.endswith("relative_position_bias_table"):
            try:
                value = resize_rel_pos_bias_table(value, window_size, mode=mode)
            except PosEmbedError as err:
                raise ConversionError(f"{key}: {err}") from err
        if key.startswith("head.") and num_classes is not None and value.shape[0] != num_classes:
            continue
        out[_ln_rename(key)] = value
    return out


def convert_official_state_dict(state_dict: Dict[str, np.ndarray], model_name: str) -> Dict[str, np.ndarray]:
    """Official / timm / FastMIM checkpoint -> ``model_name`` with its default window (7)."""
    from .keymaps import ConversionError

    if model_name not in SWIN_CFGS:
        raise ConversionError(f"convert_official_state_dict (swin): unknown model '{model_name}' "
                              f"(one of {', '.join(SWIN_CFGS)})")
    return swin_state_dict_from_torch(state_dict, SWIN_CFGS[model_name][3])


FAMILY = Family(converter=convert_official_state_dict, status=STATUS,
                paper="Liu et al., Swin Transformer, ICCV 2021; pre-training: Guo et al., FastMIM, 2022")
