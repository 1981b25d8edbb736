"""NYUDv2 RGB-D segmentation data in the layout the official TokenFusion code reads
(yikaiw/TokenFusion ``semantic_segmentation/utils/datasets.py``, ``transforms.py``, ``config.py``).

List files hold one sample per line, three tab-separated paths relative to the data root in the
order ``rgb  mask  depth`` (e.g. ``rgb/000003.png	masks/000003.png	depth/000003.png``). Masks are
single-channel label PNGs (40 classes, 255 = ignore); depth PNGs are read as stored (16-bit),
replicated to 3 channels and multiplied by 1/5000; RGB is scaled by 1/255 and normalised with the
ImageNet mean/std.

Training augmentation (in this order, all NumPy/cv2): inputs cropped to the mask size, random scale
U(0.5, 2.0) raised so the shorter side is at least 350 px (RGB bicubic, depth and labels nearest),
symmetric padding to at least the crop size (inputs padded with the ImageNet mean x 255 per channel
-- depth too, as upstream -- labels with 255), random horizontal mirror, random crop (500, made
even). Evaluation: crop to the mask size, then normalise.

Samples are dicts ``{"rgb": HxWx3, "depth": HxWx3, "mask": HxW}``; ``NYUDv2Dataset[i]`` returns
the tuple ``(rgb (3,H,W) float32, depth (3,H,W) float32, mask (H,W) int32)`` (columns rgb, depth,
mask).
"""
import os
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

IMG_SCALE = 1.0 / 255
IMG_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMG_STD = np.array([0.229, 0.224, 0.225], np.float32)
DEPTH_SCALE = 1.0 / 5000
PAD_VALUE = (123.675, 116.28, 103.53)
NUM_CLASSES = 40
IGNORE_INDEX = 255
INPUTS = ("rgb", "depth")


class NYUDv2Error(ValueError):
    """A missing or malformed NYUDv2 list file or image."""


def read_list(list_file: str) -> List[Tuple[str, str, str]]:
    """``[(rgb, mask, depth), ...]`` relative paths from a tab-separated list file."""
    if not os.path.isfile(list_file):
        raise NYUDv2Error(f"NYUDv2 list file '{list_file}' does not exist")
    entries = []
    with open(list_file, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 3 or not all(parts):
                raise NYUDv2Error(f"{list_file}:{lineno}: expected 3 tab-separated paths (rgb, mask, depth), "
                                  f"got {line!r}")
            entries.append(tuple(parts))
    if not entries:
        raise NYUDv2Error(f"NYUDv2 list file '{list_file}' lists no samples")
    return entries


def _open(path: str) -> np.ndarray:
    from PIL import Image

    if not os.path.isfile(path):
        raise NYUDv2Error(f"NYUDv2 file '{path}' does not exist")
    try:
        with Image.open(path) as img:
            return np.array(img)
    except (OSError, SyntaxError) as err:
        raise NYUDv2Error(f"cannot read image '{path}': {err}") from err


def read_input(path: str) -> np.ndarray:
    """An RGB or depth image as HxWx3 float32 (grey images replicated, as upstream)."""
    arr = _open(path)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise NYUDv2Error(f"'{path}': expected a grey or RGB image, got shape {arr.shape}")
    return arr[..., :3].astype(np.float32)


def read_mask(path: str, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """A single-channel label PNG as HxW int32; labels must be < num_classes or the ignore label."""
    arr = _open(path)
    if arr.ndim != 2:
        raise NYUDv2Error(f"'{path}': masks must be single-channel label images (no colour map), got {arr.shape}")
    arr = arr.astype(np.int32)
    bad = (arr >= num_classes) & (arr != ignore_index) | (arr < 0)
    if bad.any():
        raise NYUDv2Error(f"'{path}': {int(bad.sum())} labels outside [0, {num_classes}) and not {ignore_index} "
                          f"(e.g. {int(arr[bad][0])})")
    return arr


# ------------------------------------------------------------------------------------ transforms

def crop_align_to_mask(sample: Dict) -> Dict:
    """Centre-crop every input to the mask's size (the extra row/column comes off the end)."""
    mh, mw = sample["mask"].shape[:2]
    for key in INPUTS:
        x = sample[key]
        h, w = x.shape[:2]
        if h < mh or w < mw:
            raise NYUDv2Error(f"'{key}' image {h}x{w} is smaller than its mask {mh}x{mw}")
        top, left = (h - mh) // 2, (w - mw) // 2
        sample[key] = x[top:top + mh, left:left + mw]
    return sample


def resize_and_scale(sample: Dict, shorter_side: int, low: float, high: float, rng: np.random.Generator) -> Dict:
    """Random scale in [low, high], raised so the shorter side is at least ``shorter_side``."""
    scale = rng.uniform(low, high)
    min_side = min(sample["rgb"].shape[:2])
    if min_side * scale < shorter_side:
        scale = shorter_side / min_side
    inter = {"rgb": cv2.INTER_CUBIC, "depth": cv2.INTER_NEAREST}
    for key in INPUTS:
        sample[key] = cv2.resize(sample[key], None, fx=scale, fy=scale, interpolation=inter[key])
    sample["mask"] = cv2.resize(sample["mask"], None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return sample


def pad(sample: Dict, size: int, img_value: Sequence[float] = PAD_VALUE, mask_value: int = IGNORE_INDEX) -> Dict:
    """Pad symmetrically by ceil((size - side) / 2) on both ends of each short side."""
    h, w = sample["rgb"].shape[:2]
    ph, pw = max(0, (size - h + 1) // 2), max(0, (size - w + 1) // 2)
    spec = ((ph, ph), (pw, pw))
    for key in INPUTS:
        x = sample[key]
        sample[key] = np.stack([np.pad(x[..., c], spec, constant_values=img_value[c]) for c in range(3)], axis=2)
    sample["mask"] = np.pad(sample["mask"], spec, constant_values=mask_value)
    return sample


def random_mirror(sample: Dict, rng: np.random.Generator) -> Dict:
    if rng.integers(2):
        for key in INPUTS + ("mask",):
            sample[key] = np.ascontiguousarray(sample[key][:, ::-1])
    return sample


def random_crop(sample: Dict, size: int, rng: np.random.Generator) -> Dict:
    """Random crop of ``size`` (rounded down to even, as upstream) or the whole side if smaller."""
    size -= size % 2
    h, w = sample["rgb"].shape[:2]
    nh, nw = min(h, size), min(w, size)
    top, left = int(rng.integers(0, h - nh + 1)), int(rng.integers(0, w - nw + 1))
    for key in INPUTS + ("mask",):
        sample[key] = sample[key][top:top + nh, left:left + nw]
    return sample


def normalise(sample: Dict, depth_scale: float = DEPTH_SCALE) -> Dict:
    """RGB: (x / 255 - mean) / std; depth: x * depth_scale."""
    sample["rgb"] = (sample["rgb"] * IMG_SCALE - IMG_MEAN) / IMG_STD
    sample["depth"] = sample["depth"] * depth_scale
    return sample


def train_transform(sample: Dict, rng: np.random.Generator, crop_size: int = 500, shorter_side: int = 350,
                    scale_range: Tuple[float, float] = (0.5, 2.0), depth_scale: float = DEPTH_SCALE) -> Dict:
    sample = crop_align_to_mask(sample)
    sample = resize_and_scale(sample, shorter_side, scale_range[0], scale_range[1], rng)
    sample = pad(sample, crop_size)
    sample = random_mirror(sample, rng)
    sample = random_crop(sample, crop_size, rng)
    return normalise(sample, depth_scale)


def eval_transform(sample: Dict, depth_scale: float = DEPTH_SCALE) -> Dict:
    return normalise(crop_align_to_mask(sample), depth_scale)


def to_arrays(sample: Dict) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb CHW float32, depth CHW float32, mask HW int32)."""
    return (np.ascontiguousarray(sample["rgb"].transpose(2, 0, 1), np.float32),
            np.ascontiguousarray(sample["depth"].transpose(2, 0, 1), np.float32),
            np.ascontiguousarray(sample["mask"], np.int32))


class NYUDv2Dataset:
    """Random-access NYUDv2 samples with columns ("rgb", "depth", "mask").

    ``train=True`` applies the training augmentation with a generator seeded by ``seed`` (one draw
    stream for the whole dataset); ``False`` the evaluation transform.
    """

    columns = ("rgb", "depth", "mask")

    def __init__(self, root: str, list_file: str, train: bool = True, num_classes: int = NUM_CLASSES,
                 ignore_index: int = IGNORE_INDEX, crop_size: int = 500, shorter_side: int = 350,
                 scale_range: Tuple[float, float] = (0.5, 2.0), depth_scale: float = DEPTH_SCALE,
                 seed: Optional[int] = 0):
        if not os.path.isdir(root):
            raise NYUDv2Error(f"NYUDv2 root '{root}' is not a directory")
        if not (0 < scale_range[0] <= scale_range[1]):
            raise NYUDv2Error(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        if crop_size < 2:
            raise NYUDv2Error(f"crop_size must be at least 2, got {crop_size}")
        self.root, self.train = root, bool(train)
        self.entries = read_list(list_file if os.path.isabs(list_file) or os.path.isfile(list_file)
                                 else os.path.join(root, list_file))
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.crop_size, self.shorter_side, self.scale_range = int(crop_size), int(shorter_side), tuple(scale_range)
        self.depth_scale = float(depth_scale)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.entries)

    def read(self, index: int) -> Dict:
        """The raw sample (before any transform)."""
        rgb, mask, depth = (os.path.join(self.root, p) for p in self.entries[index])
        return {"rgb": read_input(rgb), "depth": read_input(depth),
                "mask": read_mask(mask, self.num_classes, self.ignore_index)}

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"NYUDv2Dataset index {index} out of range ({len(self)} samples)")
        sample = self.read(index)
        if self.train:
            sample = train_transform(sample, self.rng, self.crop_size, self.shorter_side, self.scale_range,
                                     self.depth_scale)
        else:
            sample = eval_transform(sample, self.depth_scale)
        return to_arrays(sample)
