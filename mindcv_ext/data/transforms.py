"""Train/eval image transforms (mindspore.dataset.vision, timm RandAugment, DARTS cutout) and
batch-level mixup/cutmix."""
import math
from typing import List, Optional, Sequence

import numpy as np
import mindspore.dataset.vision as vision

from .rand_augment import RandAugment, fill_from_mean, parse_rand_augment  # noqa: F401 (re-exported)

_INTER = {"bilinear": vision.Inter.BILINEAR, "bicubic": vision.Inter.BICUBIC,
          "nearest": vision.Inter.NEAREST, "area": vision.Inter.AREA}


CROP_MODES = ("rrc", "pad_crop")


def eval_resize_size(image_size: int, crop_pct: float) -> int:
    """Short side before the centre crop: ``floor(image_size / crop_pct)`` as timm and the official
    ViG code compute it (224 at 0.9 -> 248, at 0.95 -> 235, at 0.875 -> 256)."""
    if not 0 < crop_pct <= 1:
        raise ValueError(f"data.crop_pct must be in (0, 1], got {crop_pct}")
    return int(math.floor(image_size / crop_pct))


class Cutout:
    """DARTS cutout on a CHW array (after normalisation): one ``length`` x ``length`` square set to
    0, centred at a uniformly drawn pixel and clipped at the borders (so it can be partly outside),
    as the official DARTS / DropNAS retraining code does."""

    def __init__(self, length: int, seed: int = 0):
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise ValueError(f"data.cutout must be a positive int (square side in pixels), got {length!r}")
        self.length = length
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = np.array(image, copy=True)
        h, w = image.shape[-2:]
        y, x = int(self.rng.integers(h)), int(self.rng.integers(w))
        half = self.length // 2
        image[..., max(0, y - half):min(h, y + half), max(0, x - half):min(w, x + half)] = 0
        return image


def reseed_transforms(ops: Sequence, seed: int) -> None:
    """Reseed the Python-side random ops (RandAugment, Cutout) of a list, e.g. once per epoch."""
    for k, op in enumerate(ops):
        if hasattr(op, "reseed"):
            op.reseed(seed * 7919 + k)


def create_transforms(image_size: int, is_training: bool, mean: Sequence[float], std: Sequence[float],
                      scale=(0.08, 1.0), hflip: float = 0.5, auto_augment: Optional[str] = None,
                      re_prob: float = 0.0, interpolation: str = "bilinear", crop_pct: float = 0.875,
                      crop_mode: str = "rrc", cutout: int = 0, crop_padding: int = 4, seed: int = 0) -> List:
    """A list of dataset ops mapping an HWC uint8 image to a normalised CHW float32 tensor.

    Training: ``crop_mode="rrc"`` RandomResizedCrop(``scale``) (the ImageNet recipes);
    ``"pad_crop"`` a random ``image_size`` crop of the image zero-padded by ``crop_padding`` pixels
    (the CIFAR recipes of AdderNet, AdaBin, DARTS/DropNAS); then the horizontal flip, timm
    RandAugment when ``auto_augment`` is a ``rand-...`` policy, normalisation, CHW, random
    erasing, and ``cutout`` (square side, 0 = off; DARTS retraining uses 16) last.
    Evaluation: resize the short side to ``floor(image_size / crop_pct)``, centre crop.
    """
    if crop_mode not in CROP_MODES:
        raise ValueError(f"data.crop_mode must be one of {', '.join(CROP_MODES)}, got {crop_mode!r}")
    if isinstance(cutout, bool) or not isinstance(cutout, int) or cutout < 0:
        raise ValueError(f"data.cutout must be a non-negative int, got {cutout!r}")
    inter = _INTER[interpolation]
    mean255 = [255.0 * m for m in mean]
    std255 = [255.0 * s for s in std]
    if is_training:
        if crop_mode == "rrc":
            ops = [vision.RandomResizedCrop(image_size, scale=tuple(scale), interpolation=inter)]
        else:
            ops = [vision.RandomCrop(image_size, padding=crop_padding, fill_value=0)]
        if hflip > 0:
            ops.append(vision.RandomHorizontalFlip(prob=hflip))
        if auto_augment:
            # timm passes the train interpolation on to the geometric ops (its PIL fallback for
            # others is bilinear); timm's "random" train interpolation draws bilinear/bicubic per op
            ra_inter = interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"
            ops.append(RandAugment.from_spec(auto_augment, fill=fill_from_mean(mean), interpolation=ra_inter,
                                             seed=seed))
        ops += [vision.Normalize(mean=mean255, std=std255), vision.HWC2CHW()]
        if re_prob > 0:
            ops.append(vision.RandomErasing(prob=re_prob, value="random"))
        if cutout > 0:
            ops.append(Cutout(cutout, seed=seed + 1))
        return ops
    resize = eval_resize_size(image_size, crop_pct)
    return [vision.Resize(resize, interpolation=inter), vision.CenterCrop(image_size),
            vision.Normalize(mean=mean255, std=std255), vision.HWC2CHW()]


class MixupCutmix:
    """Per-batch mixup or cutmix (one chosen at random when both are on) with smoothed one-hot targets."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                 label_smoothing: float = 0.0, seed: int = 0):
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.label_smoothing = label_smoothing
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def _one_hot(self, labels: np.ndarray) -> np.ndarray:
        off = self.label_smoothing / self.num_classes
        target = np.full((len(labels), self.num_classes), off, np.float32)
        target[np.arange(len(labels)), labels] = 1.0 - self.label_smoothing + off
        return target

    def __call__(self, images: np.ndarray, labels: np.ndarray):
        images = np.asarray(images, np.float32)
        target = self._one_hot(np.asarray(labels, np.int64))
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or self.rng.random() < 0.5)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(self.rng.beta(alpha, alpha))
        flipped = images[::-1]
        if use_cutmix:
            h, w = images.shape[-2:]
            cut_h, cut_w = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
            cy, cx = self.rng.integers(h), self.rng.integers(w)
            y0, y1 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, h)
            x0, x1 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, w)
            images = images.copy()
            images[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        else:
            images = lam * images + (1.0 - lam) * flipped
        return images.astype(np.float32), (lam * target + (1.0 - lam) * target[::-1]).astype(np.float32)
