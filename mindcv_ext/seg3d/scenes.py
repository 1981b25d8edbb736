"""Procedural rooms with semantic and instance labels, generated from a seed (no files).

A room (default 4 x 4 x 3 m) has a floor (class 0) and two walls (class 1), the background
classes, like ScanNet's floor and wall; and 4-10 objects from four classes, box (2), cylinder
(3), sphere (4) and cone (5), whose characteristic size is log-uniform in 0.2-1.5 m so that
grouping must work across scales. Some objects are placed touching a previous object of the
same class. Surfaces are sampled uniformly at random with one point per ``spacing**2`` of area,
then jittered; colours come from a per-class palette with per-object and per-point noise.
Scene dict: ``coords`` (N, 3) float32 metres, ``colors`` (N, 3) float32 in [-1, 1],
``semantic`` (N,) int64, ``instance`` (N,) int64 (-100 on the background).
"""
from typing import Dict, Tuple

import numpy as np

from .losses import IGNORE_LABEL

__all__ = ["ROOM_CLASSES", "ROOM_INSTANCE_CLASSES", "make_room", "RoomScenes"]

ROOM_CLASSES = ("floor", "wall", "box", "cylinder", "sphere", "cone")
ROOM_INSTANCE_CLASSES = (2, 3, 4, 5)
_PALETTE = np.array([[0.55, 0.45, 0.35], [0.85, 0.85, 0.8], [0.8, 0.3, 0.2],
                     [0.2, 0.6, 0.3], [0.2, 0.35, 0.8], [0.85, 0.75, 0.2]])


def _count(area: float, spacing: float, rng) -> int:
    expected = area / spacing ** 2
    return int(np.floor(expected) + (rng.random() < expected - np.floor(expected)))


def _rect(rng, n, origin, u, v):
    a, b = rng.random((2, n))
    return origin + a[:, None] * u + b[:, None] * v


def _box(rng, size, spacing):
    w, d, h = size
    faces = [((-w / 2, -d / 2, h), (w, 0, 0), (0, d, 0)),                      # top
             ((-w / 2, -d / 2, 0), (w, 0, 0), (0, 0, h)), ((-w / 2, d / 2, 0), (w, 0, 0), (0, 0, h)),
             ((-w / 2, -d / 2, 0), (0, d, 0), (0, 0, h)), ((w / 2, -d / 2, 0), (0, d, 0), (0, 0, h))]
    pts = []
    for o, u, v in faces:
        u, v = np.array(u, float), np.array(v, float)
        pts.append(_rect(rng, _count(np.linalg.norm(u) * np.linalg.norm(v), spacing, rng), np.array(o, float), u, v))
    return np.concatenate(pts)


def _cylinder(rng, radius, height, spacing):
    n_side = _count(2 * np.pi * radius * height, spacing, rng)
    t = rng.random(n_side) * 2 * np.pi
    side = np.stack([radius * np.cos(t), radius * np.sin(t), rng.random(n_side) * height], 1)
    n_top = _count(np.pi * radius ** 2, spacing, rng)
    r, t = radius * np.sqrt(rng.random(n_top)), rng.random(n_top) * 2 * np.pi
    top = np.stack([r * np.cos(t), r * np.sin(t), np.full(n_top, height)], 1)
    return np.concatenate([side, top])


def _sphere(rng, radius, spacing):
    n = _count(4 * np.pi * radius ** 2, spacing, rng)
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
    return v * radius + np.array([0, 0, radius])


def _cone(rng, radius, height, spacing):
    n = _count(np.pi * radius * np.hypot(radius, height), spacing, rng)
    frac = 1 - np.sqrt(rng.random(n))       # height fraction; area density falls linearly upwards
    t = rng.random(n) * 2 * np.pi
    r = radius * (1 - frac)
    return np.stack([r * np.cos(t), r * np.sin(t), frac * height], 1)


def _object(rng, cls: int, size: float, spacing: float) -> Tuple[np.ndarray, float]:
    """Object points around the origin on the floor, and the radius of its footprint."""
    if cls == 2:
        dims = size * rng.uniform(0.6, 1.0, 3)
        pts = _box(rng, dims, spacing)
        angle = rng.random() * 2 * np.pi
        c, s = np.cos(angle), np.sin(angle)
        pts = pts @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])
        return pts, float(np.hypot(dims[0], dims[1]) / 2)
    if cls == 3:
        radius = size / 2 * rng.uniform(0.5, 1.0)
        return _cylinder(rng, radius, size * rng.uniform(0.6, 1.0), spacing), radius
    if cls == 4:
        return _sphere(rng, size / 2, spacing), size / 2
    radius = size / 2 * rng.uniform(0.6, 1.0)
    return _cone(rng, radius, size * rng.uniform(0.7, 1.0), spacing), radius


def make_room(seed: int, room_size=(4.0, 4.0, 3.0), num_objects=(4, 10), size_range=(0.2, 1.5),
              spacing: float = 0.05, background_spacing: float = 0.08, touch_prob: float = 0.3,
              jitter: float = 0.005, color_noise: float = 0.05) -> Dict[str, np.ndarray]:
    """One labelled room scene from ``seed`` (see the module docstring for the contents)."""
    if spacing <= 0 or background_spacing <= 0 or min(room_size) <= 0:
        raise ValueError(f"spacings and room size must be positive, got {spacing}, {background_spacing}, {room_size}")
    rng = np.random.default_rng(seed)
    lx, ly, lz = room_size
    coords, sem, inst, colors = [], [], [], []

    def add(pts, cls, iid, base):
        coords.append(pts)
        sem.append(np.full(len(pts), cls))
        inst.append(np.full(len(pts), iid))
        colors.append(np.clip(base + rng.normal(0, color_noise, (len(pts), 3)), 0, 1))

    add(_rect(rng, _count(lx * ly, background_spacing, rng), np.zeros(3), np.array([lx, 0, 0.]), np.array([0, ly, 0.])),
        0, IGNORE_LABEL, _PALETTE[0])
    for u in (np.array([lx, 0, 0.]), np.array([0, ly, 0.])):
        add(_rect(rng, _count(np.linalg.norm(u) * lz, background_spacing, rng), np.zeros(3), u, np.array([0, 0, lz])),
            1, IGNORE_LABEL, _PALETTE[1])
    placed = []   # (x, y, footprint radius, class)
    n_obj = int(rng.integers(num_objects[0], num_objects[1] + 1))
    for _ in range(200):
        if len(placed) == n_obj:
            break
        touch = placed and rng.random() < touch_prob
        cls = placed[int(rng.integers(len(placed)))][3] if touch else int(rng.choice(ROOM_INSTANCE_CLASSES))
        size = float(np.exp(rng.uniform(np.log(size_range[0]), np.log(size_range[1]))))
        pts, radius = _object(rng, cls, size, spacing)
        if touch:
            cands = [p for p in placed if p[3] == cls]
            px, py, pr, _ = cands[int(rng.integers(len(cands)))]
            t = rng.random() * 2 * np.pi
            x, y = px + (pr + radius) * np.cos(t), py + (pr + radius) * np.sin(t)
        else:
            x, y = rng.uniform(radius + 0.05, lx - radius - 0.05), rng.uniform(radius + 0.05, ly - radius - 0.05)
        inside = radius + 0.02 <= x <= lx - radius - 0.02 and radius + 0.02 <= y <= ly - radius - 0.02
        clear = all(np.hypot(x - px, y - py) >= pr + radius - 1e-9 for px, py, pr, _ in placed)
        if not (inside and clear):
            continue
        base = np.clip(_PALETTE[cls] + rng.normal(0, 0.08, 3), 0, 1)
        add(pts + np.array([x, y, 0.0]), cls, len(placed), base)
        placed.append((x, y, radius, cls))
    xyz = np.concatenate(coords)
    xyz = xyz + rng.normal(0, jitter, xyz.shape)
    return {"coords": xyz.astype(np.float32), "colors": (np.concatenate(colors) * 2 - 1).astype(np.float32),
            "semantic": np.concatenate(sem).astype(np.int64), "instance": np.concatenate(inst).astype(np.int64)}


class RoomScenes:
    """``num_scenes`` rooms from consecutive seeds ``seed, seed + 1, ...`` (made on access)."""

    def __init__(self, num_scenes: int, seed: int = 0, **room_kwargs):
        if num_scenes < 1:
            raise ValueError(f"num_scenes must be >= 1, got {num_scenes}")
        self.num_scenes, self.seed, self.room_kwargs = num_scenes, seed, room_kwargs

    def __len__(self):
        return self.num_scenes

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        if not 0 <= i < self.num_scenes:
            raise IndexError(f"scene {i} out of range 0..{self.num_scenes - 1}")
        return make_room(self.seed + i, **self.room_kwargs)
