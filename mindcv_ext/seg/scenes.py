"""Generated RGB-D scenes in which each modality alone is ambiguous (NumPy).

A pinhole camera (focal length = image width, principal point at the centre, 0.7-1.3 m above
the floor (drawn per scene), looking horizontally) sees a floor, a back wall, flat posters on the
wall and 3-6 objects standing on the floor: boxes (a flat front face), cylinders (vertical axis)
and spheres, drawn with a z-buffer. Classes:

    0 floor, 1 wall, 2 poster, 3 box, 4 cylinder, 5 sphere

Ambiguity by construction:
* posters lie on the wall plane, so their depth equals the wall's: only colour separates them;
* floor and wall share one albedo, and the camera height (hence the image row of the floor-wall
  edge) varies per scene: only depth (a plane receding with the row vs a constant) separates them
  reliably, RGB has just the image row as a prior;
* boxes, cylinders, spheres and posters draw their colours from one shared palette and box/cylinder
  silhouettes are both upright rectangles; the illumination is a smooth random field that does
  not depend on the geometry, so RGB carries no shading cue: only depth (flat vs curved) separates
  a box from a cylinder.
  (Geometric Lambertian shading would leak the shape into RGB; it is left out on purpose.)

Corruption: with probability ``corrupt_prob`` per scene and modality, 1-3 rectangles (each side
20-40 % of the image) of depth are set to 0 (holes) and, independently, 1-3 rectangles of RGB are
over-exposed to white. The labels are untouched and the corrupted pixels are returned as masks.

Outputs (``render_scenes``): ``rgb`` (N, 3, H, W) in [0, 1]; ``depth`` (N, 3, H, W) = metres / 10,
replicated to 3 channels as the NYUDv2 reader does; ``mask`` (N, H, W) int32; ``rgb_corrupt`` and
``depth_corrupt`` (N, H, W) bool; ``depth_m`` (N, H, W) clean metric depth.
"""
from typing import Dict

import numpy as np

CLASSES = ("floor", "wall", "poster", "box", "cylinder", "sphere")
NUM_CLASSES = len(CLASSES)
CAMERA_HEIGHT = (0.7, 1.3)   # metres above the floor, uniform per scene
DEPTH_SCALE = 10.0   # depth channel = metres / DEPTH_SCALE

_ROOM = np.array([0.62, 0.58, 0.52])   # floor and wall
_SHARED = np.array([[0.85, 0.20, 0.20], [0.20, 0.35, 0.85], [0.20, 0.70, 0.30], [0.90, 0.75, 0.15],
                    [0.60, 0.25, 0.75], [0.15, 0.75, 0.80]])


class SceneConfigError(ValueError):
    """Scene parameters that cannot be rendered."""


def _rays(size: int):
    """Per-pixel ray directions (x/z, y/z) through pixel centres."""
    f, c = float(size), size / 2.0
    v, u = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    return (u - c) / f, (v - c) / f


def _zbuffer_put(depth, label, albedo, hit, z, cls, colour):
    closer = hit & (z < depth)
    depth[closer] = z[closer]
    label[closer] = cls
    albedo[closer] = colour


def _rect(rng, size, min_frac, max_frac):
    h = int(rng.integers(max(2, int(min_frac * size)), max(3, int(max_frac * size)) + 1))
    w = int(rng.integers(max(2, int(min_frac * size)), max(3, int(max_frac * size)) + 1))
    top, left = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    return slice(top, top + h), slice(left, left + w)


def render_scene(rng: np.random.Generator, size: int = 64) -> Dict[str, np.ndarray]:
    """One clean scene: ``albedo`` (H, W, 3), ``depth_m`` (H, W), ``mask`` (H, W)."""
    dx, dy = _rays(size)
    cam_h = rng.uniform(*CAMERA_HEIGHT)
    wall_z = rng.uniform(4.5, 6.0)
    with np.errstate(divide="ignore"):
        floor_z = np.where(dy > 0, cam_h / np.maximum(dy, 1e-9), np.inf)
    is_floor = floor_z < wall_z
    depth = np.where(is_floor, floor_z, wall_z)
    label = np.where(is_floor, 0, 1).astype(np.int32)
    jitter = lambda c: np.clip(c + rng.uniform(-0.05, 0.05, 3), 0, 1)  # noqa: E731
    albedo = np.broadcast_to(jitter(_ROOM), is_floor.shape + (3,)).copy()  # one colour for floor and wall

    # Posters: rectangles on the wall plane (same depth as the wall).
    wall_bottom = int(np.argmax(is_floor.any(axis=1)))  # first row that shows floor
    for _ in range(int(rng.integers(1, 3))):
        h, w = int(rng.integers(size // 8, size // 4 + 1)), int(rng.integers(size // 8, size // 3 + 1))
        top = int(rng.integers(1, max(2, wall_bottom - h - 1)))
        left = int(rng.integers(0, size - w))
        region = np.zeros_like(is_floor)
        region[top:top + h, left:left + w] = True
        region &= ~is_floor
        label[region] = 2
        albedo[region] = jitter(_SHARED[rng.integers(len(_SHARED))])

    # Objects standing on the floor, drawn with a z-buffer.
    for _ in range(int(rng.integers(3, 7))):
        kind = int(rng.integers(3, 6))
        zc = rng.uniform(2.0, wall_z - 0.8)
        xc = rng.uniform(-0.35, 0.35) * zc
        colour = jitter(_SHARED[rng.integers(len(_SHARED))])
        if kind == 3:      # box: flat front face at zc
            half, height = rng.uniform(0.25, 0.45), rng.uniform(0.5, 1.1)
            z = np.full_like(dx, zc)
            x, y = dx * zc, dy * zc
            hit = (np.abs(x - xc) <= half) & (y >= cam_h - height) & (y <= cam_h)
        elif kind == 4:    # vertical cylinder of radius r centred at (xc, zc)
            r, height = rng.uniform(0.25, 0.45), rng.uniform(0.5, 1.1)
            a = dx ** 2 + 1.0
            b = -2.0 * (dx * xc + zc)
            c = xc ** 2 + zc ** 2 - r ** 2
            disc = b ** 2 - 4 * a * c
            t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
            y = dy * t
            hit = (disc >= 0) & (y >= cam_h - height) & (y <= cam_h)
            z = t
        else:              # sphere resting on the floor
            r = rng.uniform(0.25, 0.45)
            cy = cam_h - r
            a = dx ** 2 + dy ** 2 + 1.0
            b = -2.0 * (dx * xc + dy * cy + zc)
            c = xc ** 2 + cy ** 2 + zc ** 2 - r ** 2
            disc = b ** 2 - 4 * a * c
            z = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
            hit = disc >= 0
        _zbuffer_put(depth, label, albedo, hit, np.where(hit, z, np.inf), kind, colour)
    return {"albedo": albedo, "depth_m": depth, "mask": label}


def _illumination(rng, size):
    """Smooth random illumination in about [0.55, 1.0], independent of the geometry."""
    v, u = np.mgrid[0:size, 0:size] / max(size - 1, 1) * 2 - 1
    gx, gy = rng.uniform(-0.2, 0.2, 2)
    fx, fy, ph = rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
    return np.clip(0.8 + gx * u + gy * v + 0.05 * np.sin(fx * np.pi * u + fy * np.pi * v + ph), 0.55, 1.0)


def render_scenes(n: int, size: int = 64, seed: int = 0, corrupt_prob: float = 0.5, rgb_noise: float = 0.03,
                  depth_noise: float = 0.01) -> Dict[str, np.ndarray]:
    """``n`` scenes of ``size x size`` pixels (see the module docstring for the outputs)."""
    if int(n) <= 0:
        raise SceneConfigError(f"render_scenes: n must be positive, got {n}")
    if int(size) < 32 or int(size) % 32:
        raise SceneConfigError(f"render_scenes: size must be a multiple of 32 and >= 32, got {size}")
    if not 0.0 <= corrupt_prob <= 1.0:
        raise SceneConfigError(f"render_scenes: corrupt_prob must be in [0, 1], got {corrupt_prob}")
    rng = np.random.default_rng(seed)
    rgb = np.zeros((n, 3, size, size), np.float32)
    depth = np.zeros((n, 3, size, size), np.float32)
    mask = np.zeros((n, size, size), np.int32)
    rgb_bad = np.zeros((n, size, size), bool)
    depth_bad = np.zeros((n, size, size), bool)
    depth_m = np.zeros((n, size, size), np.float32)
    for i in range(n):
        scene = render_scene(rng, size)
        img = scene["albedo"] * _illumination(rng, size)[..., None]
        img = img + rng.normal(0, rgb_noise, img.shape)
        d = scene["depth_m"] * (1 + rng.normal(0, depth_noise, scene["depth_m"].shape))
        if rng.random() < corrupt_prob:
            for _ in range(int(rng.integers(1, 4))):
                rs, cs = _rect(rng, size, 0.2, 0.4)
                rgb_bad[i, rs, cs] = True
        if rng.random() < corrupt_prob:
            for _ in range(int(rng.integers(1, 4))):
                rs, cs = _rect(rng, size, 0.2, 0.4)
                depth_bad[i, rs, cs] = True
        img[rgb_bad[i]] = 1.0 - np.abs(rng.normal(0, rgb_noise, (int(rgb_bad[i].sum()), 3)))
        d[depth_bad[i]] = 0.0
        rgb[i] = np.clip(img, 0, 1).transpose(2, 0, 1)
        depth[i] = (d / DEPTH_SCALE)[None]
        mask[i] = scene["mask"]
        depth_m[i] = scene["depth_m"]
    return {"rgb": rgb, "depth": depth, "mask": mask, "rgb_corrupt": rgb_bad, "depth_corrupt": depth_bad,
            "depth_m": depth_m}
