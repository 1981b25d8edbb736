"""SNN-MLP (Li et al., "Brain-inspired Multilayer Perceptron with Spiking Neurons", CVPR 2022).

Layout, block order, parameter names and shapes follow the official PyTorch release as recorded
in the official repository ( huawei-noah/Efficient-AI-Backbones,
``snnmlp_pytorch``), so official state dicts map onto these Cells name for name:

* ``patch_embed``: 4x4/4 conv (bias) -> GroupNorm(1, C);
* four stages ``layers.{0..3}`` of ``LIFBlock``s at C, 2C, 4C, 8C channels; stages 0-2 end with
  ``PatchMerging`` (2x2 phases -> GroupNorm -> 1x1 conv without bias);
* ``norm`` GroupNorm(1, 8C) -> global average pool -> ``head`` Dense.

Every norm is GroupNorm(1, C) (eps 1e-5); every "linear" inside the blocks is a 1x1 conv. A
``LIFBlock`` is ``x + dp(lif_module(norm1(x)))`` then ``x + dp(mlp(norm2(x)))``; the LIF module
runs conv1 -> GN -> GELU -> depthwise 3x3 -> GN -> GELU, then two parallel branches (LIF along H
then conv2_1 -> GELU; LIF along W then conv2_2 -> GELU), sums them, and ends with GN -> conv3.
GELU is the exact erf form. The LIF scalars ``tau``/``Vth`` are learnable per ``LIFSpike``; with
``lif_fix_tau`` / ``lif_fix_vth`` they are non-trainable Parameters (buffers) that still load and save.
"""
from typing import Dict, Optional, Sequence

import numpy as np
from mindspore import nn, ops
from mindspore.common.initializer import TruncatedNormal, Zero, initializer

from ascend_kernels.padding import pad_end

from ..layers.drop_path import DropPath
from ..layers.gelu import GELU
from ..layers.helpers import parse_kernels
from ..layers.lif import LIFSpike
from .registry import Family, register_model

__all__ = ["SNNMLP", "LIFBlock", "LIFModule", "PatchMerging", "snnmlp_t", "snnmlp_s", "snnmlp_b",
           "convert_official_state_dict", "official_key_map", "lif_param_filter"]

# Variant table (from the official configs/*.yaml).
MODEL_CFGS = {
    "snnmlp_t": dict(embed_dim=96, depths=(2, 2, 6, 2), drop_path_rate=0.2),
    "snnmlp_s": dict(embed_dim=96, depths=(2, 2, 18, 2), drop_path_rate=0.3),
    "snnmlp_b": dict(embed_dim=128, depths=(2, 2, 18, 2), drop_path_rate=0.5),
}

# Initial LIF values used by the official training script (--lif_init_tau / --lif_init_vth
# defaults); released checkpoints carry learned values.
LIF_INIT_TAU = 0.25
LIF_INIT_VTH = 0.1


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(1, channels, eps=1e-5, affine=True)


def _conv1x1(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=1, pad_mode="valid", has_bias=bias)


class LIFModule(nn.Cell):
    """Token mixing with horizontal and vertical group LIF (official name ``lif_module``)."""

    def __init__(self, dim: int, lif: int = 4, init_tau: float = LIF_INIT_TAU, init_vth: float = LIF_INIT_VTH,
                 fix_tau: bool = False, fix_vth: bool = False, backend: Optional[str] = None):
        super().__init__()
        self.dim = dim
        self.conv1 = _conv1x1(dim, dim)
        self.conv2_1 = _conv1x1(dim, dim)
        self.conv2_2 = _conv1x1(dim, dim)
        self.conv3 = _conv1x1(dim, dim)
        self.dw1 = nn.Conv2d(dim, dim, 3, stride=1, pad_mode="pad", padding=1, group=dim, has_bias=True)
        self.norm1 = _norm(dim)
        self.norm2 = _norm(dim)
        self.norm3 = _norm(dim)
        self.actn = GELU()
        lif_kw = dict(lif=lif, init_tau=init_tau, init_vth=init_vth, fix_tau=fix_tau, fix_vth=fix_vth,
                      backend=backend)
        self.lif1 = LIFSpike(dim=2, **lif_kw)  # along H (vertical)
        self.lif2 = LIFSpike(dim=3, **lif_kw)  # along W (horizontal)

    def construct(self, x):
        x = self.actn(self.norm1(self.conv1(x)))
        x = self.actn(self.norm2(self.dw1(x)))
        along_h = self.actn(self.conv2_1(self.lif1(x)))
        along_w = self.actn(self.conv2_2(self.lif2(x)))
        return self.conv3(self.norm3(along_h + along_w))


class ConvMlp(nn.Cell):
    """1x1 conv -> GELU -> dropout -> 1x1 conv -> dropout (official name ``mlp``: fc1, fc2)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = _conv1x1(dim, hidden)
        self.act = GELU()
        self.fc2 = _conv1x1(hidden, dim)
        self.drop = nn.Dropout(p=drop) if drop > 0 else nn.Identity()

    def construct(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class LIFBlock(nn.Cell):
    """Pre-norm residual block: LIF token mixing, then the conv MLP (official name ``blocks.{j}``)."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0,
                 **lif_kw):
        super().__init__()
        self.norm1 = _norm(dim)
        self.lif_module = LIFModule(dim, **lif_kw)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = _norm(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), drop)

    def construct(self, x):
        x = x + self.drop_path(self.lif_module(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Cell):
    """Halve H and W: the four 2x2 phases are concatenated in the official channel order
    (even h, even w), (odd h, even w), (even h, odd w), (odd h, odd w), then GroupNorm and a 1x1
    conv 4C -> 2C without bias. Odd sizes are zero-padded at the bottom/right first."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = _norm(4 * dim)
        self.reduction = _conv1x1(4 * dim, 2 * dim, bias=False)

    def construct(self, x):
        h, w = x.shape[2], x.shape[3]
        if h % 2 == 1 or w % 2 == 1:
            x = pad_end(x, w % 2, h % 2)
            h, w = h + h % 2, w + w % 2
        n, c = x.shape[0], x.shape[1]
        # (n, c, h/2, hp, w/2, wp) -> (n, wp, hp, c, h/2, w/2): channel block wp*2 + hp gives the
        # official order x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2] without
        # strided slices
        x = x.reshape((n, c, h // 2, 2, w // 2, 2)).transpose((0, 5, 3, 1, 2, 4))
        x = x.reshape((n, 4 * c, h // 2, w // 2))
        return self.reduction(self.norm(x))


class BasicLayer(nn.Cell):
    """One stage (official name ``layers.{i}``): ``blocks`` and an optional ``downsample``."""

    def __init__(self, dim: int, depth: int, drop_path: Sequence[float], downsample: bool, mlp_ratio: float,
                 drop: float, **lif_kw):
        super().__init__()
        self.blocks = nn.CellList([LIFBlock(dim, mlp_ratio, drop, drop_path[i], **lif_kw) for i in range(depth)])
        self.downsample = PatchMerging(dim) if downsample else nn.Identity()

    def construct(self, x):
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x)


class PatchEmbed(nn.Cell):
    def __init__(self, in_channels: int, embed_dim: int, patch_size: int = 4):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size, pad_mode="valid", has_bias=True)
        self.norm = _norm(embed_dim)

    def construct(self, x):
        h, w = x.shape[2], x.shape[3]
        p = self.patch_size
        if h % p != 0 or w % p != 0:
            x = pad_end(x, (p - w % p) % p, (p - h % p) % p)
        return self.norm(self.proj(x))


class SNNMLP(nn.Cell):
    """SNN-MLP classifier.

    Args:
        num_classes: classifier outputs (0 gives the pooled features).
        in_channels: input image channels.
        embed_dim, depths: stage widths C, 2C, 4C, 8C and block counts.
        mlp_ratio: hidden width of the block MLPs.
        drop_rate: dropout in the MLPs and before the head (0 in the recipe).
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        lif: LIF group size (4; -1 turns every LIF off).
        lif_init_tau, lif_init_vth, lif_fix_tau, lif_fix_vth: LIF scalar init / freezing.
        kernels: LIF backend for every ``LIFSpike`` (None = the global choice of ascend_kernels).
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, embed_dim: int = 96,
                 depths: Sequence[int] = (2, 2, 6, 2), mlp_ratio: float = 4.0, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.2, patch_size: int = 4, lif: int = 4,
                 lif_init_tau: float = LIF_INIT_TAU, lif_init_vth: float = LIF_INIT_VTH,
                 lif_fix_tau: bool = False, lif_fix_vth: bool = False, kernels: Optional[str] = None):
        super().__init__()
        if num_classes < 0 or in_channels < 1:
            raise ValueError(f"SNNMLP: num_classes must be >= 0 and in_channels >= 1, got {num_classes}, {in_channels}")
        if not 0.0 <= drop_path_rate < 1.0 or not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"SNNMLP: drop rates must be in [0, 1), got drop_rate={drop_rate}, "
                             f"drop_path_rate={drop_path_rate}")
        if len(depths) < 1 or any(int(d) < 1 for d in depths):
            raise ValueError(f"SNNMLP: depths must be positive block counts, got {tuple(depths)}")
        self.num_classes = num_classes
        self.num_features = int(embed_dim * 2 ** (len(depths) - 1))
        self.patch_embed = PatchEmbed(in_channels, embed_dim, patch_size)
        self.pos_drop = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        rates = np.linspace(0.0, drop_path_rate, int(sum(depths))).tolist()
        lif_kw = dict(lif=lif, init_tau=lif_init_tau, init_vth=lif_init_vth, fix_tau=lif_fix_tau,
                      fix_vth=lif_fix_vth, backend=parse_kernels(kernels))
        layers, start = [], 0
        for i, depth in enumerate(depths):
            layers.append(BasicLayer(int(embed_dim * 2 ** i), int(depth), rates[start:start + depth],
                                     downsample=i < len(depths) - 1, mlp_ratio=mlp_ratio, drop=drop_rate, **lif_kw))
            start += depth
        self.layers = nn.CellList(layers)
        self.norm = _norm(self.num_features)
        self.head = nn.Dense(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:  # official _init_weights: trunc-normal(0.02) Linear, zero bias
            self.head.weight.set_data(initializer(TruncatedNormal(0.02), self.head.weight.shape, self.head.weight.dtype))
            self.head.bias.set_data(initializer(Zero(), self.head.bias.shape, self.head.bias.dtype))

    def forward_features(self, x):
        x = self.pos_drop(self.patch_embed(x))
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).mean(axis=(2, 3))

    def construct(self, x):
        return self.head(self.forward_features(x))


def _build(name: str, num_classes: int, in_channels: int, **kwargs) -> SNNMLP:
    cfg = dict(MODEL_CFGS[name])
    if kwargs.get("drop_path_rate") is None:
        kwargs.pop("drop_path_rate", None)
    cfg.update(kwargs)
    return SNNMLP(num_classes=num_classes, in_channels=in_channels, **cfg)


@register_model
def snnmlp_t(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> SNNMLP:
    """SNN-MLP-T: C=96, depths 2-2-6-2, drop path 0.2 (28.3 M params, 4.4 G MACs)."""
    return _build("snnmlp_t", num_classes, in_channels, **kwargs)


@register_model
def snnmlp_s(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> SNNMLP:
    """SNN-MLP-S: C=96, depths 2-2-18-2, drop path 0.3 (49.7 M params, 8.5 G MACs)."""
    return _build("snnmlp_s", num_classes, in_channels, **kwargs)


@register_model
def snnmlp_b(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> SNNMLP:
    """SNN-MLP-B: C=128, depths 2-2-18-2, drop path 0.5 (87.9 M params, 15.2 G MACs)."""
    return _build("snnmlp_b", num_classes, in_channels, **kwargs)


def lif_param_filter(param_name: str) -> bool:
    """True for the LIF scalars (``...lif1.tau``, ``...lif2.Vth``), which the recipe trains with
    their own optimizer group (official rule: every parameter whose name contains tau or Vth)."""
    leaf = param_name.rsplit(".", 1)[-1]
    return leaf in ("tau", "Vth")


# --------------------------------------------------------------------------------------------
# Official checkpoint conversion
# --------------------------------------------------------------------------------------------
def convert_official_state_dict(state_dict: Dict[str, np.ndarray], model_name: str,
                                model_kwargs: Optional[dict] = None) -> Dict[str, np.ndarray]:
    """Map an official SNN-MLP state dict (already unwrapped and cleaned) to our parameter names.

    Every official key has a counterpart with the same path: convs/Dense keep ``weight``/``bias``,
    GroupNorms turn ``weight``/``bias`` into ``gamma``/``beta``, the LIF ``tau``/``Vth`` stay as
    stored (shape [1]). Keys that are not parameters of the official ``model_name`` (the standard
    1000-class head is assumed only for the key names) raise ``ConversionError`` naming them;
    missing keys and shape mismatches are reported by ``mindcv_ext.convert.convert_state_dict``.

    Frozen LIF scalars: with ``--lif_fix_tau`` / ``--lif_fix_vth`` the official ``LIFSpike`` keeps
    tau / Vth as plain floats (the init values), so such files hold no ``tau`` / ``Vth`` keys. Here
    they are non-trainable Parameters (buffers) and get the init value: when the model is built
    frozen (``model_kwargs`` ``lif_fix_tau`` / ``lif_fix_vth``), or when the file holds none of them
    (the official fixed option). The value is ``lif_init_tau`` / ``lif_init_vth`` from
    ``model_kwargs``, else the official training defaults 0.25 / 0.1. A file missing only some of
    them is reported as missing keys.
    """
    from .keymaps import ConversionError

    if model_name not in MODEL_CFGS:
        raise ConversionError(f"convert_official_state_dict: '{model_name}' is not an SNN-MLP model "
                              f"({', '.join(MODEL_CFGS)})")
    official = official_key_map(model_name)
    unknown = sorted(k for k in state_dict if k not in official)
    if unknown:
        raise ConversionError(f"{len(unknown)} keys are not parameters of official {model_name}: "
                              f"{', '.join(unknown[:20])}")
    out = {official[k]: v for k, v in state_dict.items()}
    kwargs = dict(model_kwargs or {})
    for leaf, fix_key, init_key, default in (("tau", "lif_fix_tau", "lif_init_tau", LIF_INIT_TAU),
                                             ("Vth", "lif_fix_vth", "lif_init_vth", LIF_INIT_VTH)):
        names = [k for k in official.values() if k.endswith(f".{leaf}")]
        absent = [k for k in names if k not in out]
        if absent and (kwargs.get(fix_key) or len(absent) == len(names)):
            value = np.array([kwargs.get(init_key, default)], np.float32)
            out.update({k: value for k in absent})
    return out


def official_key_map(model_name: str) -> Dict[str, str]:
    """Official state_dict key -> our parameter name, for every parameter of ``model_name``
    (official SNN-MLP code)."""
    depths = MODEL_CFGS[model_name]["depths"]
    norms = ["patch_embed.norm", "norm"]
    plain = ["patch_embed.proj.weight", "patch_embed.proj.bias", "head.weight", "head.bias"]
    for s, depth in enumerate(depths):
        if s < len(depths) - 1:
            norms.append(f"layers.{s}.downsample.norm")
            plain.append(f"layers.{s}.downsample.reduction.weight")
        for b in range(depth):
            base = f"layers.{s}.blocks.{b}"
            norms += [f"{base}.norm1", f"{base}.norm2"] + [f"{base}.lif_module.norm{i}" for i in (1, 2, 3)]
            for conv in ("conv1", "conv2_1", "conv2_2", "conv3", "dw1"):
                plain += [f"{base}.lif_module.{conv}.weight", f"{base}.lif_module.{conv}.bias"]
            for lif in ("lif1", "lif2"):
                plain += [f"{base}.lif_module.{lif}.tau", f"{base}.lif_module.{lif}.Vth"]
            for fc in ("fc1", "fc2"):
                plain += [f"{base}.mlp.{fc}.weight", f"{base}.mlp.{fc}.bias"]
    mapping = {key: key for key in plain}
    for norm in norms:
        mapping[f"{norm}.weight"] = f"{norm}.gamma"
        mapping[f"{norm}.bias"] = f"{norm}.beta"
    return mapping


FAMILY = Family(converter=convert_official_state_dict, param_filters={"lif": lif_param_filter}, kernels=True,
                paper="Li et al., Brain-inspired Multilayer Perceptron with Spiking Neurons, CVPR 2022")
