"""Block-wise random masking with an exact masked count per sample, and the RGB mask token.

FastMIM (ggjy/FastMIM.pytorch ``mim_per_sample_block_masking``): the image is split into
``block x block`` pixel units (block = the backbone's output stride: 16 for ViT, 32 for Swin), each
sample keeps ``int(units * (1 - ratio))`` units chosen by the argsort of uniform noise and masks
the rest; the pixel mask replicates every unit over its block. The masked pixels are replaced by
a learnable RGB value (``x * (1 - M) + M * token``) before the patch embedding.

Masks are plain (B, H/block, W/block) float arrays with 1 = masked, made on the host
(``BlockMaskGenerator``, e.g. in the data loader) and passed to the model as an input, so the
compiled step has no random sort in it.
"""
from typing import Optional, Tuple

import numpy as np
from mindspore import ops


class MaskConfigError(ValueError):
    """A mask request that does not fit the image or the model."""


def num_masked(units: int, ratio: float) -> int:
    """Masked units of a sample: ``units - int(units * (1 - ratio))`` (the official keep count)."""
    if not 0.0 <= ratio < 1.0:
        raise MaskConfigError(f"mask ratio must be in [0, 1), got {ratio}")
    return units - int(units * (1.0 - ratio))


def block_mask(batch: int, grid: Tuple[int, int], ratio: float = 0.75,
               rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """(batch, gh, gw) float32 masks, exactly ``num_masked(gh * gw, ratio)`` ones per sample."""
    gh, gw = grid
    if gh < 1 or gw < 1:
        raise MaskConfigError(f"mask grid must be at least 1x1, got {grid}")
    rng = np.random.default_rng() if rng is None else rng
    units = gh * gw
    keep = units - num_masked(units, ratio)
    noise = rng.random((batch, units))
    order = np.argsort(noise, axis=1)  # the first `keep` (lowest noise) are kept
    mask = np.ones((batch, units), np.float32)
    np.put_along_axis(mask, order[:, :keep], 0.0, axis=1)
    return mask.reshape(batch, gh, gw)


class BlockMaskGenerator:
    """Host-side mask maker for a loader: ``gen(batch)`` or ``gen.for_image(h, w)`` per sample.

    Args:
        block: pixel side of a mask unit (the backbone's output stride, or a multiple of it).
        ratio: fraction of units masked (0.75 in FastMIM).
        seed: seed of the generator (deterministic runs).
    """

    def __init__(self, block: int, ratio: float = 0.75, seed: Optional[int] = None):
        if block < 1:
            raise MaskConfigError(f"mask block must be a positive number of pixels, got {block}")
        num_masked(1, ratio)  # validates the ratio
        self.block = int(block)
        self.ratio = float(ratio)
        self.rng = np.random.default_rng(seed)

    def grid(self, height: int, width: int) -> Tuple[int, int]:
        if height % self.block or width % self.block:
            raise MaskConfigError(f"image {height}x{width} is not divisible by the mask block {self.block}")
        return height // self.block, width // self.block

    def __call__(self, batch: int, height: int, width: int) -> np.ndarray:
        return block_mask(batch, self.grid(height, width), self.ratio, self.rng)

    def for_image(self, height: int, width: int) -> np.ndarray:
        """One (gh, gw) mask, for a per-sample dataset map."""
        return block_mask(1, self.grid(height, width), self.ratio, self.rng)[0]


def upsample_mask(mask, factor: int):
    """(B, gh, gw) -> (B, 1, gh * factor, gw * factor): every unit replicated over its block."""
    b, gh, gw = mask.shape
    if factor == 1:
        return mask.reshape(b, 1, gh, gw)
    m = ops.broadcast_to(mask.reshape(b, gh, 1, gw, 1), (b, gh, factor, gw, factor))
    return m.reshape(b, 1, gh * factor, gw * factor)


def apply_mask_token(images, pixel_mask, token):
    """``images * (1 - M) + M * token`` with a (1, 3, 1, 1) token broadcast over the pixels."""
    return images * (1.0 - pixel_mask) + pixel_mask * token
