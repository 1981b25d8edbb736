"""ScanNetV2 scenes from preprocessed per-scene ``.npz`` files (no torch needed to read them).

One file per scene, ``<root>/<split>/<scene_id>.npz``, with the fields
- ``coords``: (N, 3) float32, metres (PointGroup stores them centred on the scene mean);
- ``colors``: (N, 3) float32, RGB scaled to [-1, 1] (``rgb / 127.5 - 1``);
- ``semantic_labels``: (N,) integer, PointGroup's 20 classes 0..19 (0 wall, 1 floor, 2..19 the
  18 instance classes of :data:`SCANNET_INSTANCE_CLASSES`), -100 for unannotated points;
- ``instance_labels``: (N,) integer, 0..K-1 per object, -100 for wall, floor and unannotated.
The two label fields are absent in the test split (``with_labels=False``).

Conversion from PointGroup's ``<scene>_inst_nostuff.pth`` files (a torch-saved tuple
``(coords, colors, semantic_labels, instance_labels)``, or ``(coords, colors)`` for test scenes),
in an environment with torch::

    xyz, rgb, sem, inst = torch.load(path)
    np.savez(out_path, coords=xyz.astype(np.float32), colors=rgb.astype(np.float32),
             semantic_labels=sem.astype(np.int64), instance_labels=inst.astype(np.int64))
"""
import os
from typing import Dict, List

import numpy as np

__all__ = ["SceneFileError", "SCANNET_CLASSES", "SCANNET_INSTANCE_CLASSES", "load_scene", "ScanNetV2Scenes"]

# PointGroup's label order (the 20 ScanNet benchmark classes; NYU40 ids 1, 2, 3, ... 39).
SCANNET_CLASSES = ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
                   "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
                   "bathtub", "otherfurniture")
SCANNET_INSTANCE_CLASSES = tuple(range(2, 20))   # evaluated: all but wall and floor


class SceneFileError(ValueError):
    """A scene file that is missing, unreadable, or has a missing or malformed field."""


def _field(data, name: str, path: str, shape_tail, kinds: str, n=None) -> np.ndarray:
    if name not in data:
        raise SceneFileError(f"{path}: field '{name}' is missing (found {sorted(data.keys())})")
    arr = data[name]
    if arr.dtype.kind not in kinds or arr.ndim != 1 + len(shape_tail) or tuple(arr.shape[1:]) != tuple(shape_tail) \
            or (n is not None and arr.shape[0] != n):
        want = f"({n if n is not None else 'N'}{''.join(', ' + str(s) for s in shape_tail)})"
        raise SceneFileError(f"{path}: field '{name}' has shape {arr.shape} and dtype {arr.dtype}; expected {want} "
                             f"of kind {'float' if kinds == 'f' else 'integer'}")
    if kinds == "f" and not np.all(np.isfinite(arr)):
        raise SceneFileError(f"{path}: field '{name}' contains NaN or inf")
    return arr


def load_scene(path: str, with_labels: bool = True) -> Dict[str, np.ndarray]:
    """Read and check one scene file; returns coords, colors and (with labels) semantic, instance."""
    if not os.path.isfile(path):
        raise SceneFileError(f"{path}: scene file does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as err:  # zip or header errors from numpy
        raise SceneFileError(f"{path}: not a readable .npz file ({err})") from None
    with data:
        coords = _field(data, "coords", path, (3,), "f")
        n = coords.shape[0]
        scene = {"coords": coords.astype(np.float32), "colors": _field(data, "colors", path, (3,), "f", n).astype(np.float32)}
        if with_labels:
            sem = _field(data, "semantic_labels", path, (), "iu", n).astype(np.int64)
            inst = _field(data, "instance_labels", path, (), "iu", n).astype(np.int64)
            bad = (sem != -100) & ((sem < 0) | (sem >= len(SCANNET_CLASSES)))
            if bad.any():
                raise SceneFileError(f"{path}: field 'semantic_labels' has values outside 0..19 and -100 "
                                     f"(e.g. {sem[bad][0]})")
            if ((inst < 0) & (inst != -100)).any():
                raise SceneFileError(f"{path}: field 'instance_labels' has negative values other than -100")
            scene.update(semantic=sem, instance=inst)
    return scene


class ScanNetV2Scenes:
    """The scenes of ``<root>/<split>`` (sorted by file name), loaded on access."""

    def __init__(self, root: str, split: str = "train", with_labels: bool = True):
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            raise SceneFileError(f"{folder}: ScanNetV2 split folder does not exist")
        self.files: List[str] = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".npz"))
        if not self.files:
            raise SceneFileError(f"{folder}: no .npz scene files")
        self.with_labels = with_labels

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        return load_scene(self.files[i], self.with_labels)
