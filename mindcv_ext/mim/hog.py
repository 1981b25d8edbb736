"""The FastMIM HOG target as a layer of fixed convolutions (no gradient).

Definition (ggjy/FastMIM.pytorch ``util/hog_layer.py::HOGLayerC``, nbins 9, pool 8, no Gaussian
window): reflect-pad by one pixel, per-channel Sobel gradients as a depthwise convolution
(``k_x = [[1,0,-1],[2,0,-2],[1,0,-1]]``, ``k_y = k_x^T``), magnitude ``sqrt(gx^2 + gy^2)``,
orientation ``atan2(gx, gy)`` (x first) scaled by ``nbins / pi`` and binned with a floor-mod
(9 unsigned bins of 20 degrees), a hard vote of the magnitude into its bin, sums over
non-overlapping ``cell x cell`` cells, and (``normalize=True``, FastMIM's ``--norm_pix_loss``) an
L2 normalisation of each (colour channel, cell) 9-bin histogram (eps 1e-12). Output
(B, 3 * nbins, H / cell, W / cell) with channel index ``c * nbins + bin``.
"""
import math

import numpy as np
from mindspore import Tensor, nn, ops


class HOGShapeError(ValueError):
    """An input the HOG layer cannot take."""


def reflect_pad1(x):
    """Reflect-pad a (B, C, H, W) tensor by one pixel (PyTorch ``mode='reflect'``) with slices."""
    x = ops.concat([x[:, :, 1:2], x, x[:, :, -2:-1]], axis=2)
    return ops.concat([x[:, :, :, 1:2], x, x[:, :, :, -2:-1]], axis=3)


class HOGLayer(nn.Cell):
    """HOG target of a normalised image batch; see the module docstring."""

    def __init__(self, nbins: int = 9, cell: int = 8, channels: int = 3, normalize: bool = True):
        super().__init__()
        if nbins < 1 or cell < 1:
            raise HOGShapeError(f"HOGLayer: nbins and cell must be positive, got {nbins}, {cell}")
        self.nbins = nbins
        self.cell = cell
        self.channels = channels
        self.normalize = normalize
        # Sobel as two separable depthwise convolutions, difference first: k_x = [1,2,1]^T (x) [1,0,-1].
        # Same filter as the 3x3 one, but a constant patch gives exactly 0 (a - a) whatever the
        # convolution algorithm's summation order, so flat regions carry no orientation noise.
        diff = np.array([1, 0, -1], np.float32)
        smooth = np.array([1, 2, 1], np.float32)
        self.diff_w = Tensor(np.tile(diff.reshape(1, 1, 1, 3), (channels, 1, 1, 1)))
        self.diff_h = Tensor(np.tile(diff.reshape(1, 1, 3, 1), (channels, 1, 1, 1)))
        self.smooth_w = Tensor(np.tile(smooth.reshape(1, 1, 1, 3), (channels, 1, 1, 1)))
        self.smooth_h = Tensor(np.tile(smooth.reshape(1, 1, 3, 1), (channels, 1, 1, 1)))
        self.bins = Tensor(np.arange(nbins, dtype=np.float32).reshape(1, 1, nbins, 1, 1))

    def out_channels(self) -> int:
        return self.channels * self.nbins

    def construct(self, x):
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"HOGLayer expects (B, {self.channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % self.cell or x.shape[3] % self.cell or x.shape[2] < 2 or x.shape[3] < 2:
            raise ValueError(f"HOGLayer: image {tuple(x.shape[2:])} is not divisible by the cell {self.cell}")
        x = ops.stop_gradient(x)
        padded = reflect_pad1(x)
        g = self.channels
        gx = ops.conv2d(ops.conv2d(padded, self.diff_w, groups=g), self.smooth_h, groups=g)
        gy = ops.conv2d(ops.conv2d(padded, self.diff_h, groups=g), self.smooth_w, groups=g)
        mag = ops.sqrt(gx * gx + gy * gy)
        phase = ops.atan2(gx, gy) * (self.nbins / math.pi)
        k = ops.floor(phase)
        k = k - self.nbins * ops.floor(k / self.nbins)  # floor-mod: non-negative bin indices
        b, c, h, w = mag.shape
        votes = (k.expand_dims(2) == self.bins).astype(mag.dtype) * mag.expand_dims(2)  # (B, C, bins, H, W)
        cells = votes.reshape(b, c, self.nbins, h // self.cell, self.cell, w // self.cell, self.cell).sum((4, 6))
        if self.normalize:
            norm = ops.sqrt((cells * cells).sum(2, keepdims=True))
            cells = cells / ops.maximum(norm, ops.full_like(norm, 1e-12))
        out = cells.reshape(b, c * self.nbins, h // self.cell, w // self.cell)
        return ops.stop_gradient(out)
