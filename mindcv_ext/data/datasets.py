"""Random-access image sources: ImageFolder trees, CIFAR binary files, scikit-learn's digits.

Each source holds (or lazily reads) ``HWC uint8 RGB`` images and integer labels and exposes
``__len__``, ``__getitem__`` and ``num_classes``; ``create_source`` picks one from the config.
"""
import glob
import os
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


class DatasetError(ValueError):
    """A dataset that cannot be read, naming the file or folder."""


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


class FileListSource:
    """Images read from disk on demand (ImageFolder trees)."""

    def __init__(self, files: List[str], labels: List[int], classes: List[str]):
        self.files, self.labels = list(files), np.asarray(labels, np.int32)
        self.classes, self.num_classes = classes, len(classes)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        path = self.files[index]
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"cannot decode image '{path}'")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), self.labels[index]

    def subset(self, indices: Sequence[int]) -> "FileListSource":
        return FileListSource([self.files[i] for i in indices], [int(self.labels[i]) for i in indices], self.classes)


def read_image_folder(root: str, classes: Optional[List[str]] = None) -> FileListSource:
    """``root/<class>/<image>``; classes sorted by name unless given."""
    if not os.path.isdir(root):
        raise DatasetError(f"image folder '{root}' does not exist")
    if classes is None:
        classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise DatasetError(f"image folder '{root}' has no class sub-folders")
    files, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted(glob.glob(os.path.join(root, name, "**", "*"), recursive=True)):
            if path.lower().endswith(IMG_EXTENSIONS):
                files.append(path)
                labels.append(label)
    if not files:
        raise DatasetError(f"image folder '{root}' holds no images ({', '.join(IMG_EXTENSIONS)})")
    return FileListSource(files, labels, classes)


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


def create_source(dataset: str, root: Optional[str], split: str, val_split: float = 0.2, seed: int = 0):
    """The ``train`` or ``val`` source of a dataset named in the config."""
    if split not in ("train", "val"):
        raise DatasetError(f"split must be 'train' or 'val', got '{split}'")
    if dataset == "digits":
        full = read_digits()
        train_idx, val_idx = split_indices(full.labels, val_split, seed)
        return full.subset(train_idx if split == "train" else val_idx)
    if dataset in CIFAR_LAYOUT:
        if not root:
            raise DatasetError(f"data.root must point at the {dataset} binary files")
        return read_cifar_binary(root, dataset, train=(split == "train"))
    if dataset in ("imagefolder", "imagenet"):
        if not root:
            raise DatasetError(f"data.root must point at an image folder for dataset '{dataset}'")
        split_dir = os.path.join(root, split)
        if os.path.isdir(os.path.join(root, "train")):
            classes = read_image_folder(os.path.join(root, "train")).classes
            return read_image_folder(split_dir, classes)
        full = read_image_folder(root)
        train_idx, val_idx = split_indices(full.labels, val_split, seed)
        return full.subset(train_idx if split == "train" else val_idx)
    raise DatasetError(f"unknown dataset '{dataset}' (choose digits, cifar10, cifar100, imagefolder, imagenet)")
