"""Position-embedding helpers for vision transformers: 2-D sin-cos tables, bicubic resizing of
learned embeddings, and resizing of Swin relative-position-bias tables.

The sin-cos layout is the MAE / FastMIM one (ggjy/FastMIM.pytorch ``util/pos_embed.py``): the first
half of the channels encodes the column (x) coordinate, the second half the row, each half as
``[sin(p w_i), cos(p w_i)]`` with ``w_i = 10000^(-i / (D/4))``; tokens in row-major order.
Bicubic resizing follows PyTorch ``interpolate(mode='bicubic', align_corners=False)`` (half-pixel
centres, cubic convolution A = -0.75, border taps clamped), which is what DeiT/MAE/FastMIM use to
resize a learned position embedding between grids.
"""
from typing import Tuple

import numpy as np
from mindspore import Tensor, ops


class PosEmbedError(ValueError):
    """A position embedding or bias table whose shape does not fit the request."""


# ----------------------------------------------------------------------------- sin-cos

def sincos_2d_np(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Fixed 2-D sin-cos table (grid_h * grid_w, dim), float64, row-major tokens."""
    if dim % 4:
        raise PosEmbedError(f"a 2-D sin-cos position table needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (np.arange(quarter, dtype=np.float64) / quarter)
    rows, cols = np.meshgrid(np.arange(grid_h, dtype=np.float64), np.arange(grid_w, dtype=np.float64),
                             indexing="ij")

    def encode(pos):
        ang = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(ang), np.cos(ang)], axis=1)

    return np.concatenate([encode(cols), encode(rows)], axis=1)


def sincos_2d(omega: Tensor, grid_h: int, grid_w: int):
    """The same table built from MindSpore ops (graph-mode safe): (1, grid_h * grid_w, 4 * len(omega)).

    ``omega`` is the (D/4,) frequency vector; recomputing for the current grid is how a fixed
    sin-cos embedding follows the input resolution (FastMIM-P).
    """
    rows = ops.arange(grid_h).astype(omega.dtype)
    cols = ops.arange(grid_w).astype(omega.dtype)
    rows = ops.tile(rows.reshape(grid_h, 1), (1, grid_w)).reshape(-1, 1)
    cols = ops.tile(cols.reshape(1, grid_w), (grid_h, 1)).reshape(-1, 1)
    ang_c = cols * omega.reshape(1, -1)
    ang_r = rows * omega.reshape(1, -1)
    table = ops.concat([ops.sin(ang_c), ops.cos(ang_c), ops.sin(ang_r), ops.cos(ang_r)], axis=1)
    return table.reshape(1, grid_h * grid_w, -1)


def sincos_omega(dim: int) -> np.ndarray:
    if dim % 4:
        raise PosEmbedError(f"a 2-D sin-cos position table needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    return (1.0 / 10000.0 ** (np.arange(quarter, dtype=np.float64) / quarter)).astype(np.float32)


# ----------------------------------------------------------------------------- bicubic resize

def cubic_taps(n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray]:
    """Source indices and weights, each (4, n_out), of a 1-D bicubic resize (align_corners=False)."""
    a = -0.75
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    base = np.floor(src)
    t = src - base

    def near(x):  # |x| <= 1
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a

    weights = np.stack([far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)])
    index = np.stack([np.clip(base + off, 0, n_in - 1) for off in (-1, 0, 1, 2)]).astype(np.int32)
    return index, weights


def resize_axis_np(arr: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Bicubic resize of one axis of a numpy array (float64 accumulation); same length = identity."""
    n_in = arr.shape[axis]
    if n_in == n_out:
        return np.asarray(arr, dtype=np.float64)
    index, weights = cubic_taps(n_in, n_out)
    shape = [1] * arr.ndim
    shape[axis] = n_out
    out = np.zeros(arr.shape[:axis] + (n_out,) + arr.shape[axis + 1:], np.float64)
    for tap in range(4):
        out += np.take(arr, index[tap], axis=axis).astype(np.float64) * weights[tap].reshape(shape)
    return out


def resize_axis(x, axis: int, n_out: int):
    """Bicubic resize of one axis of a tensor (four gathers with constant taps)."""
    n_in = x.shape[axis]
    if n_in == n_out:
        return x
    index, weights = cubic_taps(n_in, n_out)
    shape = [1] * x.ndim
    shape[axis] = n_out
    out = None
    for tap in range(4):
        term = ops.gather(x, Tensor(index[tap]), axis) * Tensor(weights[tap].astype(np.float32).reshape(shape))
        out = term if out is None else out + term
    return out


def resize_pos_embed_np(pos_embed: np.ndarray, new_grid: Tuple[int, int], num_prefix_tokens: int = 1,
                        old_grid: Tuple[int, int] = None) -> np.ndarray:
    """Resize a learned (1, prefix + h*w, D) position embedding to ``new_grid`` bicubically.

    Prefix tokens (class token) are kept as they are; the old grid is taken as square unless given.
    """
    pos_embed = np.asarray(pos_embed)
    if pos_embed.ndim == 2:
        pos_embed = pos_embed[None]
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise PosEmbedError(f"pos_embed must be (1, tokens, dim), got {pos_embed.shape}")
    prefix, grid_tokens = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    n = grid_tokens.shape[1]
    if old_grid is None:
        side = int(round(n ** 0.5))
        if side * side != n:
            raise PosEmbedError(f"pos_embed has {n} grid tokens after {num_prefix_tokens} prefix token(s), "
                                "not a square grid; pass old_grid")
        old_grid = (side, side)
    if old_grid[0] * old_grid[1] != n:
        raise PosEmbedError(f"old_grid {old_grid} does not hold the {n} grid tokens of pos_embed")
    grid = grid_tokens.reshape(old_grid[0], old_grid[1], -1)
    grid = resize_axis_np(resize_axis_np(grid, 0, new_grid[0]), 1, new_grid[1])
    out = np.concatenate([prefix.astype(np.float64), grid.reshape(1, -1, grid.shape[-1])], axis=1)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- relative position bias

def _geometric_positions(src_size: int, dst_size: int) -> np.ndarray:
    """Source sample positions of the SimMIM / FastMIM geometric remapping (``remap_pretrained_keys_swin``).

    The offsets 1, q, q^2, ... grow geometrically with the ratio q chosen (bisection) so that the
    outermost source offset lands on the outermost target offset; symmetric around 0.
    """
    half_src, half_dst = src_size // 2, dst_size // 2

    def series(ratio):
        return (1.0 - ratio ** half_src) / (1.0 - ratio)

    left, right = 0.5, 2.0
    while right - left > 1e-6:
        q = (left + right) / 2.0
        if series(q) > half_dst:
            right = q
        else:
            left = q
    dis, cur = [], 1.0
    for i in range(half_src):
        dis.append(cur)
        cur += q ** (i + 1)
    return np.array([-d for d in reversed(dis)] + [0.0] + dis)


def resize_rel_pos_bias_table(table: np.ndarray, dst_window: int, mode: str = "geometric") -> np.ndarray:
    """Resize a Swin ``relative_position_bias_table`` ((2w-1)^2, heads) to window ``dst_window``.

    ``mode='geometric'`` is FastMIM's default ("simmim"): per head, a bicubic spline (linear for a
    source side <= 3) through the table sampled at geometrically spaced offsets, evaluated at the
    integer offsets of the new window. The official code calls ``scipy.interpolate.interp2d``; a
    ``RectBivariateSpline`` without smoothing is the same interpolating spline on a regular grid.
    ``mode='bicubic'`` is the "interpolate" mode (PyTorch bicubic, align_corners=False).
    """
    from scipy.interpolate import RectBivariateSpline

    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2:
        raise PosEmbedError(f"relative_position_bias_table must be (entries, heads), got {table.shape}")
    src = int(round(table.shape[0] ** 0.5))
    if src * src != table.shape[0] or src % 2 == 0:
        raise PosEmbedError(f"relative_position_bias_table has {table.shape[0]} rows, not (2w-1)^2")
    dst = 2 * int(dst_window) - 1
    if dst_window < 1:
        raise PosEmbedError(f"dst_window must be >= 1, got {dst_window}")
    if dst == src:
        return table.astype(np.float32)
    heads = table.shape[1]
    grid = table.reshape(src, src, heads)
    if mode == "bicubic":
        out = resize_axis_np(resize_axis_np(grid, 0, dst), 1, dst)
        return out.reshape(dst * dst, heads).astype(np.float32)
    if mode != "geometric":
        raise PosEmbedError(f"unknown relative-position-bias resize mode '{mode}' (geometric, bicubic)")
    pos = _geometric_positions(src, dst)
    target = np.arange(-(dst // 2), dst // 2 + 0.1, 1.0)
    degree = 1 if src <= 3 else 3
    out = np.empty((dst, dst, heads))
    for h in range(heads):
        spline = RectBivariateSpline(pos, pos, grid[:, :, h], kx=degree, ky=degree, s=0)
        out[:, :, h] = spline(target, target)
    return out.reshape(dst * dst, heads).astype(np.float32)
