"""Random-access image sources: ImageFolder trees, CIFAR binary files, scikit-learn's digits.

Each source holds (or lazily reads) ``HWC uint8 RGB`` images and integer labels and exposes
``__len__``, ``__getitem__`` and ``num_classes``. The built-in datasets register themselves in
:mod:`mindcv_ext.data.registry` (``digits``, ``cifar10``, ``cifar100``, ``imagefolder``, ``imagenet``).
"""
import glob
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .registry import DatasetError, register_dataset

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


class ArraySource:
    """Images already in memory: ``images`` (N, H, W, 3) uint8 and ``labels`` (N,)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, classes: Optional[List[str]] = None):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise DatasetError(f"images must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
        if len(images) != len(labels):
            raise DatasetError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels.astype(np.int32)
        self.num_classes = num_classes
        self.classes = classes or [str(i) for i in range(num_classes)]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    def subset(self, indices: Sequence[int]) -> "ArraySource":
        idx = np.asarray(indices)
        return ArraySource(self.images[idx], self.labels[idx], self.num_classes, self.classes)


class ColumnSource:
    """Generated arrays served as column tuples: sample ``i`` is ``(arrays[c][i] for c in columns)``;
    ``arrays`` keeps every array (e.g. corruption masks that no column carries)."""

    def __init__(self, arrays: Dict[str, np.ndarray], columns: Sequence[str], num_classes: Optional[int] = None):
        lengths = {len(arrays[c]) for c in columns}
        if len(lengths) != 1:
            raise DatasetError(f"columns {tuple(columns)} have different lengths {sorted(lengths)}")
        self.arrays, self.columns, self.num_classes = arrays, tuple(columns), num_classes

    def __len__(self):
        return len(self.arrays[self.columns[0]])

    def __getitem__(self, i):
        return tuple(self.arrays[c][i] for c in self.columns)


class FileListSource:
    """Images read from disk on demand (ImageFolder trees)."""

    def __init__(self, files: List[str], labels: List[int], classes: List[str], skip_bad: bool = False):
        self.files, self.labels = list(files), np.asarray(labels, np.int32)
        self.classes, self.num_classes = classes, len(classes)
        self.skip_bad, self.bad = skip_bad, set()

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        for offset in range(len(self.files)):
            i = (index + offset) % len(self.files)
            img = None if i in self.bad else cv2.imread(self.files[i], cv2.IMREAD_COLOR)
            if img is not None:
                return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), self.labels[i]
            if not self.skip_bad:
                raise DatasetError(f"cannot decode image '{self.files[i]}' (run `mindcv-ext check-data -c ...` "
                                   "to list every bad file, or set data.skip_bad_images=true)")
            if i not in self.bad:
                self.bad.add(i)
                print(f"warning: skipping unreadable image '{self.files[i]}'", file=sys.stderr, flush=True)
        raise DatasetError("no readable image left in the dataset")

    def subset(self, indices: Sequence[int]) -> "FileListSource":
        return FileListSource([self.files[i] for i in indices], [int(self.labels[i]) for i in indices], self.classes,
                              self.skip_bad)

    def scan(self) -> List[str]:
        """Paths of the files that do not decode (a full pass over the images)."""
        return [p for p in self.files if cv2.imread(p, cv2.IMREAD_COLOR) is None]


def read_image_folder(root: str, classes: Optional[List[str]] = None, skip_bad: bool = False) -> FileListSource:
    """``root/<class>/<image>``; classes sorted by name unless given. A class folder without images
    is an error naming it (it would count as a class that never occurs)."""
    if not os.path.isdir(root):
        raise DatasetError(f"image folder '{root}' does not exist")
    if classes is None:
        classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise DatasetError(f"image folder '{root}' has no class sub-folders")
    files, labels, empty = [], [], []
    for label, name in enumerate(classes):
        found = [p for p in sorted(glob.glob(os.path.join(root, name, "**", "*"), recursive=True))
                 if p.lower().endswith(IMG_EXTENSIONS)]
        if not found:
            empty.append(name)
        files += found
        labels += [label] * len(found)
    if not files:
        raise DatasetError(f"image folder '{root}' holds no images ({', '.join(IMG_EXTENSIONS)})")
    if empty:
        raise DatasetError(f"image folder '{root}': class folder(s) {', '.join(empty)} hold no images "
                           f"({', '.join(IMG_EXTENSIONS)})")
    return FileListSource(files, labels, classes, skip_bad)


CIFAR_LAYOUT = {  # name -> (train files, test files, label bytes, label byte used, classes)
    "cifar10": ([f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"], 1, 0, 10),
    "cifar100": (["train.bin"], ["test.bin"], 2, 1, 100),
}


def _find_cifar_dir(root: str, files: List[str]) -> str:
    for cand in [root] + sorted(glob.glob(os.path.join(root, "*"))):
        if os.path.isdir(cand) and all(os.path.isfile(os.path.join(cand, f)) for f in files):
            return cand
    raise DatasetError(f"no CIFAR binary files {files} under '{root}' (expected e.g. cifar-10-batches-bin/)")


def read_cifar_binary(root: str, name: str = "cifar10", train: bool = True) -> ArraySource:
    """The CIFAR-10/100 binary version: records of label byte(s) then 3x32x32 planar RGB."""
    if name not in CIFAR_LAYOUT:
        raise DatasetError(f"unknown CIFAR variant '{name}'")
    train_files, test_files, nlabel, which, num_classes = CIFAR_LAYOUT[name]
    files = train_files if train else test_files
    folder = _find_cifar_dir(root, files)
    record = nlabel + 3 * 32 * 32
    images, labels = [], []
    for fname in files:
        path = os.path.join(folder, fname)
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % record:
            raise DatasetError(f"'{path}' is not a {name} binary file ({raw.size} bytes, records of {record})")
        raw = raw.reshape(-1, record)
        labels.append(raw[:, which].astype(np.int32))
        images.append(raw[:, nlabel:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    labels = np.concatenate(labels)
    if labels.max() >= num_classes:
        raise DatasetError(f"{name} labels in '{folder}' go up to {labels.max()}, more than {num_classes} classes")
    return ArraySource(np.ascontiguousarray(np.concatenate(images)), labels, num_classes)


def read_digits() -> ArraySource:
    """The 1,797 8x8 handwritten digit scans that scikit-learn ships, as 3-channel uint8."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    gray = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    return ArraySource(np.repeat(gray[..., None], 3, axis=-1), digits.target, 10)


def split_indices(labels: np.ndarray, val_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """A stratified, seeded train/val split of indices."""
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"data.val_split must be in (0, 1) to split one set, got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_val = max(1, int(round(len(idx) * val_fraction)))
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return np.sort(np.asarray(train)), np.sort(np.asarray(val))


def _classification_split(full, data_cfg, split: str, seed: int):
    train_idx, val_idx = split_indices(full.labels, data_cfg.val_split, seed)
    return full.subset(train_idx if split == "train" else val_idx)


@register_dataset("digits")
def digits(data_cfg, split, seed):
    return _classification_split(read_digits(), data_cfg, split, seed)


def _cifar(name: str):
    def factory(data_cfg, split, seed):
        if not data_cfg.root:
            raise DatasetError(f"data.root must point at the {name} binary files")
        return read_cifar_binary(data_cfg.root, name, train=(split == "train"))
    return factory


def image_folder(data_cfg, split, seed):
    """``root/train/<class>/*`` + ``root/val/<class>/*``, or one tree split by ``data.val_split``."""
    root = data_cfg.root
    if not root:
        raise DatasetError(f"data.root must point at an image folder for dataset '{data_cfg.dataset}'")
    skip = bool(data_cfg.get("skip_bad_images", False))
    if os.path.isdir(os.path.join(root, "train")):
        classes = read_image_folder(os.path.join(root, "train")).classes
        return read_image_folder(os.path.join(root, split), classes, skip_bad=skip)
    return _classification_split(read_image_folder(root, skip_bad=skip), data_cfg, split, seed)


for _name in CIFAR_LAYOUT:
    register_dataset(_name)(_cifar(_name))
for _name in ("imagefolder", "imagenet"):
    register_dataset(_name)(image_folder)
