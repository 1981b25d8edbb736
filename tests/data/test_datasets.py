import cv2
import numpy as np
import pytest

from mindcv_ext.tasks import load_config
from mindcv_ext.data.datasets import DatasetError, read_cifar_binary, read_digits, split_indices
from mindcv_ext.data.registry import create_dataset
from mindcv_ext.data.loader import EpochSampler, Loader
from mindcv_ext.data.transforms import MixupCutmix


def write_cifar(folder, files, n, label_bytes, num_classes, rng):
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for fname in files:
        labels = rng.integers(0, num_classes, size=(n, label_bytes)).astype(np.uint8)
        pixels = rng.integers(0, 256, size=(n, 3 * 32 * 32)).astype(np.uint8)
        np.concatenate([labels, pixels], 1).tofile(folder / fname)
        truth[fname] = (labels, pixels)
    return truth


def test_cifar10_binary(tmp_path):
    rng = np.random.default_rng(0)
    files = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    truth = write_cifar(tmp_path / "cifar-10-batches-bin", files, 4, 1, 10, rng)
    train = read_cifar_binary(str(tmp_path), "cifar10", train=True)
    test = read_cifar_binary(str(tmp_path), "cifar10", train=False)
    assert len(train) == 20 and len(test) == 4
    labels, pixels = truth["data_batch_2.bin"]
    img, label = train[5]  # second record of the second file
    assert label == labels[1, 0]
    assert np.array_equal(img[..., 0].ravel(), pixels[1, :1024])  # red plane first
    assert np.array_equal(img[..., 2].ravel(), pixels[1, 2048:])


def test_cifar100_uses_fine_label(tmp_path):
    truth = write_cifar(tmp_path, ["train.bin", "test.bin"], 3, 2, 100, np.random.default_rng(1))
    src = read_cifar_binary(str(tmp_path), "cifar100", train=True)
    assert src.num_classes == 100 and [src[i][1] for i in range(3)] == list(truth["train.bin"][0][:, 1])


def test_cifar_corrupt_file_named(tmp_path):
    (tmp_path / "train.bin").write_bytes(b"\x00" * 100)
    (tmp_path / "test.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetError, match="train.bin' is not a cifar100 binary file"):
        read_cifar_binary(str(tmp_path), "cifar100")


def create_source(dataset, root, split, val_split=0.2, seed=0, *extra):
    cfg = load_config(None, [f"data.dataset={dataset}", f"data.root={root}", f"data.val_split={val_split}", *extra])
    return create_dataset(cfg.data, split, seed)


def test_image_folder_train_val(tmp_path):
    rng = np.random.default_rng(2)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                cv2.imwrite(str(d / f"{i}.png"), rng.integers(0, 256, (20, 24, 3)).astype(np.uint8))
    train = create_source("imagefolder", str(tmp_path), "train")
    val = create_source("imagefolder", str(tmp_path), "val")
    assert train.classes == ["cat", "dog"] and len(train) == 6 and len(val) == 6
    img, label = val[4]
    assert img.shape == (20, 24, 3) and img.dtype == np.uint8 and label == 1
    with pytest.raises(DatasetError, match="does not exist"):
        create_source("imagefolder", str(tmp_path / "missing"), "train")


def test_digits_split_is_stratified_and_disjoint():
    full = read_digits()
    assert len(full) == 1797 and full.images.shape[1:] == (8, 8, 3)
    train = create_source("digits", None, "train", 0.2, seed=3)
    val = create_source("digits", None, "val", 0.2, seed=3)
    assert len(train) + len(val) == 1797
    assert set(np.unique(val.labels)) == set(range(10))
    train_idx, val_idx = split_indices(full.labels, 0.2, seed=3)
    assert not set(train_idx) & set(val_idx) and len(train_idx) == len(train)


def test_sampler_shards_and_seeds():
    src = read_digits().subset(range(10))
    ranks = [EpochSampler(src, True, seed=1, rank=r, world=2) for r in range(2)]
    seen = sorted(int(i) for s in ranks for i in s.indices)
    assert seen == list(range(10)) and len(ranks[0]) == len(ranks[1]) == 5
    first = ranks[0].indices.copy()
    ranks[0].set_epoch(1)
    assert not np.array_equal(first, ranks[0].indices)
    ranks[0].set_epoch(0)
    assert np.array_equal(first, ranks[0].indices)


def test_loader_batches_deterministic():
    cfg = load_config(None, ["data.image_size=16", "data.batch_size=8", "data.max_samples=32", "data.hflip=0.0",
                             "data.auto_augment=rand-m9-mstd0.5", "data.re_prob=0.5"])
    a = [x.asnumpy() for x, _ in Loader(cfg.data, "train", seed=5).epoch(2)]
    b = [x.asnumpy() for x, _ in Loader(cfg.data, "train", seed=5).epoch(2)]
    assert len(a) == 4 and a[0].shape == (8, 3, 16, 16) and a[0].dtype == np.float32
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_mixup_cutmix_targets():
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((6, 3, 8, 8)).astype(np.float32), np.arange(6) % 3
    for mix in (MixupCutmix(3, mixup_alpha=0.8, label_smoothing=0.1), MixupCutmix(3, cutmix_alpha=1.0)):
        out, target = mix(images, labels)
        assert out.shape == images.shape and target.shape == (6, 3)
        np.testing.assert_allclose(target.sum(1), 1.0, rtol=1e-6)
        assert not np.allclose(out, images)


def test_image_folder_names_empty_class_and_skips_bad_images(tmp_path, capsys):
    rng = np.random.default_rng(3)
    for split in ("train", "val"):
        for cls in ("ant", "bee", "wasp"):
            (tmp_path / split / cls).mkdir(parents=True)
        for cls in ("ant", "bee"):
            for i in range(3):
                cv2.imwrite(str(tmp_path / split / cls / f"{i}.png"), rng.integers(0, 256, (8, 8, 3)).astype(np.uint8))
    with pytest.raises(DatasetError, match="class folder.*wasp.*hold no images"):
        create_source("imagefolder", str(tmp_path), "train")
    for split in ("train", "val"):
        (tmp_path / split / "wasp").rmdir()
    bad_file = tmp_path / "train" / "bee" / "1.png"
    bad_file.write_bytes(b"not an image")
    strict = create_source("imagefolder", str(tmp_path), "train")
    assert strict.scan() == [str(bad_file)]
    bad = strict.files.index(str(bad_file))
    with pytest.raises(DatasetError, match="cannot decode image.*skip_bad_images"):
        strict[bad]
    lenient = create_source("imagefolder", str(tmp_path), "train", 0.2, 0, "data.skip_bad_images=true")
    img, label = lenient[bad]
    assert img.shape == (8, 8, 3) and label == 1  # the next readable image of the same class
    assert "skipping unreadable image" in capsys.readouterr().err


def test_registry_declares_columns_and_names_unknown_datasets():
    from mindcv_ext.data.registry import dataset_info
    assert dataset_info("digits").columns == ("image", "label")
    with pytest.raises(DatasetError, match="unknown dataset 'digit'.*digits"):
        dataset_info("digit")
