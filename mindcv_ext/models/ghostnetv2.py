"""GhostNetV2 (Tang et al., NeurIPS 2022, arXiv 2211.12905) and GhostNet V1 (Han et al., CVPR 2020).

GhostNetV2 is GhostNet with a "DFC" attention gate on the expansion Ghost module of every
bottleneck except the first two. The layer table, widths, layer order and parameter names follow
the official PyTorch release (huawei-noah/Efficient-AI-Backbones, ghostnetv2_pytorch), so
official and timm checkpoints map onto these Cells by renaming BatchNorm entries only
(``convert_official_state_dict``). Facts used here come from the official code,
section 1.

Names mirror the official modules: ``conv_stem``, ``bn1``, ``blocks.{stage}.{i}.ghost1``
(``primary_conv``, ``cheap_operation``, ``short_conv``), ``conv_dw``/``bn_dw``, ``se``,
``ghost2``, ``shortcut``, ``blocks.9.0.conv``/``bn1``, ``conv_head``, ``classifier``.
"""
import math
from typing import Dict, Optional

import numpy as np
from mindspore import nn, ops

from ..layers.dfc_attention import DFCAttention
from ..layers.drop_path import DropPath
from ..layers.helpers import make_divisible, parse_kernels
from ..layers.squeeze_excite import SqueezeExcite
from .registry import Family, register_model

__all__ = ["GhostNetV2", "GhostModule", "DFCGhostModule", "GhostBottleneckV2", "ConvBnAct",
           "ghostnetv2_100", "ghostnetv2_130", "ghostnetv2_160", "ghostnet_100",
           "convert_official_state_dict"]

# Bottleneck table of GhostNet V1 and V2 (identical), one inner list per stage ("blocks.{stage}").
# Row: (depthwise kernel, expansion width, output width, SE ratio, stride), before width scaling.
# Source: official ghostnetv2_torch.py layer table.
BLOCK_CFGS = (
    ((3, 16, 16, 0.0, 1),),
    ((3, 48, 24, 0.0, 2),),
    ((3, 72, 24, 0.0, 1),),
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    ((3, 240, 80, 0.0, 2),),
    ((3, 200, 80, 0.0, 1), (3, 184, 80, 0.0, 1), (3, 184, 80, 0.0, 1),
     (3, 480, 112, 0.25, 1), (3, 672, 112, 0.25, 1)),
    ((5, 672, 160, 0.25, 2),),
    ((5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1)),
)
STEM_CHANNELS = 16
HEAD_CHANNELS = 1280  # conv_head width, not scaled with the model width
DFC_FIRST_LAYER = 2   # bottlenecks with a global index >= 2 get the DFC gate in ghost1
CHANNEL_DIVISOR = 4



def _bn(channels: int) -> nn.BatchNorm2d:
    # PyTorch BatchNorm2d(momentum=0.1, eps=1e-5) == MindSpore momentum 0.9 (weight of the old value)
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9)


def _conv(in_channels: int, out_channels: int, kernel_size, stride: int = 1, groups: int = 1,
          padding=0, bias: bool = False) -> nn.Conv2d:
    # explicit symmetric padding; MindSpore's default 'same' pads asymmetrically at stride 2
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, pad_mode="pad",
                     padding=padding, group=groups, has_bias=bias)


def _conv_cell_macs(conv: nn.Conv2d, batch: int, height: int, width: int) -> int:
    """MACs of ``conv`` producing a ``batch x out x height x width`` map (bias not counted)."""
    kh, kw = conv.kernel_size if isinstance(conv.kernel_size, (tuple, list)) else (conv.kernel_size,) * 2
    return batch * height * width * conv.out_channels * (conv.in_channels // conv.group) * kh * kw


class _GhostHalves:
    """The two halves of a Ghost module (ratio 2), shared by the plain and the DFC module.

    ``primary_conv`` is a 1x1 conv producing ``ceil(out/2)`` channels and ``cheap_operation`` a
    3x3 depthwise conv producing as many again; each is conv -> BN (-> ReLU when ``relu``), with
    Sequential indices matching the official keys. The output keeps the first ``out`` channels.
    """

    def _build_halves(self, in_channels: int, out_channels: int, relu: bool, dw_size: int = 3):
        init_channels = math.ceil(out_channels / 2)
        primary = [_conv(in_channels, init_channels, 1), _bn(init_channels)]
        cheap = [_conv(init_channels, init_channels, dw_size, groups=init_channels, padding=dw_size // 2),
                 _bn(init_channels)]
        if relu:
            primary.append(nn.ReLU())
            cheap.append(nn.ReLU())
        self.ghost_in = in_channels
        self.ghost_out = out_channels
        self.init_channels = init_channels
        self.trim = 2 * init_channels != out_channels  # odd widths drop the last channel
        self.primary_conv = nn.SequentialCell(primary)
        self.cheap_operation = nn.SequentialCell(cheap)

    def ghost_features(self, x):
        x1 = self.primary_conv(x)
        out = ops.cat((x1, self.cheap_operation(x1)), 1)
        if self.trim:
            out = out[:, :self.ghost_out]
        return out

    def _halves_macs(self, batch: int, height: int, width: int) -> int:
        return (_conv_cell_macs(self.primary_conv[0], batch, height, width)
                + _conv_cell_macs(self.cheap_operation[0], batch, height, width))


class GhostModule(_GhostHalves, nn.Cell):
    """Plain Ghost module: concat(primary(x), cheap(primary(x)))[:, :out_channels]."""

    def __init__(self, in_channels: int, out_channels: int, relu: bool = True):
        nn.Cell.__init__(self)
        self._build_halves(in_channels, out_channels, relu)

    def construct(self, x):
        return self.ghost_features(x)


class DFCGhostModule(_GhostHalves, DFCAttention):
    """Ghost module gated by DFC attention (GhostNetV2's ``mode='attn'`` module).

    The gate branch ``short_conv`` is the DFCAttention Cell's own (this class extends it, so
    the parameter names are ``short_conv.*`` next to ``primary_conv.*``/``cheap_operation.*``
    as in the official checkpoints). The gate is computed from the module input and multiplies
    the Ghost output after both ReLUs (official GhostNetV2 code).

    Feature maps with a side of 1 pixel (e.g. the last stage of a 32x32 input) cannot be
    average-pooled 2x2; there the row/column is repeated once before the gate, so the 2x2 pool
    averages identical values and leaves that axis unchanged. Sides >= 2 take the official
    floor-mode pool unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, relu: bool = True,
                 dfc_kernel: int = 5, backend: Optional[str] = None):
        DFCAttention.__init__(self, in_channels, out_channels, kernel_size=1, stride=1,
                              dfc_kernel=dfc_kernel, backend=backend)
        self._build_halves(in_channels, out_channels, relu)

    def construct(self, x):
        out = self.ghost_features(x)
        gate_in = x
        if x.shape[2] == 1:
            gate_in = ops.cat((gate_in, gate_in), 2)
        if x.shape[3] == 1:
            gate_in = ops.cat((gate_in, gate_in), 3)
        return DFCAttention.construct(self, gate_in, out)

    def macs(self, inputs, output) -> int:
        """MACs of the Ghost halves plus the gate convolutions at the pooled resolution.

        Counted here (not by hooks on the child convs) so that the figure is the same whichever
        DFC backend runs: a fused kernel does not call the conv Cells. Pooling, sigmoid, resize
        and the gating product are element-wise and not counted (as in the paper's MAC figures)."""
        n, _, h, w = inputs[0].shape
        total = self._halves_macs(n, h, w)
        ph, pw = max(h // 2, 1), max(w // 2, 1)
        for index in (0, 2, 4):
            total += _conv_cell_macs(self.short_conv[index], n, ph, pw)
        return int(total)


class GhostBottleneckV2(nn.Cell):
    """ghost1 (expand, ReLU, DFC-gated when ``use_dfc``) -> [depthwise k x k stride s -> BN]
    -> [SE] -> ghost2 (project, no ReLU) + shortcut. No activation after the sum (official GhostNetV2 code).
    ``drop_path`` > 0 adds stochastic depth on the residual branch (not in the official models)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, se_ratio: float = 0.0, use_dfc: bool = True,
                 dfc_backend: Optional[str] = None, drop_path: float = 0.0):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"GhostBottleneckV2: stride must be 1 or 2, got {stride}")
        pad = (kernel_size - 1) // 2
        if use_dfc:
            self.ghost1 = DFCGhostModule(in_channels, mid_channels, relu=True, backend=dfc_backend)
        else:
            self.ghost1 = GhostModule(in_channels, mid_channels, relu=True)
        self.has_dw = stride > 1
        if self.has_dw:
            self.conv_dw = _conv(mid_channels, mid_channels, kernel_size, stride, groups=mid_channels, padding=pad)
            self.bn_dw = _bn(mid_channels)
        else:
            self.conv_dw = nn.Identity()
            self.bn_dw = nn.Identity()
        if se_ratio > 0:
            self.se = SqueezeExcite(mid_channels, rd_ratio=se_ratio, rd_divisor=CHANNEL_DIVISOR, gate="hard_sigmoid")
        else:
            self.se = nn.Identity()
        self.ghost2 = GhostModule(mid_channels, out_channels, relu=False)
        if in_channels == out_channels and stride == 1:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.SequentialCell([
                _conv(in_channels, in_channels, kernel_size, stride, groups=in_channels, padding=pad),
                _bn(in_channels),
                _conv(in_channels, out_channels, 1),
                _bn(out_channels),
            ])
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def construct(self, x):
        out = self.ghost1(x)
        out = self.bn_dw(self.conv_dw(out))
        out = self.se(out)
        out = self.ghost2(out)
        return self.drop_path(out) + self.shortcut(x)


class ConvBnAct(nn.Cell):
    """conv (no bias) -> BN -> ReLU; attribute names as the official ``ConvBnAct``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1):
        super().__init__()
        self.conv = _conv(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2)
        self.bn1 = _bn(out_channels)
        self.act1 = nn.ReLU()

    def construct(self, x):
        return self.act1(self.bn1(self.conv(x)))


def _check_positive_int(name: str, value, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"GhostNetV2: {name} must be an integer >= {low}, got {value!r}")


class GhostNetV2(nn.Cell):
    """GhostNet V1 (``version='v1'``) or V2 (``version='v2'``) classifier.

    Args:
        num_classes: classifier outputs; 0 leaves out the classifier (returns pooled features).
        width: channel multiplier (1.0, 1.3 and 1.6 are the released V2 models).
        in_channels: input image channels.
        drop_rate: dropout probability before the classifier (0.2 in the official recipe).
        version: ``'v2'`` adds DFC attention to ghost1 of bottlenecks 2..15; ``'v1'`` never.
        dfc_backend: DFCAttention backend: None (automatic), ``'custom'`` or ``'composite'``.
        drop_path_rate: stochastic depth of the last bottleneck, rising linearly from 0 over the
            16 bottlenecks. 0 (the default) as in the official models, which have none.
    """

    def __init__(self, num_classes: int = 1000, width: float = 1.0, in_channels: int = 3,
                 drop_rate: float = 0.2, version: str = "v2", dfc_backend: Optional[str] = None,
                 drop_path_rate: float = 0.0, block_cfgs=BLOCK_CFGS):
        super().__init__()
        _check_positive_int("num_classes", num_classes, allow_zero=True)
        _check_positive_int("in_channels", in_channels)
        if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
            raise ValueError(f"GhostNetV2: width must be a positive number, got {width!r}")
        if isinstance(drop_rate, bool) or not isinstance(drop_rate, (int, float)) or not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"GhostNetV2: drop_rate must be in [0, 1), got {drop_rate!r}")
        if (isinstance(drop_path_rate, bool) or not isinstance(drop_path_rate, (int, float))
                or not 0.0 <= drop_path_rate < 1.0):
            raise ValueError(f"GhostNetV2: drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        if version not in ("v1", "v2"):
            raise ValueError(f"GhostNetV2: version must be 'v1' or 'v2', got {version!r}")
        if dfc_backend not in (None, "custom", "composite"):
            raise ValueError(f"GhostNetV2: dfc_backend must be None, 'custom' or 'composite', got {dfc_backend!r}")
        self.num_classes = num_classes
        self.width = float(width)
        self.version = version
        self.drop_rate = float(drop_rate)

        stem = make_divisible(STEM_CHANNELS * width, CHANNEL_DIVISOR)
        self.conv_stem = _conv(in_channels, stem, 3, 2, padding=1)
        self.bn1 = _bn(stem)
        self.act1 = nn.ReLU()

        num_blocks = sum(len(stage_cfg) for stage_cfg in block_cfgs)
        stages, channels, layer_id = [], stem, 0
        exp = stem
        for stage_cfg in block_cfgs:
            layers = []
            for kernel, exp, out, se_ratio, stride in stage_cfg:
                out_channels = make_divisible(out * width, CHANNEL_DIVISOR)
                mid_channels = make_divisible(exp * width, CHANNEL_DIVISOR)
                use_dfc = version == "v2" and layer_id >= DFC_FIRST_LAYER
                drop_path = drop_path_rate * layer_id / max(num_blocks - 1, 1)
                layers.append(GhostBottleneckV2(channels, mid_channels, out_channels, kernel, stride,
                                                se_ratio, use_dfc=use_dfc, dfc_backend=dfc_backend,
                                                drop_path=drop_path))
                channels = out_channels
                layer_id += 1
            stages.append(nn.SequentialCell(layers))
        # last expansion width of the table (960 at 1.0x), as in the official model
        self.num_features = make_divisible(exp * width, CHANNEL_DIVISOR)
        stages.append(nn.SequentialCell([ConvBnAct(channels, self.num_features, 1)]))
        self.blocks = nn.SequentialCell(stages)

        self.head_channels = HEAD_CHANNELS
        self.conv_head = _conv(self.num_features, HEAD_CHANNELS, 1, bias=True)
        self.act2 = nn.ReLU()
        self.dropout = nn.Dropout(p=self.drop_rate) if self.drop_rate > 0 else nn.Identity()
        self.classifier = nn.Dense(HEAD_CHANNELS, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x):
        """Stem and all blocks: (N, C, H, W) -> (N, num_features, H/32, W/32)."""
        x = self.act1(self.bn1(self.conv_stem(x)))
        return self.blocks(x)

    def forward_head(self, x):
        x = ops.mean(x, (2, 3), keep_dims=True)
        x = self.act2(self.conv_head(x))
        x = x.reshape(x.shape[0], -1)
        x = self.dropout(x)
        return self.classifier(x)

    def construct(self, x):
        return self.forward_head(self.forward_features(x))


def _create(num_classes: int, in_channels: int, width: float, version: str, kwargs) -> GhostNetV2:
    dfc_backend = parse_kernels(kwargs.pop("kernels", "auto"))
    if "width" in kwargs:
        raise ValueError("width is fixed by the model name (e.g. ghostnetv2_130); use GhostNetV2(width=...) directly")
    return GhostNetV2(num_classes=num_classes, width=width, in_channels=in_channels, version=version,
                      dfc_backend=dfc_backend, **kwargs)


@register_model
def ghostnetv2_100(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> GhostNetV2:
    """GhostNetV2 1.0x: 6,156,908 params, 167.0 M MACs at 224x224."""
    return _create(num_classes, in_channels, 1.0, "v2", kwargs)


@register_model
def ghostnetv2_130(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> GhostNetV2:
    """GhostNetV2 1.3x: 8,960,404 params, 269.3 M MACs at 224x224."""
    return _create(num_classes, in_channels, 1.3, "v2", kwargs)


@register_model
def ghostnetv2_160(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> GhostNetV2:
    """GhostNetV2 1.6x: 12,392,698 params, 398.6 M MACs at 224x224."""
    return _create(num_classes, in_channels, 1.6, "v2", kwargs)


@register_model
def ghostnet_100(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> GhostNetV2:
    """GhostNet (V1) 1.0x: the same network without DFC attention."""
    return _create(num_classes, in_channels, 1.0, "v1", kwargs)


# ----------------------------------------------------------------------------- checkpoints

_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var")
_CONVERTIBLE = {"ghostnetv2_100": "v2", "ghostnetv2_130": "v2", "ghostnetv2_160": "v2", "ghostnet_100": "v1"}


def convert_official_state_dict(state_dict: Dict[str, np.ndarray], model_name: str) -> Dict[str, np.ndarray]:
    """Map an official (or timm) GhostNet/GhostNetV2 state dict onto this module's names.

    The Cells mirror the official attribute names and Sequential indices, so convolution and
    linear entries keep their keys and layouts; each BatchNorm (found by its ``running_mean``)
    is renamed ``weight/bias/running_mean/running_var -> gamma/beta/moving_mean/moving_variance``.
    Name and shape checks against the model are done by ``mindcv_ext.convert.convert_state_dict``.
    """
    from .keymaps import ConversionError, bn_key_map

    if model_name not in _CONVERTIBLE:
        raise ConversionError(f"convert_official_state_dict (ghostnetv2): unknown model '{model_name}' "
                              f"(one of {', '.join(_CONVERTIBLE)})")
    keys = [k for k in state_dict if not k.endswith(("num_batches_tracked", "total_ops", "total_params"))]
    if "conv_stem.weight" not in state_dict or not any(k.startswith("blocks.") for k in keys):
        raise ConversionError("this does not look like a GhostNet/GhostNetV2 checkpoint: no 'conv_stem.weight' "
                              f"or 'blocks.*' entries (first keys: {', '.join(keys[:5])})")
    has_dfc = any(".ghost1.short_conv." in k for k in keys)
    wants_dfc = _CONVERTIBLE[model_name] == "v2"
    if has_dfc != wants_dfc:
        found = "GhostNetV2 (with DFC 'short_conv' entries)" if has_dfc else "GhostNet V1 (no DFC 'short_conv' entries)"
        raise ConversionError(f"the checkpoint holds a {found} model, but '{model_name}' is "
                              f"{'a GhostNetV2' if wants_dfc else 'a GhostNet V1'} model")
    bn_prefixes = sorted(k[:-len(".running_mean")] for k in keys if k.endswith(".running_mean"))
    out: Dict[str, np.ndarray] = {}
    renamed = set()
    for prefix in bn_prefixes:
        absent = [f"{prefix}.{s}" for s in _BN_SUFFIXES if f"{prefix}.{s}" not in state_dict]
        if absent:
            raise ConversionError(f"{model_name}: incomplete BatchNorm '{prefix}', missing {', '.join(absent)}")
        for torch_key, ms_key in bn_key_map(prefix, prefix):
            out[ms_key] = np.asarray(state_dict[torch_key])
            renamed.add(torch_key)
    for key in keys:
        if key not in renamed:
            out[key] = np.asarray(state_dict[key])
    return out


FAMILY = Family(converter=convert_official_state_dict, kernels=True,
                paper="Tang et al., GhostNetV2: Enhance Cheap Operation with Long-Range Attention, NeurIPS 2022")
