"""One ImageFolder tree (no train/ and val/ sub-folders) split by data.val_split: stratified,
seeded, disjoint, complete, with the same class order on both sides."""
import os

import cv2
import numpy as np
import pytest

from mindcv_ext.config import Config
from mindcv_ext.data.datasets import DatasetError
from mindcv_ext.data.registry import create_dataset


def create_source(dataset, root, split, val_split, seed):
    """The registered dataset's split, from a data section holding only what the factory reads."""
    return create_dataset(Config(dataset=dataset, root=root, val_split=val_split), split, seed)

COUNTS = {"cat": 10, "dog": 5, "emu": 3}


def _tree(root):
    rng = np.random.default_rng(0)
    for cls, n in COUNTS.items():
        os.makedirs(root / cls)
        for i in range(n):
            cv2.imwrite(str(root / cls / f"{i}.png"), rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    (root / "cat" / "notes.txt").write_text("not an image")
    return {str(root / cls / f"{i}.png"): k for k, (cls, n) in enumerate(sorted(COUNTS.items())) for i in range(n)}


def _pairs(src):
    return {src.files[i]: int(src.labels[i]) for i in range(len(src))}


def test_one_tree_split(tmp_path):
    truth = _tree(tmp_path)
    train = create_source("imagefolder", str(tmp_path), "train", val_split=0.2, seed=7)
    val = create_source("imagefolder", str(tmp_path), "val", val_split=0.2, seed=7)
    tr, va = _pairs(train), _pairs(val)
    assert not set(tr) & set(va)                         # disjoint
    assert {**tr, **va} == truth                         # complete, labels from the sorted folder names
    assert train.classes == val.classes == sorted(COUNTS)
    per_class = {c: sum(1 for lb in va.values() if lb == k) for k, c in enumerate(sorted(COUNTS))}
    assert per_class == {"cat": 2, "dog": 1, "emu": 1}   # round(n * 0.2), at least one per class
    again = create_source("imagefolder", str(tmp_path), "val", val_split=0.2, seed=7)
    assert _pairs(again) == va                           # seeded
    other = [set(_pairs(create_source("imagefolder", str(tmp_path), "val", val_split=0.2, seed=s)))
             for s in range(1, 6)]
    assert any(o != set(va) for o in other)              # and the seed matters


def test_one_tree_split_bad_fraction(tmp_path):
    _tree(tmp_path)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(DatasetError, match="val_split"):
            create_source("imagefolder", str(tmp_path), "train", val_split=bad, seed=0)
