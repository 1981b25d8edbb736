"""Image reconstruction metrics (NumPy): L1, PSNR and SSIM.

SSIM follows Wang, Bovik, Sheikh and Simoncelli (IEEE TIP 2004): local means, variances and the
covariance under an 11x11 Gaussian window (sigma 1.5, normalised to sum 1), ``C1 = (0.01 L)^2``,
``C2 = (0.03 L)^2``, the SSIM map over the positions where the window fits inside the image
("valid"), averaged; colour images average the per-channel values.
"""
import numpy as np

WINDOW, SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03


class ImageMetricError(ValueError):
    """Images that cannot be compared."""


def _pair(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim not in (2, 3):
        raise ImageMetricError(f"images must have the same (H, W) or (C, H, W) shape, got {x.shape} and {y.shape}")
    return (x[None], y[None]) if x.ndim == 2 else (x, y)


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of ``size`` taps."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of (C, H, W) with the 1-D window ``g`` along H then W."""
    k = len(g)
    h, w = img.shape[1] - k + 1, img.shape[2] - k + 1
    rows = sum(g[i] * img[:, i:i + h, :] for i in range(k))
    return sum(g[j] * rows[:, :, j:j + w] for j in range(k))


def ssim(x, y, data_range: float = 1.0, window: int = WINDOW, sigma: float = SIGMA) -> float:
    """Mean SSIM of two images (H, W) or (C, H, W) with values spanning ``data_range``."""
    x, y = _pair(x, y)
    if min(x.shape[1:]) < window:
        raise ImageMetricError(f"images of {x.shape[1:]} are smaller than the {window}x{window} SSIM window")
    g = gaussian_window(window, sigma)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    vx = _filter_valid(x * x, g) - mx * mx
    vy = _filter_valid(y * y, g) - my * my
    cxy = _filter_valid(x * y, g) - mx * my
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(smap.mean())


def psnr(x, y, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    x, y = _pair(x, y)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range ** 2 / mse))


def l1(x, y) -> float:
    """Mean absolute difference."""
    x, y = _pair(x, y)
    return float(np.mean(np.abs(x - y)))
