"""Colour palette and PNG writer for label maps.

The palette is the bit-interleaved PASCAL VOC colour map; as in the official TokenFusion pictures,
label ``l`` is drawn with palette entry ``l + 1`` (so class 0 is not black) and the ignore label in
black.
"""
import os

import cv2
import numpy as np

IGNORE_INDEX = 255


class PaletteError(ValueError):
    """A label map that cannot be coloured."""


def segmentation_palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 VOC colour map: bits of the index spread over R, G, B from the high bit down."""
    pal = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, rgb = i, [0, 0, 0]
        for bit in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - bit)
            c >>= 3
        pal[i] = rgb
    return pal


_PALETTE = segmentation_palette()


def colorize(labels, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(H, W) integer labels -> (H, W, 3) uint8 RGB picture."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise PaletteError(f"colorize: an (H, W) integer label map is needed, got {labels.shape} {labels.dtype}")
    ignored = labels == ignore_index
    valid = labels[~ignored]
    if valid.size and (valid.min() < 0 or valid.max() > 254):
        raise PaletteError(f"colorize: labels must lie in [0, 254] or equal {ignore_index}, "
                           f"got [{valid.min()}, {valid.max()}]")
    out = _PALETTE[(np.where(ignored, 0, labels.astype(np.int64) + 1))]
    out[ignored] = 0
    return out


def write_segmentation_png(path: str, labels, ignore_index: int = IGNORE_INDEX) -> str:
    """Write the coloured label map to ``path`` (PNG); returns the path."""
    rgb = colorize(labels, ignore_index)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if not path.lower().endswith(".png"):
        raise PaletteError(f"write_segmentation_png: '{path}' must end with .png")
    if not cv2.imwrite(path, np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"could not write '{path}'")
    return path


def write_score_png(path: str, values, vmin: float = 0.0, vmax: float = 1.0, scale: int = 1) -> str:
    """Write a 2-D map (e.g. a token score map) as a grey PNG, ``vmin`` black to ``vmax`` white,
    each value drawn as a ``scale x scale`` block; returns the path."""
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or not np.isfinite(values).all():
        raise PaletteError(f"write_score_png: a finite 2-D map is needed, got shape {values.shape}")
    if not vmax > vmin or int(scale) < 1:
        raise PaletteError(f"write_score_png: need vmax > vmin and scale >= 1, got {vmin}, {vmax}, {scale}")
    if not path.lower().endswith(".png"):
        raise PaletteError(f"write_score_png: '{path}' must end with .png")
    grey = (np.clip((values - vmin) / (vmax - vmin), 0, 1) * 255).round().astype(np.uint8)
    grey = np.kron(grey, np.ones((int(scale), int(scale)), np.uint8))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, grey):
        raise OSError(f"could not write '{path}'")
    return path
