"""Build mindspore.dataset pipelines from the config: the dataset's columns in order, seeded
per-epoch order, rank sharding."""
import os
import sys
from typing import Optional

import numpy as np
import mindspore.dataset as ds

from .registry import DatasetError, create_dataset, dataset_info
from .transforms import MixupCutmix, create_transforms, reseed_transforms


class EpochSampler:
    """Random-access source wrapper: a seeded permutation per epoch, sharded across ranks.

    Each rank sees ``ceil(N / world)`` samples (the permutation wraps round), so every rank runs
    the same number of steps. Integer ``label`` columns come out as int32.
    """

    def __init__(self, source, shuffle: bool, seed: int, rank: int = 0, world: int = 1,
                 max_samples: Optional[int] = None, columns=("image", "label")):
        self.source, self.shuffle, self.seed, self.rank, self.world = source, shuffle, seed, rank, world
        self.n_total = len(source) if max_samples is None else min(len(source), max_samples)
        if self.n_total == 0:
            raise DatasetError("the dataset is empty")
        self.per_rank = -(-self.n_total // world)
        self.label_at = columns.index("label") if "label" in columns else None
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        order = np.arange(self.n_total)
        if self.shuffle:
            order = np.random.default_rng(self.seed * 1000 + epoch).permutation(self.n_total)
        order = np.resize(order, self.per_rank * self.world)
        self.indices = order[self.rank::self.world]

    def __len__(self):
        return self.per_rank

    def __getitem__(self, i):
        sample = tuple(self.source[int(self.indices[i])])
        if self.label_at is not None and np.ndim(sample[self.label_at]) == 0:
            sample = sample[:self.label_at] + (np.int32(sample[self.label_at]),) + sample[self.label_at + 1:]
        return sample


def usable_workers(requested: int) -> int:
    """``data.num_workers`` clamped to the CPUs this process may use (with a warning)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    if requested > cpus:
        print(f"warning: data.num_workers={requested} but only {cpus} CPU(s) are available; using {cpus}",
              file=sys.stderr, flush=True)
        return cpus
    return max(1, requested)


class Loader:
    """One split of a dataset. ``epoch(e)`` returns a fresh iterator of tuples of Tensors, one per
    column the dataset declares (``(images, labels)`` for classification)."""

    def __init__(self, data_cfg, split: str, seed: int, rank: int = 0, world: int = 1,
                 label_smoothing: float = 0.0, drop_remainder: Optional[bool] = None, batch_size: Optional[int] = None):
        self.cfg, self.split, self.seed = data_cfg, split, seed
        self.is_training = split == "train"
        self.info = dataset_info(data_cfg.dataset)
        self.columns = self.info.columns
        self.source = create_dataset(data_cfg, split, seed)
        self.num_classes = getattr(self.source, "num_classes", None)
        self.sampler = EpochSampler(self.source, shuffle=self.is_training, seed=seed, rank=rank, world=world,
                                    max_samples=data_cfg.max_samples, columns=self.columns)
        self.drop_remainder = self.is_training if drop_remainder is None else drop_remainder
        self.batch_size = batch_size or data_cfg.batch_size
        if self.drop_remainder and len(self.sampler) < self.batch_size:
            raise DatasetError(f"data.batch_size {self.batch_size} is larger than the {len(self.sampler)} "
                               f"{split} samples per rank")
        self.workers = usable_workers(data_cfg.num_workers)
        self.mixer = None
        if self.info.classification and self.is_training and (data_cfg.mixup > 0 or data_cfg.cutmix > 0):
            self.mixer = MixupCutmix(self.num_classes, data_cfg.mixup, data_cfg.cutmix, label_smoothing, seed)
        self.transforms = None
        if self.info.image_transforms and "image" in self.columns:
            self.transforms = create_transforms(
                data_cfg.image_size, self.is_training, data_cfg.mean, data_cfg.std, scale=data_cfg.scale,
                hflip=data_cfg.hflip, auto_augment=data_cfg.auto_augment, re_prob=data_cfg.re_prob,
                interpolation=data_cfg.interpolation, crop_pct=data_cfg.crop_pct, crop_mode=data_cfg.crop_mode,
                cutout=data_cfg.cutout, seed=seed)

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_remainder else -(-n // self.batch_size)

    @property
    def soft_targets(self) -> bool:
        return self.mixer is not None

    def dataset(self, epoch: int = 0):
        """The mindspore.dataset pipeline for ``epoch`` (order and augmentation seeded by it)."""
        ds.config.set_seed(self.seed * 1000 + epoch)
        self.sampler.set_epoch(epoch)
        data = ds.GeneratorDataset(self.sampler, column_names=list(self.columns), shuffle=False,
                                   num_parallel_workers=1)
        if self.transforms is not None:
            reseed_transforms(self.transforms, self.seed * 1000 + epoch)
            data = data.map(self.transforms, input_columns="image", num_parallel_workers=self.workers)
        collate = getattr(self.source, "collate", None)
        if self.mixer is not None:
            self.mixer.reseed(self.seed * 1000 + epoch)
            data = data.batch(self.batch_size, drop_remainder=True,
                              per_batch_map=lambda x, y, _info: self.mixer(np.stack(x), np.stack(y)),
                              input_columns=["image", "label"])
        elif collate is not None:  # variable-size samples (point clouds): the source batches them itself
            data = data.batch(self.batch_size, drop_remainder=self.drop_remainder,
                              per_batch_map=lambda *cols: collate(*cols[:-1]), input_columns=list(self.columns))
        else:
            data = data.batch(self.batch_size, drop_remainder=self.drop_remainder)
        return data

    def epoch(self, epoch: int = 0):
        return self.dataset(epoch).create_tuple_iterator(num_epochs=1, output_numpy=False)
