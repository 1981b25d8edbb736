"""RandAugment as timm's ``rand-m9-mstd0.5-inc1`` policy defines it (the augmentation of the official
ViG, SNN-MLP and other timm-based ImageNet recipes).

Semantics (timm ``auto_augment.py``, rand_augment_transform / AugmentOp):

* ``n`` ops (default 2) are drawn uniformly **with replacement** from the op list; each drawn op
  then runs with probability 0.5;
* the magnitude of every op call is ``m`` (default 10) plus Gaussian noise of std ``mstd``
  (``mstd > 100``: uniform in [0, m]), clipped to [0, ``mmax``] (default 10);
* ``inc1`` selects the "increasing" ops, whose strength grows with the magnitude: AutoContrast,
  Equalize, Invert, Rotate, PosterizeIncreasing, SolarizeIncreasing, SolarizeAdd,
  Color/Contrast/Brightness/SharpnessIncreasing, ShearX, ShearY, TranslateXRel, TranslateYRel;
  without it the plain list (Posterize, Solarize, Color, ... whose Posterize/Solarize weaken);
* level -> argument (level = magnitude / 10): rotate 30 l degrees, shear 0.3 l, translate 0.45 l of
  the image size, each with a random sign; enhance factors ``1 +- 0.9 l`` (increasing) or
  ``0.1 + 1.8 l``; posterize keeps ``4 - int(4 l)`` bits (increasing) or ``int(4 l)``; solarize
  threshold ``256 - int(256 l)`` (increasing) or ``int(256 l)``; solarize-add adds ``int(110 l)``
  below 128;
* geometric ops fill with the dataset mean (in 0..255) and resample bilinear or bicubic at random
  per call unless an interpolation is given (timm's ``--train-interpolation random``).

The ops run on PIL images (Pillow's ImageOps / ImageEnhance / affine transforms, as timm does);
the transform maps an HWC uint8 array to an HWC uint8 array. Randomness comes from one NumPy
generator: :meth:`RandAugment.reseed` makes a run repeatable (with one data worker; several
threads share the generator in an arbitrary order). Differences from timm: the "inc" flag is
read as a number (timm tests ``bool('0')``, which is true, so ``inc0`` also selects the increasing
list there); one generator replaces Python's ``random`` and NumPy's global state.
"""
import re
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

MAX_LEVEL = 10.0

RAND_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
            "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
RAND_INCREASING_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                       "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                       "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel",
                       "TranslateYRel")

_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
_ENHANCERS = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
              "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}


class RandAugmentSpecError(ValueError):
    """A ``data.auto_augment`` string that is not a timm RandAugment policy."""


def parse_rand_augment(spec: str) -> dict:
    """``rand-m9-n2-mstd0.5-mmax10-inc1`` -> ``{num_ops, magnitude, magnitude_std, magnitude_max, increasing}``."""
    parts = str(spec).split("-")
    if parts[0] != "rand":
        raise RandAugmentSpecError(f"data.auto_augment '{spec}' is not a RandAugment policy "
                                   "('rand-m9-mstd0.5-inc1' style)")
    out = dict(num_ops=2, magnitude=MAX_LEVEL, magnitude_std=0.0, magnitude_max=MAX_LEVEL, increasing=False)
    for part in parts[1:]:
        match = re.fullmatch(r"([a-z]+)(\d[\d.]*)", part)
        if not match:
            raise RandAugmentSpecError(f"data.auto_augment '{spec}': cannot read section '{part}'")
        key, val = match.groups()
        if key == "m":
            out["magnitude"] = float(int(float(val)))
        elif key == "n":
            out["num_ops"] = int(float(val))
        elif key == "mstd":
            out["magnitude_std"] = float("inf") if float(val) > 100 else float(val)
        elif key == "mmax":
            out["magnitude_max"] = float(int(float(val)))
        elif key == "inc":
            out["increasing"] = int(float(val)) != 0
        else:
            raise RandAugmentSpecError(f"data.auto_augment '{spec}': unknown section '{key}' (m, n, mstd, mmax, inc)")
    return out


def _affine(img, matrix, fill, resample):
    return img.transform(img.size, Image.AFFINE, matrix, resample=resample, fillcolor=fill)


def _solarize_add(img, add: int, thresh: int = 128):
    lut = [min(255, i + add) if i < thresh else i for i in range(256)]
    return img.point(lut * len(img.getbands()))


class RandAugment:
    """timm RandAugment on HWC uint8 arrays (see the module docstring)."""

    def __init__(self, num_ops: int = 2, magnitude: float = 9.0, magnitude_std: float = 0.0,
                 magnitude_max: float = MAX_LEVEL, increasing: bool = False, prob: float = 0.5,
                 fill: Sequence[int] = (128, 128, 128), interpolation: Optional[str] = None, seed: int = 0):
        if num_ops < 0 or magnitude < 0 or magnitude_std < 0:
            raise ValueError(f"RandAugment: num_ops, magnitude and magnitude_std must be >= 0, got "
                             f"{num_ops}, {magnitude}, {magnitude_std}")
        if interpolation not in (None, "random") and interpolation not in _RESAMPLE:
            raise ValueError(f"RandAugment: interpolation must be random, bilinear, bicubic or nearest, "
                             f"got {interpolation!r}")
        self.num_ops, self.magnitude, self.magnitude_std = int(num_ops), float(magnitude), float(magnitude_std)
        self.magnitude_max, self.prob = float(magnitude_max), float(prob)
        self.ops = RAND_INCREASING_OPS if increasing else RAND_OPS
        self.fill = tuple(int(v) for v in fill)
        self.resample = None if interpolation in (None, "random") else _RESAMPLE[interpolation]
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_spec(cls, spec: str, **kwargs) -> "RandAugment":
        return cls(**parse_rand_augment(spec), **kwargs)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    # -- random draws --------------------------------------------------------------------------
    def sample_magnitude(self) -> float:
        magnitude = self.magnitude
        if self.magnitude_std == float("inf"):
            magnitude = self.rng.uniform(0.0, magnitude)
        elif self.magnitude_std > 0:
            magnitude = self.rng.normal(magnitude, self.magnitude_std)
        return float(min(max(magnitude, 0.0), self.magnitude_max))

    def _signed(self, value: float) -> float:
        return -value if self.rng.random() > 0.5 else value

    def _resample(self):
        if self.resample is not None:
            return self.resample
        return (Image.BILINEAR, Image.BICUBIC)[int(self.rng.integers(2))]

    # -- ops -----------------------------------------------------------------------------------
    def apply_op(self, img: Image.Image, name: str, magnitude: float) -> Image.Image:
        """Run op ``name`` at ``magnitude`` (random signs / resampling drawn here)."""
        level = magnitude / MAX_LEVEL
        fill = self.fill[0] if img.mode == "L" else self.fill
        if name == "AutoContrast":
            return ImageOps.autocontrast(img)
        if name == "Equalize":
            return ImageOps.equalize(img)
        if name == "Invert":
            return ImageOps.invert(img)
        if name == "Rotate":
            angle = self._signed(level * 30.0)
            return img.rotate(angle, resample=self._resample(), fillcolor=fill)
        if name in ("Posterize", "PosterizeIncreasing"):
            bits = int(level * 4)
            bits = 4 - bits if name == "PosterizeIncreasing" else bits
            return img if bits >= 8 else ImageOps.posterize(img, bits)
        if name in ("Solarize", "SolarizeIncreasing"):
            thresh = int(level * 256)
            return ImageOps.solarize(img, 256 - thresh if name == "SolarizeIncreasing" else thresh)
        if name == "SolarizeAdd":
            return _solarize_add(img, int(level * 110))
        base = name[:-len("Increasing")] if name.endswith("Increasing") else name
        if base in _ENHANCERS:
            factor = max(0.1, 1.0 + self._signed(level * 0.9)) if name.endswith("Increasing") else level * 1.8 + 0.1
            return _ENHANCERS[base](img).enhance(factor)
        if name == "ShearX":
            return _affine(img, (1, self._signed(level * 0.3), 0, 0, 1, 0), fill, self._resample())
        if name == "ShearY":
            return _affine(img, (1, 0, 0, self._signed(level * 0.3), 1, 0), fill, self._resample())
        if name == "TranslateXRel":
            return _affine(img, (1, 0, self._signed(level * 0.45) * img.size[0], 0, 1, 0), fill, self._resample())
        if name == "TranslateYRel":
            return _affine(img, (1, 0, 0, 0, 1, self._signed(level * 0.45) * img.size[1]), fill, self._resample())
        raise ValueError(f"RandAugment: unknown op '{name}'")

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        squeeze = image.ndim == 3 and image.shape[2] == 1
        img = Image.fromarray(image[..., 0] if squeeze else image)
        for idx in self.rng.integers(len(self.ops), size=self.num_ops):
            if self.prob < 1.0 and self.rng.random() > self.prob:
                continue
            img = self.apply_op(img, self.ops[int(idx)], self.sample_magnitude())
        out = np.asarray(img, dtype=np.uint8)
        return out[..., None] if squeeze else out

    def __repr__(self):
        return (f"RandAugment(n={self.num_ops}, m={self.magnitude}, mstd={self.magnitude_std}, "
                f"mmax={self.magnitude_max}, ops={'increasing' if self.ops is RAND_INCREASING_OPS else 'plain'})")


def fill_from_mean(mean: Sequence[float]) -> Tuple[int, ...]:
    """timm's ``img_mean`` hparam: the normalisation mean in 0..255, rounded."""
    return tuple(min(255, round(255 * m)) for m in mean)
