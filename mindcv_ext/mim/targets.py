"""Regression targets per output token: HOG cells or (normalised) pixels.

Layouts follow ggjy/FastMIM.pytorch ``forward_hog_loss`` / ``patchify``:
- HOG: a token covering ``u x u`` cells holds ``27 * u^2`` values at index ``(c * 9 + bin) * u^2 + i * u + j``
  ((i, j) = cell inside the token); 108 for ViT (stride 16, cell 8), 432 at stride 32.
- pixels: ``p^2 * 3`` values per patch at index ``(i * p + j) * 3 + c``; with ``norm=True`` each patch
  is standardised by its own mean and unbiased variance (+1e-6), as MAE's ``norm_pix_loss``.
"""
from mindspore import ops


def hog_token_targets(hog, grid_h: int, grid_w: int):
    """(B, C, Hc, Wc) HOG map -> (B, grid_h * grid_w, C * u^2) with ``u = Hc / grid_h``."""
    b, c, hc, wc = hog.shape
    if hc % grid_h or wc % grid_w or hc // grid_h != wc // grid_w:
        raise ValueError(f"HOG map {hc}x{wc} does not tile a {grid_h}x{grid_w} token grid evenly "
                               "(the output stride must be a multiple of the HOG cell)")
    u = hc // grid_h
    x = hog.reshape(b, c, grid_h, u, grid_w, u).transpose(0, 2, 4, 1, 3, 5)
    return x.reshape(b, grid_h * grid_w, c * u * u)


def token_targets_to_map(tokens, grid_h: int, grid_w: int, channels: int):
    """Inverse of :func:`hog_token_targets`: (B, L, C * u^2) -> (B, C, grid_h * u, grid_w * u)."""
    b, _, d = tokens.shape
    u = int(round((d // channels) ** 0.5))
    x = tokens.reshape(b, grid_h, grid_w, channels, u, u).transpose(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels, grid_h * u, grid_w * u)


def pixel_token_targets(images, patch: int, norm: bool = True):
    """(B, 3, H, W) -> (B, L, patch^2 * 3) patchified pixels, optionally per-patch standardised."""
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image {h}x{w} is not divisible by the patch {patch}")
    gh, gw = h // patch, w // patch
    x = images.reshape(b, c, gh, patch, gw, patch).transpose(0, 2, 4, 3, 5, 1)
    x = x.reshape(b, gh * gw, patch * patch * c)
    if norm:
        n = x.shape[-1]
        mean = x.mean(-1, keep_dims=True)
        var = ((x - mean) ** 2).sum(-1, keepdims=True) / (n - 1)  # torch.var default: unbiased
        x = (x - mean) / ops.sqrt(var + 1e-6)
    return x
