"""Eval resize (floor), CIFAR pad-crop + flip, DARTS cutout, and timm RandAugment semantics."""
import numpy as np
import pytest
import mindspore.dataset as ds
import mindspore.dataset.vision as vision

from mindcv_ext.data.rand_augment import (RAND_INCREASING_OPS, RandAugment, RandAugmentSpecError, fill_from_mean,
                                          parse_rand_augment)
from mindcv_ext.data.transforms import Cutout, create_transforms, eval_resize_size, reseed_transforms

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _img(h=32, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------ eval resize
@pytest.mark.parametrize("crop_pct, short", [(0.9, 248), (0.95, 235), (0.875, 256), (1.0, 224)])
def test_eval_resize_floors_like_timm(crop_pct, short):
    assert eval_resize_size(224, crop_pct) == short
    ops = create_transforms(224, False, MEAN, STD, crop_pct=crop_pct, interpolation="bicubic")
    resized = ops[0](_img(300, 400))
    assert min(resized.shape[:2]) == short
    out = ops[1](resized)
    assert out.shape[:2] == (224, 224)


def test_eval_resize_rejects_bad_crop_pct():
    with pytest.raises(ValueError, match="crop_pct"):
        eval_resize_size(224, 0.0)


# ------------------------------------------------------------------ CIFAR crop
def test_default_train_crop_is_still_random_resized_crop():
    ops = create_transforms(32, True, MEAN, STD)
    assert isinstance(ops[0], vision.RandomResizedCrop)
    assert not any(isinstance(op, Cutout) for op in ops)


def test_pad_crop_is_a_shifted_window_of_the_zero_padded_image():
    img = _img()
    padded = np.zeros((40, 40, 3), np.uint8)
    padded[4:36, 4:36] = img
    ops = create_transforms(32, True, MEAN, STD, crop_mode="pad_crop", hflip=0.0)
    assert isinstance(ops[0], vision.RandomCrop) and not isinstance(ops[1], vision.RandomHorizontalFlip)
    ds.config.set_seed(3)
    data = ds.NumpySlicesDataset({"image": np.stack([img] * 40)}, shuffle=False).map(ops[:1], input_columns="image")
    offsets = set()
    for row in data.create_dict_iterator(output_numpy=True):
        out = row["image"]
        assert out.shape == (32, 32, 3)
        hits = [(dy, dx) for dy in range(9) for dx in range(9)
                if np.array_equal(out, padded[dy:dy + 32, dx:dx + 32])]
        assert hits, "the crop is not a window of the 4-pixel zero-padded image"
        offsets.update(hits)
    assert len(offsets) > 5


def test_cifar_policy_runs_in_a_pipeline():
    images = np.stack([_img(seed=s) for s in range(4)])
    ops = create_transforms(32, True, MEAN, STD, crop_mode="pad_crop", cutout=16)
    assert isinstance(ops[-1], Cutout) and isinstance(ops[1], vision.RandomHorizontalFlip)
    data = ds.NumpySlicesDataset({"image": images}, shuffle=False).map(ops, input_columns="image")
    out = [row["image"] for row in data.create_dict_iterator(output_numpy=True)]
    assert len(out) == 4 and out[0].shape == (3, 32, 32) and out[0].dtype == np.float32
    with pytest.raises(ValueError, match="crop_mode"):
        create_transforms(32, True, MEAN, STD, crop_mode="pad")
    with pytest.raises(ValueError, match="cutout"):
        create_transforms(32, True, MEAN, STD, cutout=-1)


# ------------------------------------------------------------------ cutout
def test_cutout_masks_a_clipped_square_centred_anywhere():
    """DARTS cutout: centre uniform over the image, square clipped at the borders, so the mean
    masked area is below length^2 (the exact expectation, by enumerating centres, is compared)."""
    h = w = 32
    length = 16
    cut = Cutout(length, seed=0)
    areas = []
    for _ in range(3000):
        out = cut(np.ones((3, h, w), np.float32))
        zero = out[0] == 0
        assert np.array_equal(zero, out[1] == 0)  # same square in every channel
        rows, cols = np.where(zero)
        assert rows.max() - rows.min() + 1 <= length and cols.max() - cols.min() + 1 <= length
        assert zero.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # a rectangle
        areas.append(zero.sum())
    side = [min(h, c + length // 2) - max(0, c - length // 2) for c in range(h)]
    expected = np.mean(side) ** 2  # rows and columns independent
    assert np.mean(areas) == pytest.approx(expected, rel=0.03)
    assert expected < length * length - 30 and max(areas) == length * length


def test_cutout_is_repeatable_after_reseed():
    x = np.random.default_rng(0).standard_normal((3, 32, 32)).astype(np.float32)
    ops = create_transforms(32, True, MEAN, STD, crop_mode="pad_crop", cutout=16)
    reseed_transforms(ops, 5)
    first = ops[-1](x)
    reseed_transforms(ops, 5)
    assert np.array_equal(ops[-1](x), first)


# ------------------------------------------------------------------ RandAugment
def test_parse_timm_policy_string():
    cfg = parse_rand_augment("rand-m9-mstd0.5-inc1")
    assert cfg == dict(num_ops=2, magnitude=9.0, magnitude_std=0.5, magnitude_max=10.0, increasing=True)
    assert parse_rand_augment("rand-n3-m7")["num_ops"] == 3
    assert parse_rand_augment("rand")["magnitude"] == 10.0  # timm's default magnitude
    for bad in ("augmix-m3", "rand-w0", "rand-m9-x"):
        with pytest.raises(RandAugmentSpecError):
            parse_rand_augment(bad)


def test_magnitude_noise_is_gaussian_clipped_to_ten():
    ra = RandAugment(magnitude=9, magnitude_std=0.5, seed=0)
    draws = np.array([ra.sample_magnitude() for _ in range(20000)])
    assert draws.min() >= 0 and draws.max() == 10.0
    assert np.mean(draws == 10.0) == pytest.approx(0.0228, abs=0.005)  # P(N(9, 0.5) > 10)
    inside = draws[draws < 10.0]
    assert np.mean(draws) == pytest.approx(9.0, abs=0.02) and 0.44 < inside.std() < 0.5
    fixed = RandAugment(magnitude=9, magnitude_std=0.0)
    assert {fixed.sample_magnitude() for _ in range(10)} == {9.0}


def test_same_seed_same_images_other_seed_other_images():
    images = [_img(seed=s) for s in range(8)]
    run = lambda seed: [RandAugment.from_spec("rand-m9-mstd0.5-inc1", seed=seed)(im) for im in images]  # noqa: E731
    first, again, other = run(1), run(1), run(2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    assert not all(np.array_equal(a, im) for a, im in zip(first, images))


def test_point_ops_against_numpy():
    img = _img(seed=4)
    ra = RandAugment(increasing=True, fill=fill_from_mean(MEAN))
    apply = lambda name, m: np.asarray(ra.apply_op(__import__("PIL.Image").Image.fromarray(img), name, m))  # noqa: E731
    np.testing.assert_array_equal(apply("Invert", 9), 255 - img)
    thresh = 256 - int(0.9 * 256)  # SolarizeIncreasing at m=9: 26
    np.testing.assert_array_equal(apply("SolarizeIncreasing", 9), np.where(img >= thresh, 255 - img, img))
    np.testing.assert_array_equal(apply("SolarizeAdd", 9),
                                  np.where(img < 128, np.minimum(255, img.astype(int) + 99), img))
    np.testing.assert_array_equal(apply("PosterizeIncreasing", 9), img & 0x80)  # keeps 4 - int(3.6) = 1 bit
    np.testing.assert_array_equal(apply("Posterize", 9), img & 0xE0)  # plain: keeps int(3.6) = 3 bits


def test_two_ops_drawn_with_replacement_each_applied_half_the_time():
    ra = RandAugment.from_spec("rand-m9-mstd0.5-inc1", seed=0)
    assert ra.ops == RAND_INCREASING_OPS and len(ra.ops) == 15
    assert "Posterize" in RandAugment.from_spec("rand-m9-mstd0.5").ops
    calls = []
    ra.apply_op = lambda img, name, magnitude: calls.append((len(log), name, magnitude)) or img
    log = []
    img = _img(8, 8)
    for i in range(4000):
        log.append(i)
        ra(img)
    per_image = np.bincount([c[0] for c in calls], minlength=4000)
    assert per_image.max() == 2 and np.mean(per_image) == pytest.approx(1.0, abs=0.05)  # 2 ops x p 0.5
    assert np.mean(per_image == 0) == pytest.approx(0.25, abs=0.03)
    names = {}
    for idx, name, _ in calls:
        names.setdefault(idx, []).append(name)
    twice = sum(1 for v in names.values() if len(v) == 2 and v[0] == v[1])
    assert twice > 0  # drawn with replacement (15 ops: ~1/15 of the pairs)
    assert len({c[2] for c in calls}) > 100  # a fresh noisy magnitude per op call
