"""NYUDv2-format reader and augmentation on generated files."""
import os

import numpy as np
import pytest
from PIL import Image

from mindcv_ext.seg import nyudv2 as ny


def _write_sample(root, name, h=48, w=40, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    for sub in ("rgb", "masks", "depth"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    mask = np.zeros((h, w), np.uint8) if labels is None else labels
    if labels is None:
        mask[:, w // 2:] = 7
        mask[: h // 3] = 39
        mask[-4:, :5] = 255
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    depth = (mask.astype(np.uint16) * 100 + 100)          # depth encodes the label (both nearest-resized)
    Image.fromarray(rgb).save(os.path.join(root, "rgb", name))
    Image.fromarray(mask).save(os.path.join(root, "masks", name))
    Image.fromarray(depth).save(os.path.join(root, "depth", name))
    return rgb, mask, depth


def _dataset(tmp_path, n=2, **kw):
    root = str(tmp_path)
    data = [_write_sample(root, f"{i:06d}.png", seed=i) for i in range(n)]
    with open(os.path.join(root, "train.txt"), "w") as f:
        for i in range(n):
            f.write(f"rgb/{i:06d}.png\tmasks/{i:06d}.png\tdepth/{i:06d}.png\n")
    return root, data


def test_eval_sample_is_read_and_normalised(tmp_path):
    root, data = _dataset(tmp_path)
    ds = ny.NYUDv2Dataset(root, "train.txt", train=False)
    assert len(ds) == 2 and ds.columns == ("rgb", "depth", "mask")
    rgb, depth, mask = ds[1]
    raw_rgb, raw_mask, raw_depth = data[1]
    assert rgb.shape == (3, 48, 40) and depth.shape == (3, 48, 40) and mask.shape == (48, 40)
    ref_rgb = (raw_rgb / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(rgb, ref_rgb.transpose(2, 0, 1), rtol=1e-5, atol=1e-5)
    for c in range(3):
        np.testing.assert_allclose(depth[c], raw_depth / 5000.0, rtol=1e-6)
    np.testing.assert_array_equal(mask, raw_mask)
    assert mask.dtype == np.int32 and rgb.dtype == np.float32


def test_train_augmentation_keeps_inputs_and_labels_aligned(tmp_path):
    root, _ = _dataset(tmp_path)
    ds = ny.NYUDv2Dataset(root, os.path.join(root, "train.txt"), train=True, crop_size=64, shorter_side=40,
                          scale_range=(0.5, 2.0), seed=3)
    seen_pad = False
    for _ in range(6):
        rgb, depth, mask = ds[0]
        assert rgb.shape == (3, 64, 64) and depth.shape == (3, 64, 64) and mask.shape == (64, 64)
        raw_depth = depth[0] * 5000.0
        labelled = mask != 255
        np.testing.assert_allclose(raw_depth[labelled], mask[labelled] * 100.0 + 100.0, rtol=1e-5)
        padded = np.isclose(raw_depth, 123.675 * 1.0, rtol=1e-5)   # depth padded with the ImageNet mean, as upstream
        seen_pad |= bool(padded.any())
        assert np.all(mask[padded] == 255)
        assert set(np.unique(mask)) <= {0, 7, 39, 255}
    assert seen_pad


def test_pad_and_crop_rules():
    sample = {"rgb": np.zeros((5, 8, 3), np.float32), "depth": np.zeros((5, 8, 3), np.float32),
              "mask": np.zeros((5, 8), np.int32)}
    out = ny.pad(sample, 8)
    assert out["rgb"].shape[:2] == (9, 8) and out["mask"][0, 0] == 255 and out["rgb"][0, 0, 2] == np.float32(103.53)
    out = ny.random_crop(out, 7, np.random.default_rng(0))  # crop size made even: 6
    assert out["mask"].shape == (6, 6)


def test_reader_errors(tmp_path):
    root, _ = _dataset(tmp_path, n=1)
    with pytest.raises(ny.NYUDv2Error, match="does not exist"):
        ny.NYUDv2Dataset(root, "missing.txt")
    bad = os.path.join(root, "bad.txt")
    with open(bad, "w") as f:
        f.write("rgb/000000.png masks/000000.png depth/000000.png\n")
    with pytest.raises(ny.NYUDv2Error, match="bad.txt:1: expected 3 tab-separated"):
        ny.NYUDv2Dataset(root, bad)
    gone = os.path.join(root, "gone.txt")
    with open(gone, "w") as f:
        f.write("rgb/000000.png\tmasks/nothere.png\tdepth/000000.png\n")
    with pytest.raises(ny.NYUDv2Error, match="nothere.png' does not exist"):
        ny.NYUDv2Dataset(root, gone)[0]
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(os.path.join(root, "masks", "colour.png"))
    with pytest.raises(ny.NYUDv2Error, match="single-channel"):
        ny.read_mask(os.path.join(root, "masks", "colour.png"))
    Image.fromarray(np.full((4, 4), 45, np.uint8)).save(os.path.join(root, "masks", "range.png"))
    with pytest.raises(ny.NYUDv2Error, match="outside"):
        ny.read_mask(os.path.join(root, "masks", "range.png"))
    with open(os.path.join(root, "rgb", "junk.png"), "wb") as f:
        f.write(b"not a png")
    with pytest.raises(ny.NYUDv2Error, match="cannot read"):
        ny.read_input(os.path.join(root, "rgb", "junk.png"))
