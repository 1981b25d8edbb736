"""Generated views for multimodal image-to-image translation: shading + texture edges -> RGB (NumPy).

The analogue of TokenFusion's Taskonomy task "reshading + edge_texture -> rgb" (Wang et al.,
CVPR 2022, arXiv 2204.08721; yikaiw/TokenFusion ``image2image_translation``), rendered from the
scenes of :mod:`mindcv_ext.seg.scenes` (which know each pixel's albedo and z-buffer depth):

* **shade**: Lambertian shading ``max(0, n . l)`` under one fixed light, with the normals ``n`` of
  the surface back-projected from the z-buffer depth (pinhole camera, focal length = image width,
  principal point at the centre). At each pixel the one-sided difference with the smaller depth
  step is used, so depth edges do not smear the normals of the surfaces beside them;
* **texture**: texture edges, the gradient magnitude of the albedo (central differences, summed
  over colour channels), scaled and clipped to [0, 1]; it does not see shading;
* **rgb** (target): ``albedo * (AMBIENT + (1 - AMBIENT) * shade)``.

Each input alone is incomplete by construction: posters lie on the wall plane, so shading cannot
show them while texture edges can; shading intensities and curved shapes appear only in ``shade``.
All three are replicated / kept to 3 channels and mapped from [0, 1] to [-1, 1] as the official
transform does (normalise with mean 0.5, std 0.5).
"""
from typing import Dict

import numpy as np

from . import scenes

LIGHT = np.array([-0.4, -0.7, -0.6]) / np.linalg.norm([-0.4, -0.7, -0.6])  # towards the light (y down, z ahead)
AMBIENT = 0.3
EDGE_GAIN = 2.0


class ViewConfigError(ValueError):
    """View parameters that cannot be rendered."""


def surface_points(depth: np.ndarray) -> np.ndarray:
    """(H, W, 3) camera-frame points of a z-buffer depth map (x right, y down, z ahead)."""
    size_h, size_w = depth.shape
    f = float(size_w)
    v, u = np.mgrid[0:size_h, 0:size_w].astype(np.float64) + 0.5
    dx, dy = (u - size_w / 2.0) / f, (v - size_h / 2.0) / f
    return np.stack([dx * depth, dy * depth, depth], axis=-1)


def _smooth_diff(p: np.ndarray, axis: int) -> np.ndarray:
    """Per pixel, the forward or backward difference along ``axis``, whichever changes depth less."""
    fwd = np.diff(p, axis=axis, append=np.take(p, [-1], axis=axis))
    bwd = np.diff(p, axis=axis, prepend=np.take(p, [0], axis=axis))
    # at the border one of them is zero: use the other one there
    fz, bz = np.abs(fwd[..., 2]), np.abs(bwd[..., 2])
    f_ok = np.linalg.norm(fwd, axis=-1) > 0
    b_ok = np.linalg.norm(bwd, axis=-1) > 0
    use_fwd = (f_ok & (~b_ok | (fz <= bz)))[..., None]
    return np.where(use_fwd, fwd, bwd)


def normals(depth: np.ndarray) -> np.ndarray:
    """Unit surface normals (H, W, 3) facing the camera."""
    p = surface_points(depth)
    n = np.cross(_smooth_diff(p, 1), _smooth_diff(p, 0))
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    facing = (n * p).sum(-1, keepdims=True) > 0   # pointing away from the camera: flip
    return np.where(facing, -n, n)


def shading(depth: np.ndarray, light: np.ndarray = LIGHT) -> np.ndarray:
    """Lambertian shading in [0, 1] (H, W)."""
    return np.clip((normals(depth) * np.asarray(light)).sum(-1), 0.0, 1.0)


def texture_edges(albedo: np.ndarray, gain: float = EDGE_GAIN) -> np.ndarray:
    """Albedo gradient magnitude in [0, 1] (H, W); albedo (H, W, 3)."""
    gy, gx = np.gradient(albedo, axis=(0, 1))
    return np.clip(gain * np.sqrt((gx ** 2 + gy ** 2).sum(-1)), 0.0, 1.0)


def to_signed(img: np.ndarray) -> np.ndarray:
    """[0, 1] (H, W) or (H, W, 3) -> (3, H, W) float32 in [-1, 1]."""
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return np.ascontiguousarray((img.transpose(2, 0, 1) * 2.0 - 1.0).astype(np.float32))


def render_views(n: int, size: int = 32, seed: int = 0) -> Dict[str, np.ndarray]:
    """``n`` views: ``shade``, ``texture``, ``rgb`` (N, 3, H, W) in [-1, 1]; ``depth_m`` (N, H, W)."""
    if int(n) <= 0:
        raise ViewConfigError(f"render_views: n must be positive, got {n}")
    if int(size) < 32 or int(size) % 32:
        raise ViewConfigError(f"render_views: size must be a multiple of 32 and >= 32, got {size}")
    rng = np.random.default_rng(seed)
    out = {k: np.zeros((n, 3, size, size), np.float32) for k in ("shade", "texture", "rgb")}
    out["depth_m"] = np.zeros((n, size, size), np.float32)
    for i in range(n):
        scene = scenes.render_scene(rng, size)
        shade = shading(scene["depth_m"])
        rgb = np.clip(scene["albedo"] * (AMBIENT + (1.0 - AMBIENT) * shade)[..., None], 0.0, 1.0)
        out["shade"][i] = to_signed(shade)
        out["texture"][i] = to_signed(texture_edges(scene["albedo"]))
        out["rgb"][i] = to_signed(rgb)
        out["depth_m"][i] = scene["depth_m"]
    return out
