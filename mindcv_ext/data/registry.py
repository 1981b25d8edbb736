"""The dataset registry: each dataset declares the columns its samples hold, in order.

``@register_dataset("name", columns=("image", "label"))`` on a factory
``fn(data_cfg, split, seed) -> source`` (``__len__``, ``__getitem__`` returning one value per
column). ``image_transforms`` says whether the loader applies the config's image transforms to the
``image`` column (HWC uint8 RGB) or the source yields ready arrays.
"""
import dataclasses
import difflib
from typing import Callable, Dict, Tuple



class DatasetError(ValueError):
    """A dataset that cannot be read, naming the file or folder."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    factory: Callable
    columns: Tuple[str, ...]
    image_transforms: bool
    classification: bool  # (image, label) samples with ``num_classes``: mixup/cutmix and top-k apply


_DATASETS: Dict[str, DatasetInfo] = {}


def register_dataset(name: str, columns=("image", "label"), image_transforms: bool = True):
    def deco(fn):
        if name in _DATASETS and _DATASETS[name].factory is not fn:
            raise ValueError(f"dataset '{name}' is registered twice")
        _DATASETS[name] = DatasetInfo(name, fn, tuple(columns), image_transforms,
                                      tuple(columns) == ("image", "label"))
        return fn
    return deco


def _builtins():
    from . import datasets  # noqa: F401  (registers digits, cifar10/100, imagefolder, imagenet)


def list_datasets():
    _builtins()
    return sorted(_DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    _builtins()
    if name not in _DATASETS:
        close = difflib.get_close_matches(str(name), list(_DATASETS), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DatasetError(f"unknown dataset '{name}'{hint}; registered: {', '.join(list_datasets())}")
    return _DATASETS[name]


def create_dataset(data_cfg, split: str, seed: int = 0):
    """The ``train`` or ``val`` source of the dataset named by ``data_cfg.dataset``."""
    if split not in ("train", "val"):
        raise DatasetError(f"split must be 'train' or 'val', got '{split}'")
    return dataset_info(data_cfg.dataset).factory(data_cfg, split, seed)
