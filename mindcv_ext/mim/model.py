"""``MIMModel``: FastMIM pre-training around any backbone with a feature map at a known stride.

SimMIM-style (ggjy/FastMIM.pytorch ``mim_vit_pretrain.py`` / ``mim_swin_pretrain.py``): the encoder
sees every token; masked pixel blocks are replaced by a learnable RGB value before the backbone;
a small decoder predicts the target of each output token; the loss is the mean squared error over
the masked tokens only (a plain mean over all selected elements).

A backbone qualifies when it has ``forward_features(x)`` returning either a map (B, C, h, w) or
tokens (B, prefix + h*w, C) in row-major order, ``num_features`` (C) and an output stride
(attribute ``output_stride`` or the ``stride`` argument). ViT keeps its class token through the
decoder and drops it after the prediction, as the official code does.
"""
from typing import Optional

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, initializer

from .decoder import MIMDecoder
from .hog import HOGLayer
from .masking import MaskConfigError, apply_mask_token, upsample_mask
from .targets import hog_token_targets, pixel_token_targets


class MIMConfigError(ValueError):
    """A backbone or setting the MIM wrapper cannot use."""


def xavier_init_dense(cell: nn.Cell, seed: int = 0) -> None:
    """Xavier-uniform every Dense weight (zero bias) and LayerNorm (1, 0), as the official
    ``_init_weights``; a ViT patch-embedding conv is initialised as a Linear (fan_in = C*k*k,
    fan_out = D). The fixed seed keeps runs reproducible."""
    rng = np.random.default_rng(seed)
    for name, sub in cell.cells_and_names():
        if isinstance(sub, nn.Dense):
            fan_out, fan_in = sub.weight.shape
            bound = (6.0 / (fan_in + fan_out)) ** 0.5
            sub.weight.set_data(Tensor(rng.uniform(-bound, bound, sub.weight.shape).astype(np.float32)))
            if sub.bias is not None:
                sub.bias.set_data(Tensor(np.zeros(sub.bias.shape, np.float32)))
        elif isinstance(sub, nn.LayerNorm):
            sub.gamma.set_data(Tensor(np.ones(sub.gamma.shape, np.float32)))
            sub.beta.set_data(Tensor(np.zeros(sub.beta.shape, np.float32)))
        elif isinstance(sub, nn.Conv2d) and name.endswith("patch_embed.proj"):
            shape = sub.weight.shape
            fan_in, fan_out = int(np.prod(shape[1:])), shape[0]
            bound = (6.0 / (fan_in + fan_out)) ** 0.5
            sub.weight.set_data(Tensor(rng.uniform(-bound, bound, shape).astype(np.float32)))


class MIMModel(nn.Cell):
    """Loss-only pre-training model: ``construct(images, mask) -> scalar loss``.

    Args:
        backbone: the encoder (see the module docstring); for ViT build it with the pre-training
            options (``pos_embed='sincos'``; FastMIM's ViT-B uses 6 heads, see ``recipes``).
        target: ``'hog'`` (FastMIM) or ``'pixel'`` (the ``--mim_loss l2`` alternative).
        decoder_dim, decoder_depth: decoder size (ViT-B 256 / 1, Swin-B 256 / 4).
        stride: output stride of the features; default ``backbone.output_stride``.
        mask_block: pixel side of a mask unit, a multiple of the stride; default the stride.
        hog_cell, hog_bins: HOG cell side and bins (8 and 9 in FastMIM).
        norm_target: per-cell L2 norm of HOG (``--norm_pix_loss``) / per-patch pixel standardisation.
        decoder_norm_eps: LayerNorm eps of the decoder (1e-6 for ViT, 1e-5 for Swin).
        init_backbone: re-initialise the backbone's Dense layers xavier-uniform as the official
            pre-training models do (the decoder always is).

    ``images`` are normalised (B, 3, H, W); ``mask`` is (B, H / mask_block, W / mask_block), 1 = masked.
    """

    def __init__(self, backbone: nn.Cell, target: str = "hog", decoder_dim: int = 256, decoder_depth: int = 1,
                 stride: Optional[int] = None, mask_block: Optional[int] = None, hog_cell: int = 8,
                 hog_bins: int = 9, norm_target: bool = True, decoder_norm_eps: float = 1e-6,
                 init_backbone: bool = False, in_channels: int = 3):
        super().__init__()
        if not hasattr(backbone, "forward_features") or not hasattr(backbone, "num_features"):
            raise MIMConfigError(f"MIMModel: {type(backbone).__name__} has no forward_features / num_features")
        stride = stride if stride is not None else getattr(backbone, "output_stride", None)
        if not isinstance(stride, int) or stride < 1:
            raise MIMConfigError(f"MIMModel: {type(backbone).__name__} has no output_stride attribute; pass stride=")
        mask_block = stride if mask_block is None else int(mask_block)
        if mask_block % stride:
            raise MIMConfigError(f"MIMModel: mask_block {mask_block} is not a multiple of the stride {stride}")
        if target not in ("hog", "pixel"):
            raise MIMConfigError(f"MIMModel: target must be 'hog' or 'pixel', got {target!r}")
        if target == "hog" and stride % hog_cell:
            raise MIMConfigError(f"MIMModel: stride {stride} is not a multiple of the HOG cell {hog_cell}")
        self.backbone = backbone
        self.stride = stride
        self.mask_block = mask_block
        self.target = target
        self.norm_target = norm_target
        self.num_prefix_tokens = int(getattr(backbone, "num_prefix_tokens", 0))
        if target == "hog":
            self.hog = HOGLayer(hog_bins, hog_cell, in_channels, normalize=norm_target)
            self.target_dim = in_channels * hog_bins * (stride // hog_cell) ** 2
        else:
            self.target_dim = in_channels * stride * stride
        self.decoder = MIMDecoder(backbone.num_features, decoder_dim, decoder_depth, self.target_dim,
                                  norm_eps=decoder_norm_eps)
        xavier_init_dense(self.decoder, seed=1)
        if init_backbone:
            xavier_init_dense(self.backbone, seed=2)
            if hasattr(backbone, "cls_token"):  # official: class and mask tokens N(0, 0.02)
                backbone.cls_token.set_data(initializer(Normal(0.02), backbone.cls_token.shape))
        self.mask_token = Parameter(initializer(Normal(0.02), (1, in_channels, 1, 1)), name="mask_token")

    # ------------------------------------------------------------------ pieces

    def check_input_size(self, height: int, width: int) -> None:
        if height % self.mask_block or width % self.mask_block:
            raise MaskConfigError(f"MIMModel: image {height}x{width} is not divisible by the mask block "
                                  f"{self.mask_block}")
        check = getattr(self.backbone, "check_input_size", None)
        if check is not None:
            check(height, width)

    def tokens(self, x):
        """Backbone features as (B, prefix + h*w, C) tokens."""
        feats = self.backbone.forward_features(x)
        if feats.ndim == 4:
            b, c, h, w = feats.shape
            return feats.reshape(b, c, h * w).transpose(0, 2, 1)
        return feats

    def target_tokens(self, images):
        gh, gw = images.shape[2] // self.stride, images.shape[3] // self.stride
        if self.target == "hog":
            return hog_token_targets(self.hog(images), gh, gw)
        return ops.stop_gradient(pixel_token_targets(images, self.stride, self.norm_target))

    def token_mask(self, mask):
        """(B, gm_h, gm_w) block mask -> (B, L) mask over output tokens."""
        factor = self.mask_block // self.stride
        b, gh, gw = mask.shape
        return upsample_mask(mask, factor).reshape(b, gh * factor * gw * factor)

    def forward_pred(self, images, mask):
        """(prediction, target, token mask), each over the h*w output tokens."""
        if images.ndim != 4:
            raise ValueError(f"MIMModel expects images (B, C, H, W), got {tuple(images.shape)}")
        b, _, h, w = images.shape
        if tuple(mask.shape) != (b, h // self.mask_block, w // self.mask_block) or h % self.mask_block:
            raise ValueError(f"MIMModel: mask {tuple(mask.shape)} does not match images {tuple(images.shape)} "
                                  f"with mask block {self.mask_block} (expected {(b, h // self.mask_block, w // self.mask_block)})")
        mask = mask.astype(images.dtype)
        masked = apply_mask_token(images, upsample_mask(mask, self.mask_block), self.mask_token)
        pred = self.decoder(self.tokens(masked))[:, self.num_prefix_tokens:]
        target = self.target_tokens(images)
        if pred.shape[1] != target.shape[1]:
            raise ValueError(f"MIMModel: the backbone gives {pred.shape[1]} tokens but a {h}x{w} image at "
                                 f"stride {self.stride} has {target.shape[1]}; check stride / num_prefix_tokens")
        return pred, target, self.token_mask(mask)

    @staticmethod
    def masked_mse(pred, target, token_mask):
        """Mean of (pred - target)^2 over all elements of the masked tokens."""
        per_token = ((pred - target) ** 2).mean(-1)
        return (per_token * token_mask).sum() / ops.maximum(token_mask.sum(), ops.ones_like(token_mask.sum()))

    def construct(self, images, mask):
        pred, target, token_mask = self.forward_pred(images, mask)
        return self.masked_mse(pred, target, token_mask)


# ---------------------------------------------------------------------- recipes

# Backbone options and MIM settings of the official commands (README) and 1.11-style CPU model.
RECIPES = {
    # ViT-B: fixed sin-cos PE; 6 heads in pre-training as the official ``mim_vit_base`` (fine-tuning
    # uses 12; the weights have the same shapes, only the head split differs).
    "vit_base_patch16_224": dict(backbone=dict(num_heads=6, pos_embed="sincos", img_size=128),
                                 mim=dict(decoder_dim=256, decoder_depth=1, decoder_norm_eps=1e-6,
                                          init_backbone=True)),
    "swin_base_patch4_window7_224": dict(backbone=dict(window_size=4, drop_path_rate=0.0),
                                         mim=dict(decoder_dim=256, decoder_depth=4, decoder_norm_eps=1e-5,
                                                  init_backbone=True)),
    # CPU model: heads 2 in pre-training vs 4 in fine-tuning mirrors the ViT-B quirk; cell 4 keeps
    # patch / cell = 2 (108 values per token) as in ViT-B.
    "vit_pico_patch8_56": dict(backbone=dict(num_heads=2, pos_embed="sincos", img_size=32),
                               mim=dict(decoder_dim=32, decoder_depth=1, hog_cell=4, decoder_norm_eps=1e-6,
                                        init_backbone=True)),
}


def create_mim_model(backbone_name: str, backbone_kwargs: Optional[dict] = None, **mim_kwargs) -> MIMModel:
    """Build ``MIMModel`` around a registered backbone, with the recipe's options when one exists."""
    from mindcv_ext.models import create_model

    recipe = RECIPES.get(backbone_name, dict(backbone={}, mim={}))
    bkw = dict(recipe["backbone"], **(backbone_kwargs or {}))
    mkw = dict(recipe["mim"], **mim_kwargs)
    backbone = create_model(backbone_name, num_classes=0, **bkw)
    return MIMModel(backbone, **mkw)
