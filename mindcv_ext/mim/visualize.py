"""Reconstruction grid for FastMIM: input | masked input | HOG target | HOG prediction, one row a sample.

HOG maps are drawn as the usual cell glyphs: in each cell, one line per orientation bin (the edge
direction, perpendicular to the bin's gradient direction), brightness = the bin's value averaged
over the colour channels.
"""
import math

import numpy as np


def _to_rgb(images: np.ndarray, mean, std) -> np.ndarray:
    x = images.transpose(0, 2, 3, 1) * np.asarray(std).reshape(1, 1, 1, -1) + np.asarray(mean).reshape(1, 1, 1, -1)
    return np.clip(x, 0.0, 1.0)


def hog_glyphs(hog: np.ndarray, nbins: int = 9, cell_px: int = 12) -> np.ndarray:
    """(C * nbins, Hc, Wc) HOG map -> (Hc * cell_px, Wc * cell_px) grey image of glyphs."""
    c = hog.shape[0] // nbins
    mag = np.abs(hog.reshape(c, nbins, *hog.shape[1:])).mean(0)
    mag = mag / max(mag.max(), 1e-12)
    hc, wc = hog.shape[1:]
    out = np.zeros((hc * cell_px, wc * cell_px))
    t = np.linspace(-0.45, 0.45, 2 * cell_px)
    centre = (cell_px - 1) / 2.0
    for k in range(nbins):
        # bin k holds atan2(gx, gy) in [k, k + 1) * pi / nbins (mod pi); the edge is perpendicular
        ang = (k + 0.5) * math.pi / nbins
        gx, gy = math.sin(ang), math.cos(ang)
        ex, ey = -gy, gx
        cols = np.clip(np.round(centre + t * cell_px * ex), 0, cell_px - 1).astype(int)
        rows = np.clip(np.round(centre + t * cell_px * ey), 0, cell_px - 1).astype(int)
        for i in range(hc):
            for j in range(wc):
                sub = out[i * cell_px:(i + 1) * cell_px, j * cell_px:(j + 1) * cell_px]
                sub[rows, cols] = np.maximum(sub[rows, cols], mag[k, i, j])
    return out


def save_reconstruction_grid(path: str, images, masks, hog_target, hog_pred, mask_block: int,
                             mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), nbins: int = 9,
                             max_rows: int = 8) -> str:
    """Write the PNG grid; ``images`` (B, 3, H, W) normalised, ``masks`` (B, gh, gw),
    ``hog_target`` / ``hog_pred`` (B, 27, Hc, Wc) (see ``targets.token_targets_to_map``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, masks = np.asarray(images, np.float32), np.asarray(masks, np.float32)
    hog_target, hog_pred = np.asarray(hog_target), np.asarray(hog_pred)
    rows = min(max_rows, images.shape[0])
    rgb = _to_rgb(images[:rows], mean, std)
    pix = np.kron(masks[:rows], np.ones((mask_block, mask_block)))[..., None]
    masked = rgb * (1 - pix) + pix * 0.5
    fig, axes = plt.subplots(rows, 4, figsize=(8, 2 * rows), squeeze=False)
    for r in range(rows):
        panels = (rgb[r], masked[r], hog_glyphs(hog_target[r], nbins), hog_glyphs(hog_pred[r], nbins))
        for c, (ax, img, title) in enumerate(zip(axes[r], panels, ("input", "masked", "HOG target", "HOG pred"))):
            ax.imshow(img, cmap=None if img.ndim == 3 else "gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
