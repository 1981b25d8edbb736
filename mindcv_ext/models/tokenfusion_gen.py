"""TokenFusion (Wang et al., CVPR 2022, arXiv 2204.08721) for multimodal image-to-image translation.

Follows the official translation code (yikaiw/TokenFusion ``image2image_translation/models``:
``model_pruning.py`` ``MixVisionTransformerGen`` / ``MixVisionTransformerDis``, ``model_cfg.py``
``gen_b2`` / ``dis_b2``):

* **Generator** (U-shaped MiT): five encoder stages, each a 3x3 stride-2 overlapping patch embedding
  then MiT blocks and a closing LayerNorm; four decoder stages, each ``PixelShuffle(2)`` + 1x1 conv
  (``PatchUpsample``), the encoder output of the same resolution **added** as a skip, MiT blocks and
  a LayerNorm; a last ``PatchUpsample`` to the input size, a 1x1 conv to 3 channels and tanh.
  All convolutions and linear layers are **shared** by the two input modalities, every LayerNorm
  exists once per modality (epsilon 1e-6, the official ``LayerNormParallel``).
* **Token fusion only in the last block of each encoder stage** (5 score predictors, one per
  stage and modality, fed with that block's input tokens): the attention update is multiplied by
  the score and tokens scoring below the threshold (0.02) take the other modality's update; every
  other encoder block and every decoder block runs both streams without pruning or exchange.
* An ensemble ``sum_m softmax(alpha)_m * stop_grad(out_m)`` with ``alpha`` (init ones) trained
  with the generator (the official translation script gives all of ``G.parameters()`` to Adam).
* **Discriminator** (patch GAN): the same five-stage encoder without fusion on
  ``concat(input_m, image)`` (6 channels) per modality, a shared 1x1 conv to one channel and a
  sigmoid: an (H/32, W/32) map of real/fake probabilities per modality.

Upstream ``PatchUpsample`` also creates a LayerNorm it never applies; it is left out here (it has
no effect on any output and would receive no gradient).

``TokenFusionGen.construct(x0, x1)`` -> ``(out0, out1, out_ensemble, scores)``: images in [-1, 1] of
the input size and ``scores``, a tuple of 10 tensors (B, N_stage) ordered stage by stage (stage 1
modality 0, stage 1 modality 1, ...; ``net.score_layout`` names them).
``TokenFusionDis.construct(x0, x1, y0, y1)`` -> ``(d0, d1)``.
"""
from typing import Sequence

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from .registry import Family, register_model
from .segformer import MiTConfigError, conv, drop_path_rates, map_to_tokens, tokens_to_map
from .tokenfusion import DEFAULT_THRESHOLD, ParallelLayerNorm, ParallelPatchEmbed, ScorePredictor, TokenFusionBlock

__all__ = ["GEN_CONFIGS", "ParallelBlock", "PatchUpsample", "FusionEncoder", "TokenFusionGen", "TokenFusionDis",
           "MODALITIES"]

MODALITIES = ("shade", "texture")   # the official default task: reshading + edge_texture -> rgb
NUM_STAGES = 5
STATUS = "tested (shapes, fusion placement, shared-weight counts, GAN training on generated views); no Taskonomy run"

# model_cfg.py gen_b2 / dis_b2; the tiny variant (no official counterpart) is for CPU runs.
GEN_CONFIGS = {
    "b2": dict(embed_dims=(64, 128, 256, 512, 1024), depths=(3, 4, 4, 6, 3), num_heads=(1, 2, 4, 8, 16),
               sr_ratios=(16, 8, 4, 2, 1), mlp_ratio=4, drop_path_rate=0.1),
    # drop path 0: short CPU runs resume bit-exactly (a drop-path random stream does not survive a restart)
    "tiny": dict(embed_dims=(16, 32, 64, 128, 256), depths=(2, 1, 1, 1, 1), num_heads=(1, 2, 4, 8, 16),
                 sr_ratios=(16, 8, 4, 2, 1), mlp_ratio=4, drop_path_rate=0.0),
}
DEFAULT_INPUT = {"tokenfusion_gen_b2": 256, "tokenfusion_dis_b2": 256, "tokenfusion_gen_tiny": 64,
                 "tokenfusion_dis_tiny": 64}


def _check(cfg) -> None:
    dims, depths, heads, srs = cfg["embed_dims"], cfg["depths"], cfg["num_heads"], cfg["sr_ratios"]
    if not (len(dims) == len(depths) == len(heads) == len(srs) == NUM_STAGES):
        raise MiTConfigError(f"the translation MiT needs {NUM_STAGES} stages of embed_dims/depths/num_heads/"
                             f"sr_ratios, got {cfg}")
    for d, n, hd, sr in zip(dims, depths, heads, srs):
        if int(d) < 4 or int(n) <= 0 or int(hd) <= 0 or int(sr) <= 0 or d % hd or d % 4:
            raise MiTConfigError(f"bad translation MiT stage: dim {d}, depth {n}, heads {hd}, sr {sr} "
                                 "(dim a multiple of 4 and of heads, the rest positive)")


class ParallelBlock(TokenFusionBlock):
    """The same two-stream MiT block without pruning or exchange (upstream ``Block`` with ``mask=None``)."""

    def construct(self, x0, x1, h: int, w: int):
        n0, n1 = self.norm1(x0, x1)
        a0, a1 = self.attn.attend(n0, n1, h, w)
        x0 = x0 + self.drop_path(a0)
        x1 = x1 + self.drop_path(a1)
        n0, n1 = self.norm2(x0, x1)
        x0 = x0 + self.drop_path(self.mlp(n0, h, w))
        x1 = x1 + self.drop_path(self.mlp(n1, h, w))
        return x0, x1


class PatchUpsample(nn.Cell):
    """PixelShuffle(2) then a shared 1x1 conv (C/4 -> dim); returns maps (B, dim, 2H, 2W)."""

    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.shuffle = nn.PixelShuffle(2)
        self.proj = conv(cin // 4, dim, 1)

    def construct(self, x0, x1):
        return self.proj(self.shuffle(x0)), self.proj(self.shuffle(x1))


def _blocks(dim, depth, heads, mlp_ratio, sr, rates, threshold, fuse_last: bool) -> nn.CellList:
    cells = []
    for j in range(depth):
        cls = TokenFusionBlock if fuse_last and j == depth - 1 else ParallelBlock
        cells.append(cls(dim, heads, mlp_ratio, sr, rates[j], threshold))
    return nn.CellList(cells)


class FusionEncoder(nn.Cell):
    """Five stages of (3x3/s2 patch embed, blocks, LayerNorm) on two streams; with ``fusion`` the
    last block of each stage prunes and exchanges tokens by the stage's score predictor.

    ``construct(x0, x1)`` -> ``(tokens0, tokens1, grids, scores)``: per stage the normalised tokens
    of each stream and the (h, w) grid; ``scores`` is empty without fusion."""

    def __init__(self, embed_dims, depths, num_heads, sr_ratios, mlp_ratio=4, drop_path_rate=0.1, in_channels=3,
                 threshold: float = DEFAULT_THRESHOLD, fusion: bool = True):
        super().__init__()
        cfg = dict(embed_dims=tuple(embed_dims), depths=tuple(depths), num_heads=tuple(num_heads),
                   sr_ratios=tuple(sr_ratios))
        _check(cfg)
        self.embed_dims, self.depths, self.fusion = cfg["embed_dims"], cfg["depths"], bool(fusion)
        self.threshold = float(threshold)
        rates = drop_path_rates(depths, drop_path_rate)
        embeds, stages, norms, cur = [], [], [], 0
        for i, dim in enumerate(self.embed_dims):
            embeds.append(ParallelPatchEmbed(in_channels if i == 0 else self.embed_dims[i - 1], dim, 3, 2))
            stages.append(_blocks(dim, depths[i], num_heads[i], mlp_ratio, sr_ratios[i],
                                  rates[cur:cur + depths[i]], threshold, self.fusion))
            norms.append(ParallelLayerNorm(dim))
            cur += depths[i]
        self.patch_embed = nn.CellList(embeds)
        self.blocks = nn.CellList(stages)
        self.norm = nn.CellList(norms)
        if self.fusion:
            self.score_predictor = nn.CellList([ScorePredictor(d) for d in self.embed_dims])
        self.score_layout = [(i, self.depths[i] - 1, m) for i in range(NUM_STAGES) for m in MODALITIES] \
            if self.fusion else []

    def construct(self, x0, x1):
        toks0, toks1, grids, scores = (), (), (), ()
        for i in range(NUM_STAGES):
            t0, t1, h, w = self.patch_embed[i](x0, x1)
            blocks = self.blocks[i]
            last = len(blocks) - 1
            for j, blk in enumerate(blocks):
                if self.fusion and j == last:
                    s0, s1 = self.score_predictor[i](t0, t1)   # from the fused block's input tokens
                    scores = scores + (s0, s1)
                    t0, t1 = blk(t0, t1, h, w, s0, s1)
                else:
                    t0, t1 = blk(t0, t1, h, w)
            t0, t1 = self.norm[i](t0, t1)
            toks0, toks1, grids = toks0 + (t0,), toks1 + (t1,), grids + ((h, w),)
            x0, x1 = tokens_to_map(t0, h, w), tokens_to_map(t1, h, w)
        return toks0, toks1, grids, scores


class TokenFusionGen(nn.Cell):
    """U-shaped two-modality generator (see the module docstring)."""

    def __init__(self, embed_dims, depths, num_heads, sr_ratios, mlp_ratio=4, drop_path_rate=0.1, in_channels=3,
                 out_channels=3, threshold: float = DEFAULT_THRESHOLD):
        super().__init__()
        self.in_channels = in_channels
        self.encoder = FusionEncoder(embed_dims, depths, num_heads, sr_ratios, mlp_ratio, drop_path_rate,
                                     in_channels, threshold, fusion=True)
        dims, depths = self.encoder.embed_dims, self.encoder.depths
        rates = drop_path_rates(depths, drop_path_rate)
        ups, stages, norms, cur = [], [], [], 0
        for i in range(NUM_STAGES - 1, 0, -1):     # decoder stage k works at encoder stage i - 1's size
            ups.append(PatchUpsample(dims[i], dims[i - 1]))
            stages.append(_blocks(dims[i - 1], depths[i - 1], num_heads[i - 1], mlp_ratio, sr_ratios[i - 1],
                                  rates[cur:cur + depths[i - 1]], threshold, fuse_last=False))
            norms.append(ParallelLayerNorm(dims[i - 1]))
            cur += depths[i - 1]
        self.upsample = nn.CellList(ups)
        self.blocks = nn.CellList(stages)
        self.norm = nn.CellList(norms)
        self.final_upsample = PatchUpsample(dims[0], dims[0])
        self.project = conv(dims[0], out_channels, 1)
        self.alpha = Parameter(Tensor(np.ones(2, np.float32)), name="alpha")
        self.score_layout = self.encoder.score_layout

    def construct(self, x0, x1):
        if x0.ndim != 4 or x0.shape[1] != self.in_channels or x1.shape != x0.shape:
            raise ValueError(f"TokenFusion generator: both inputs must be (N, {self.in_channels}, H, W) of the same "
                             f"shape, got {x0.shape} and {x1.shape}")
        if x0.shape[2] % 32 or x0.shape[3] % 32:
            raise ValueError(f"TokenFusion generator: height and width must be multiples of 32, got {x0.shape}")
        toks0, toks1, grids, scores = self.encoder(x0, x1)
        h, w = grids[NUM_STAGES - 1]
        y0, y1 = tokens_to_map(toks0[NUM_STAGES - 1], h, w), tokens_to_map(toks1[NUM_STAGES - 1], h, w)
        for k in range(NUM_STAGES - 1):
            skip = NUM_STAGES - 2 - k
            h, w = grids[skip]
            u0, u1 = self.upsample[k](y0, y1)
            t0 = map_to_tokens(u0) + toks0[skip]
            t1 = map_to_tokens(u1) + toks1[skip]
            for blk in self.blocks[k]:
                t0, t1 = blk(t0, t1, h, w)
            t0, t1 = self.norm[k](t0, t1)
            y0, y1 = tokens_to_map(t0, h, w), tokens_to_map(t1, h, w)
        y0, y1 = self.final_upsample(y0, y1)
        out0, out1 = ops.tanh(self.project(y0)), ops.tanh(self.project(y1))
        weights = ops.softmax(self.alpha, axis=0)
        ens = weights[0] * ops.stop_gradient(out0) + weights[1] * ops.stop_gradient(out1)
        return out0, out1, ens, scores


class TokenFusionDis(nn.Cell):
    """Patch discriminator: the encoder without fusion on concat(input_m, image_m), 1x1 conv, sigmoid."""

    def __init__(self, embed_dims, depths, num_heads, sr_ratios, mlp_ratio=4, drop_path_rate=0.1, in_channels=6):
        super().__init__()
        self.in_channels = in_channels
        self.encoder = FusionEncoder(embed_dims, depths, num_heads, sr_ratios, mlp_ratio, drop_path_rate,
                                     in_channels, fusion=False)
        self.project = conv(self.encoder.embed_dims[-1], 1, 1)

    def logits(self, x0, x1, y0, y1):
        """The two patch maps before the sigmoid (for a numerically stable BCE)."""
        a, b = ops.concat((x0, y0), 1), ops.concat((x1, y1), 1)
        if a.shape[1] != self.in_channels or b.shape != a.shape:
            raise ValueError(f"TokenFusion discriminator: concat(input, image) must have {self.in_channels} "
                             f"channels per modality, got {a.shape} and {b.shape}")
        toks0, toks1, grids, _ = self.encoder(a, b)
        h, w = grids[NUM_STAGES - 1]
        return (self.project(tokens_to_map(toks0[NUM_STAGES - 1], h, w)),
                self.project(tokens_to_map(toks1[NUM_STAGES - 1], h, w)))

    def construct(self, x0, x1, y0, y1):
        z0, z1 = self.logits(x0, x1, y0, y1)
        return ops.sigmoid(z0), ops.sigmoid(z1)


def _cfg(variant: str, kw: dict) -> dict:
    cfg = dict(GEN_CONFIGS[variant])
    for key in ("depths", "embed_dims", "num_heads", "sr_ratios"):
        if kw.get(key) is not None:
            cfg[key] = tuple(kw.pop(key))
    if kw.get("drop_path_rate") is not None:
        cfg["drop_path_rate"] = float(kw.pop("drop_path_rate"))
    kw.pop("drop_path_rate", None)
    return cfg


def _gen(variant, num_classes, in_channels, kw):
    # num_classes: the registry's common builder argument; a generator always outputs 3 channels.
    cfg = _cfg(variant, kw)
    return TokenFusionGen(in_channels=in_channels, **cfg, **kw)


def _dis(variant, in_channels, kw):
    cfg = _cfg(variant, kw)
    kw.pop("threshold", None)
    return TokenFusionDis(in_channels=2 * in_channels, **cfg, **kw)


@register_model
def tokenfusion_gen_b2(num_classes: int = 3, in_channels: int = 3, **kw):
    return _gen("b2", num_classes, in_channels, kw)


@register_model
def tokenfusion_gen_tiny(num_classes: int = 3, in_channels: int = 3, **kw):
    return _gen("tiny", num_classes, in_channels, kw)


@register_model
def tokenfusion_dis_b2(num_classes: int = 1, in_channels: int = 3, **kw):
    return _dis("b2", in_channels, kw)


@register_model
def tokenfusion_dis_tiny(num_classes: int = 1, in_channels: int = 3, **kw):
    return _dis("tiny", in_channels, kw)


def discriminator_for(gen_name: str) -> str:
    """The discriminator registered beside a generator (``tokenfusion_gen_b2`` -> ``tokenfusion_dis_b2``)."""
    return gen_name.replace("tokenfusion_gen_", "tokenfusion_dis_")


def _example_inputs(net, size: int = 64):
    """Two (or, for a discriminator, four) small image batches: the inputs of every model here."""
    rng = np.random.default_rng(0)
    n = 4 if isinstance(net, TokenFusionDis) else 2
    return tuple(Tensor(rng.uniform(-1, 1, (2, 3, size, size)).astype(np.float32)) for _ in range(n))


def stage_sizes(size: int) -> Sequence[int]:
    """Token grid side of the five encoder stages for a square input (3x3/s2/p1 embeddings)."""
    out, s = [], int(size)
    for _ in range(NUM_STAGES):
        s = (s - 1) // 2 + 1
        out.append(s)
    return out


FAMILY = Family(input_size=256, input_sizes=dict(DEFAULT_INPUT), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                crop_pct=1.0, paper="TokenFusion (arXiv 2204.08721), image-to-image translation", status=STATUS,
                example_inputs=_example_inputs)
