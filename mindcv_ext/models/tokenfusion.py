"""TokenFusion (Wang et al., CVPR 2022, arXiv 2204.08721) for RGB-D semantic segmentation.

Follows the official segmentation code ("WeTr": yikaiw/TokenFusion, ``semantic_segmentation/models``;
the same files in huawei-noah/noah-research/TokenFusion):

* one MiT encoder whose convolutions and linear layers are **shared** by the RGB and the depth
  branch, with a **separate LayerNorm per modality** everywhere (``norm*.ln_0`` RGB, ``ln_1`` depth,
  epsilon 1e-6 as in the official ``LayerNormParallel``);
* one score predictor per stage and modality (LN, Linear C->C->C/2->C/4->2 with GELU, LogSoftmax;
  the score is the "keep" probability), fed with the block's input tokens (residual stream) and
  shared by all blocks of the stage;
* in every block the attention-branch output is multiplied by the score (soft pruning: the task
  loss reaches the predictor through this product) and then each token whose score is below the
  threshold (0.02) is replaced by the other modality's token at the same position; the block adds
  this exchanged update to its residual stream, then runs the usual Mix-FFN branch;
* a SegFormer head (embedding 256) shared by both branches, and an ensemble
  ``sum_m softmax(alpha)_m * stop_grad(logits_m)`` with ``alpha`` initialised to ones.

The exchange is a select on the broadcast score mask (static shapes; no boolean indexing), as the
official MindSpore port does with ``ops.Select``.

``alpha`` is a trainable parameter here and must be given to the optimiser (with the decoder
group): the first release (yikaiw/TokenFusion) never put it in any optimiser group, so the
ensemble stayed at 0.5/0.5; the later huawei-noah/noah-research copy adds it to the decoder group.
We follow the later version.

``construct(rgb, depth)`` returns ``(logits_rgb, logits_depth, logits_ensemble, scores)``; logits
are at 1/4 of the input size; ``scores`` is a tuple of ``2 * sum(depths)`` tensors (B, N_stage),
ordered block by block (stage 1 block 0 RGB, stage 1 block 0 depth, ...); ``net.score_layout``
names them. Converters: ``convert_official_state_dict`` (a trained WeTr checkpoint) and
``load_mit_imagenet`` (ImageNet MiT weights, each LayerNorm copied into both modality copies as
the official ``expand_state_dict`` does).
"""
from typing import Dict, List, Tuple

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from ..layers.drop_path import DropPath
from ..layers.gelu import GELU
from .registry import Family, register_model
from .segformer import (MIT_CONFIGS, AttentionCore, MixFFN, SegFormerHead, check_mit_config, conv, dense,
                        drop_path_rates, layer_norm, load_param_dict, map_to_tokens, patch_specs, tokens_to_map)

__all__ = ["TokenExchange", "ParallelLayerNorm", "ScorePredictor", "ParallelAttention", "TokenFusionBlock",
           "TokenFusionMiT", "TokenFusionSeg", "token_grids", "set_threshold", "convert_official_state_dict",
           "official_to_ours", "load_mit_imagenet", "DEFAULT_THRESHOLD", "MODALITIES"]

DEFAULT_THRESHOLD = 0.02   # official mask_threshold (inherited from CEN)
MODALITIES = ("rgb", "depth")
PARALLEL_EPS = 1e-6        # official LayerNormParallel epsilon (every encoder norm)
PREDICTOR_EPS = 1e-5       # torch nn.LayerNorm default inside PredictorLG
HEAD_EMBED_DIM = {"mit_tiny": 64}  # WeTr uses 256 for every MiT variant; 64 for the CPU-sized MiT
# Dropout2d(0.1) before the classifier in every official variant; off for the CPU-sized MiT, whose
# short runs must resume bit-exactly (a dropout op's random stream does not survive a restart).
HEAD_DROPOUT = {"mit_tiny": 0.0}
DEFAULT_INPUT = {"tokenfusion_mit_tiny": 64}
STATUS = "tested (exchange semantics, soft pruning gradient, counts, converters); no NYUDv2 run here"


class TokenExchange(nn.Cell):
    """Per-token substitution between two modalities.

    ``y0 = x0 where s0 >= threshold else x1`` and ``y1 = x1 where s1 >= threshold else x0``;
    x* (B, N, C), s* (B, N). The mask is broadcast over channels and applied with ``ops.select``.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD):
        super().__init__()
        self.threshold = float(threshold)

    def construct(self, x0, x1, s0, s1):
        keep0 = ops.broadcast_to(ops.expand_dims(s0 >= self.threshold, -1), x0.shape)
        keep1 = ops.broadcast_to(ops.expand_dims(s1 >= self.threshold, -1), x1.shape)
        return ops.select(keep0, x0, x1), ops.select(keep1, x1, x0)

    def extend_repr(self):
        return f"threshold={self.threshold}"


class ParallelLayerNorm(nn.Cell):
    """One LayerNorm per modality (``ln_0`` for RGB, ``ln_1`` for depth)."""

    def __init__(self, dim: int, eps: float = PARALLEL_EPS):
        super().__init__()
        self.ln_0 = layer_norm(dim, eps)
        self.ln_1 = layer_norm(dim, eps)

    def construct(self, x0, x1):
        return self.ln_0(x0), self.ln_1(x1)


def _score_net(dim: int) -> nn.SequentialCell:
    # Sequential indices mirror the official PredictorLG: 0 LN, 1/3/5/7 Linear, 8 LogSoftmax.
    return nn.SequentialCell([layer_norm(dim, PREDICTOR_EPS), dense(dim, dim), GELU(), dense(dim, dim // 2), GELU(),
                              dense(dim // 2, dim // 4), GELU(), dense(dim // 4, 2), nn.LogSoftmax(axis=-1)])


class ScorePredictor(nn.Cell):
    """Per-modality token scores in [0, 1] (probability of "keep")."""

    def __init__(self, dim: int):
        super().__init__()
        if dim < 4:
            raise ValueError(f"ScorePredictor: dim must be at least 4 (it has a dim // 4 layer), got {dim}")
        self.score_nets = nn.CellList([_score_net(dim), _score_net(dim)])

    def construct(self, x0, x1):
        # softmax of the log-probabilities = the probabilities; channel 0 is "keep" (official order).
        s0 = ops.softmax(self.score_nets[0](x0), axis=-1)[..., 0]
        s1 = ops.softmax(self.score_nets[1](x1), axis=-1)[..., 0]
        return s0, s1


class ParallelAttention(nn.Cell):
    """Efficient attention on both modalities with shared q/kv/proj/sr weights, per-modality sr norm,
    then soft pruning by the scores and token exchange."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, threshold: float = DEFAULT_THRESHOLD,
                 qkv_bias: bool = True):
        super().__init__()
        self.q = dense(dim, dim, qkv_bias)
        self.kv = dense(dim, 2 * dim, qkv_bias)
        self.proj = dense(dim, dim)
        self.core = AttentionCore(dim, num_heads)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = conv(dim, dim, sr_ratio, stride=sr_ratio)
            self.norm = ParallelLayerNorm(dim)
        self.exchange = TokenExchange(threshold)

    def attend(self, x0, x1, h: int, w: int):
        """The two attention outputs before pruning and exchange."""
        src0, src1 = x0, x1
        if self.sr_ratio > 1:
            src0, src1 = self.norm(map_to_tokens(self.sr(tokens_to_map(x0, h, w))),
                                   map_to_tokens(self.sr(tokens_to_map(x1, h, w))))
        a0 = self.proj(self.core(self.q(x0), self.kv(src0)))
        a1 = self.proj(self.core(self.q(x1), self.kv(src1)))
        return a0, a1

    def construct(self, x0, x1, h: int, w: int, s0, s1):
        a0, a1 = self.attend(x0, x1, h, w)
        a0 = a0 * ops.expand_dims(s0, -1)
        a1 = a1 * ops.expand_dims(s1, -1)
        return self.exchange(a0, a1, s0, s1)


class TokenFusionBlock(nn.Cell):
    """e_m += DropPath(Exchange(s_m * Attn(LN1_m(e_m)))); e_m += DropPath(MixFFN(LN2_m(e_m)))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, sr_ratio: int, drop_path: float,
                 threshold: float = DEFAULT_THRESHOLD):
        super().__init__()
        self.norm1 = ParallelLayerNorm(dim)
        self.attn = ParallelAttention(dim, num_heads, sr_ratio, threshold)
        self.drop_path = DropPath(drop_path)  # called once per branch: independent draws, as upstream
        self.norm2 = ParallelLayerNorm(dim)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio))  # shared weights

    def construct(self, x0, x1, h: int, w: int, s0, s1):
        n0, n1 = self.norm1(x0, x1)
        f0, f1 = self.attn(n0, n1, h, w, s0, s1)
        x0 = x0 + self.drop_path(f0)
        x1 = x1 + self.drop_path(f1)
        n0, n1 = self.norm2(x0, x1)
        x0 = x0 + self.drop_path(self.mlp(n0, h, w))
        x1 = x1 + self.drop_path(self.mlp(n1, h, w))
        return x0, x1


class ParallelPatchEmbed(nn.Cell):
    """Shared overlapping patch conv, per-modality LayerNorm."""

    def __init__(self, cin: int, dim: int, patch: int, stride: int):
        super().__init__()
        self.proj = conv(cin, dim, patch, stride, patch // 2)
        self.norm = ParallelLayerNorm(dim)

    def construct(self, x0, x1):
        y0, y1 = self.proj(x0), self.proj(x1)
        h, w = y0.shape[2], y0.shape[3]
        t0, t1 = self.norm(map_to_tokens(y0), map_to_tokens(y1))
        return t0, t1, h, w


def token_grids(height: int, width: int) -> List[Tuple[int, int]]:
    """Token grid (rows, cols) of the four stages for an input of ``height x width``
    (conv arithmetic of the 7x7/s4/p3 and 3x3/s2/p1 patch embeddings)."""
    grids, h, w = [], int(height), int(width)
    for k, s in ((7, 4), (3, 2), (3, 2), (3, 2)):
        h, w = (h + 2 * (k // 2) - k) // s + 1, (w + 2 * (k // 2) - k) // s + 1
        grids.append((h, w))
    return grids


class TokenFusionMiT(nn.Cell):
    """Two-modality MiT encoder with token fusion in every block.

    ``construct(x0, x1)`` -> ``(feats0, feats1, scores)``: four stage maps per modality and the
    flat score tuple described in the module docstring.
    """

    def __init__(self, embed_dims, depths, num_heads, sr_ratios, mlp_ratio=4, drop_path_rate=0.1, in_channels=3,
                 threshold: float = DEFAULT_THRESHOLD):
        super().__init__()
        cfg = dict(embed_dims=tuple(embed_dims), depths=tuple(depths), num_heads=tuple(num_heads),
                   sr_ratios=tuple(sr_ratios))
        check_mit_config(cfg)
        threshold = float(threshold)
        if not np.isfinite(threshold):
            raise ValueError(f"TokenFusion: threshold must be a finite number, got {threshold}")
        self.embed_dims, self.depths, self.in_channels, self.threshold = cfg["embed_dims"], cfg["depths"], \
            in_channels, threshold
        dpr = drop_path_rates(depths, drop_path_rate)
        cur = 0
        for i, (cin, cout, k, s) in enumerate(patch_specs(in_channels, self.embed_dims)):
            setattr(self, f"patch_embed{i + 1}", ParallelPatchEmbed(cin, cout, k, s))
            setattr(self, f"block{i + 1}", nn.CellList([
                TokenFusionBlock(cout, num_heads[i], mlp_ratio, sr_ratios[i], dpr[cur + j], threshold)
                for j in range(depths[i])]))
            setattr(self, f"norm{i + 1}", ParallelLayerNorm(cout))
            cur += depths[i]
        self.score_predictor = nn.CellList([ScorePredictor(d) for d in self.embed_dims])
        self.score_layout = [(stage, j, m) for stage in range(4) for j in range(self.depths[stage])
                             for m in MODALITIES]

    def _stage(self, x0, x1, embed, blocks, norm, predictor):
        x0, x1, h, w = embed(x0, x1)
        scores = ()
        for blk in blocks:
            s0, s1 = predictor(x0, x1)  # from the block's input tokens
            scores = scores + (s0, s1)
            x0, x1 = blk(x0, x1, h, w, s0, s1)
        x0, x1 = norm(x0, x1)
        return tokens_to_map(x0, h, w), tokens_to_map(x1, h, w), scores

    def construct(self, x0, x1):
        a1, b1, s1 = self._stage(x0, x1, self.patch_embed1, self.block1, self.norm1, self.score_predictor[0])
        a2, b2, s2 = self._stage(a1, b1, self.patch_embed2, self.block2, self.norm2, self.score_predictor[1])
        a3, b3, s3 = self._stage(a2, b2, self.patch_embed3, self.block3, self.norm3, self.score_predictor[2])
        a4, b4, s4 = self._stage(a3, b3, self.patch_embed4, self.block4, self.norm4, self.score_predictor[3])
        return (a1, a2, a3, a4), (b1, b2, b3, b4), s1 + s2 + s3 + s4


class TokenFusionSeg(nn.Cell):
    """TokenFusion encoder + shared SegFormer head + trained ensemble ("WeTr").

    ``construct(rgb, depth)`` -> ``(logits_rgb, logits_depth, logits_ensemble, scores)``. Both inputs
    are (B, in_channels, H, W) with the same shape (depth replicated to 3 channels, as upstream).
    """

    def __init__(self, variant: str, num_classes: int = 40, in_channels: int = 3, embed_dim: int = 256,
                 depths=None, drop_path_rate: float = None, threshold: float = DEFAULT_THRESHOLD,
                 head_dropout: float = 0.1):
        super().__init__()
        cfg = dict(MIT_CONFIGS[variant])
        if depths is not None:
            cfg["depths"] = tuple(depths)
        if drop_path_rate is not None:
            cfg["drop_path_rate"] = drop_path_rate
        self.in_channels = in_channels
        self.encoder = TokenFusionMiT(in_channels=in_channels, threshold=threshold, **cfg)
        self.decoder = SegFormerHead(self.encoder.embed_dims, embed_dim, num_classes, dropout=head_dropout)
        # Trained ensemble weights (the noah-research fix; see the module docstring).
        self.alpha = Parameter(Tensor(np.ones(2, np.float32)), name="alpha")
        self.score_layout = self.encoder.score_layout

    def construct(self, rgb, depth):
        if rgb.ndim != 4 or rgb.shape[1] != self.in_channels or depth.shape != rgb.shape:
            raise ValueError(f"TokenFusion: rgb and depth must both be (N, {self.in_channels}, H, W) of the same "
                             f"shape, got {rgb.shape} and {depth.shape}")
        f0, f1, scores = self.encoder(rgb, depth)
        l0 = self.decoder(f0)
        l1 = self.decoder(f1)
        weights = ops.softmax(self.alpha, axis=0)
        ens = weights[0] * ops.stop_gradient(l0) + weights[1] * ops.stop_gradient(l1)
        return l0, l1, ens, scores


def set_threshold(net: nn.Cell, threshold: float) -> int:
    """Set the exchange threshold of every ``TokenExchange`` in ``net`` (0 disables the exchange:
    scores are never negative); returns how many were set. Call before compiling a graph."""
    threshold = float(threshold)
    if not np.isfinite(threshold):
        raise ValueError(f"set_threshold: threshold must be a finite number, got {threshold}")
    count = 0
    for _, cell in net.cells_and_names():
        if isinstance(cell, TokenExchange):
            cell.threshold = threshold
            count += 1
    for _, cell in net.cells_and_names():
        if isinstance(cell, TokenFusionMiT):
            cell.threshold = threshold
    return count


def _tokenfusion(variant, num_classes, in_channels, kw):
    kw.setdefault("embed_dim", HEAD_EMBED_DIM.get(variant, 256))
    kw.setdefault("head_dropout", HEAD_DROPOUT.get(variant, 0.1))
    return TokenFusionSeg(variant, num_classes=num_classes, in_channels=in_channels, **kw)


@register_model
def tokenfusion_mit_b0(num_classes: int = 40, in_channels: int = 3, **kw):
    return _tokenfusion("mit_b0", num_classes, in_channels, kw)


@register_model
def tokenfusion_mit_b1(num_classes: int = 40, in_channels: int = 3, **kw):
    return _tokenfusion("mit_b1", num_classes, in_channels, kw)


@register_model
def tokenfusion_mit_b2(num_classes: int = 40, in_channels: int = 3, **kw):
    return _tokenfusion("mit_b2", num_classes, in_channels, kw)


@register_model
def tokenfusion_mit_b3(num_classes: int = 40, in_channels: int = 3, **kw):
    return _tokenfusion("mit_b3", num_classes, in_channels, kw)


@register_model
def tokenfusion_mit_b4(num_classes: int = 40, in_channels: int = 3, **kw):
    return _tokenfusion("mit_b4", num_classes, in_channels, kw)


@register_model
def tokenfusion_mit_b5(num_classes: int = 40, in_channels: int = 3, **kw):
    return _tokenfusion("mit_b5", num_classes, in_channels, kw)


@register_model
def tokenfusion_mit_tiny(num_classes: int = 40, in_channels: int = 3, **kw):
    return _tokenfusion("mit_tiny", num_classes, in_channels, kw)


# ------------------------------------------------------------------------------------- converters

_BN_RENAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_LN_RENAMES = {"weight": "gamma", "bias": "beta"}


def official_to_ours(key: str) -> str:
    """Our name for one key of an official WeTr state dict (after ``module.`` prefixes are gone)."""
    # ModuleParallel wraps shared layers as ``<name>.module``; an older layout wrapped the whole MLP
    # (``mlp.module.fc1``). Both collapse to the shared layer's own name.
    key = key.replace(".module.", ".")
    parts = key.split(".")
    leaf = parts[-1]
    is_ln = len(parts) >= 2 and parts[-2] in ("ln_0", "ln_1")
    is_predictor_ln = len(parts) >= 5 and parts[-4] == "score_nets" and parts[-2] == "0"
    if (is_ln or is_predictor_ln) and leaf in _LN_RENAMES:
        parts[-1] = _LN_RENAMES[leaf]
    elif len(parts) >= 2 and parts[-2] == "bn" and leaf in _BN_RENAMES:
        parts[-1] = _BN_RENAMES[leaf]
    return ".".join(parts)


def convert_official_state_dict(state_dict: Dict[str, np.ndarray], model_name: str) -> Dict[str, np.ndarray]:
    """Map a trained official TokenFusion segmentation checkpoint (the ``segmenter`` dict of
    ``main.py``'s save, keys ``encoder.*``, ``decoder.*``, ``alpha``, with or without DataParallel's
    ``module.``) onto ``model_name``. Names/shapes are checked by ``mindcv_ext.convert``."""
    from .keymaps import ConversionError

    if not model_name.startswith("tokenfusion_"):
        raise ConversionError(f"convert_official_state_dict (tokenfusion): '{model_name}' is not a TokenFusion model")
    if isinstance(state_dict.get("segmenter"), dict):
        state_dict = state_dict["segmenter"]
    keys = [k[len("module."):] if k.startswith("module.") else k for k in state_dict]
    if "patch_embed1.proj.weight" in keys:
        raise ConversionError("this is an ImageNet MiT state dict (encoder only); initialise the encoder with "
                              "mindcv_ext.models.tokenfusion.load_mit_imagenet instead")
    if not any(k.startswith("encoder.") for k in keys) or not any(k.startswith("decoder.") for k in keys):
        raise ConversionError("not a TokenFusion segmentation checkpoint: no 'encoder.*'/'decoder.*' entries "
                              f"(first keys: {', '.join(keys[:5])})")
    out = {}
    for raw, key in zip(state_dict, keys):
        if key.endswith("num_batches_tracked"):
            continue
        name = official_to_ours(key)
        if name in out:
            raise ConversionError(f"two checkpoint entries map to '{name}' (second: '{raw}')")
        out[name] = np.asarray(state_dict[raw], np.float32)
    return out


def _mit_norm_key(key: str) -> bool:
    parts = key.split(".")
    return len(parts) >= 2 and parts[-2].startswith("norm") and parts[-1] in _LN_RENAMES


def mit_imagenet_to_tokenfusion(state_dict: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Official ImageNet MiT keys -> our encoder names, each LayerNorm duplicated into ``ln_0`` and
    ``ln_1`` (the official ``expand_state_dict``); ``head.*`` dropped."""
    from .keymaps import ConversionError

    if "patch_embed1.proj.weight" not in state_dict:
        raise ConversionError("not an ImageNet MiT state dict: no 'patch_embed1.proj.weight' "
                              f"(first keys: {', '.join(list(state_dict)[:5])})")
    out = {}
    for key, value in state_dict.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key.startswith("head."):
            continue
        value = np.asarray(value, np.float32)
        if _mit_norm_key(key):
            stem, leaf = key.rsplit(".", 1)
            for copy in ("ln_0", "ln_1"):
                out[f"encoder.{stem}.{copy}.{_LN_RENAMES[leaf]}"] = value.copy()
        else:
            out[f"encoder.{key}"] = value
    return out


def load_mit_imagenet(net: TokenFusionSeg, state_dict: Dict[str, np.ndarray]) -> List[str]:
    """Initialise ``net.encoder`` (all but the score predictors) from official ImageNet MiT weights.
    Returns the names left at their init: score predictors, decoder and ``alpha``."""
    from .keymaps import ConversionError

    left = load_param_dict(net, mit_imagenet_to_tokenfusion(state_dict), "ImageNet MiT -> TokenFusion")
    missing = [k for k in left if k.startswith("encoder.") and not k.startswith("encoder.score_predictor.")]
    if missing:
        raise ConversionError(f"ImageNet MiT -> TokenFusion: {len(missing)} encoder parameters have no value "
                              f"(wrong variant?): {', '.join(missing[:10])}")
    return left


def _example_inputs(net, size: int = 64):
    """(rgb, depth) of one small batch: the two inputs of every TokenFusion model."""
    rng = np.random.default_rng(0)
    return tuple(Tensor(rng.standard_normal((2, 3, size, size)).astype(np.float32)) for _ in range(2))


FAMILY = Family(converter=convert_official_state_dict, input_size=480, input_sizes=dict(DEFAULT_INPUT),
                crop_pct=1.0, paper="TokenFusion (arXiv 2204.08721)", status=STATUS, example_inputs=_example_inputs)
