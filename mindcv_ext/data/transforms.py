"""Train/eval image transforms (mindspore.dataset.vision) and batch-level mixup/cutmix."""
import re
from typing import List, Optional, Sequence

import numpy as np
import mindspore.dataset.vision as vision

_INTER = {"bilinear": vision.Inter.BILINEAR, "bicubic": vision.Inter.BICUBIC,
          "nearest": vision.Inter.NEAREST, "area": vision.Inter.AREA}


def parse_rand_augment(spec: str):
    """``rand-m9-n2-mstd0.5-inc1`` (timm style) -> (num_ops, magnitude)."""
    if not spec.startswith("rand"):
        raise ValueError(f"data.auto_augment '{spec}' is not a RandAugment policy ('rand-m9-mstd0.5-inc1' style)")
    num_ops, magnitude = 2, 9
    for part in spec.split("-")[1:]:
        match = re.fullmatch(r"([a-z]+)([\d.]+)", part)
        if not match:
            continue
        key, val = match.groups()
        if key == "m":
            magnitude = int(float(val))
        elif key == "n":
            num_ops = int(float(val))
    return num_ops, magnitude


def create_transforms(image_size: int, is_training: bool, mean: Sequence[float], std: Sequence[float],
                      scale=(0.08, 1.0), hflip: float = 0.5, auto_augment: Optional[str] = None,
                      re_prob: float = 0.0, interpolation: str = "bilinear", crop_pct: float = 0.875) -> List:
    """A list of dataset ops mapping an HWC uint8 image to a normalised CHW float32 tensor."""
    inter = _INTER[interpolation]
    mean255 = [255.0 * m for m in mean]
    std255 = [255.0 * s for s in std]
    if is_training:
        ops = [vision.RandomResizedCrop(image_size, scale=tuple(scale), interpolation=inter)]
        if hflip > 0:
            ops.append(vision.RandomHorizontalFlip(prob=hflip))
        if auto_augment:
            num_ops, magnitude = parse_rand_augment(auto_augment)
            ops.append(vision.RandAugment(num_ops=num_ops, magnitude=magnitude, interpolation=inter))
        ops += [vision.Normalize(mean=mean255, std=std255), vision.HWC2CHW()]
        if re_prob > 0:
            ops.append(vision.RandomErasing(prob=re_prob, value="random"))
        return ops
    resize = int(round(image_size / crop_pct))
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
