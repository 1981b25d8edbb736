"""Benchmark category lists, the ImageFolder-domain checker, and the per-loop metrics/pictures."""
import os

import numpy as np
import pytest

from mindcv_ext import da
from mindcv_ext.da import DomainFolderError


def test_category_lists():
    # class counts of the benchmarks: Office-31 31, Office-Home 65, VisDA-2017 12
    assert len(set(da.OFFICE31_CLASSES)) == 31
    assert len(set(da.OFFICE_HOME_CLASSES)) == 65
    assert len(set(da.VISDA2017_CLASSES)) == 12


def _image(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\x89PNG")


def test_domain_checker_names_the_folder(tmp_path):
    root = str(tmp_path)
    with pytest.raises(DomainFolderError, match=r"domain folder '.*amazon' does not exist"):
        da.check_benchmark_domain(root, "office31", "amazon")
    os.makedirs(tmp_path / "amazon" / "bike")
    with pytest.raises(DomainFolderError, match=r"domain folder '.*amazon' is empty"):
        da.check_domain_folder(root, "amazon")
    _image(str(tmp_path / "amazon" / "bike" / "a.jpg"))
    assert da.check_domain_folder(root, "amazon") == ["bike"]
    with pytest.raises(DomainFolderError, match=r"'.*amazon' lacks 30 of 31 class folders"):
        da.check_benchmark_domain(root, "office31", "amazon")
    for c in da.VISDA2017_CLASSES:
        _image(str(tmp_path / "validation" / c / "x.png"))
    assert da.check_benchmark_domain(root, "visda2017", "validation") == sorted(da.VISDA2017_CLASSES)
    with pytest.raises(DomainFolderError, match="not a visda2017 domain"):
        da.check_benchmark_domain(root, "visda2017", "amazon")


def test_metrics_and_pictures(tmp_path):
    gt = np.array([0, 0, 1, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0, 2])
    cm = da.confusion_matrix(gt, pred, 3)
    want = np.zeros((3, 3), int)
    for t, p in zip(gt, pred):
        want[t, p] += 1
    np.testing.assert_array_equal(cm, want)
    assert da.accuracy(pred, gt) == pytest.approx(5 / 7)
    assert da.mean_class_accuracy(pred, gt, 3) == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    usable = np.array([1, 0, 1, 1, 1, 0, 1], bool)
    assert da.pseudo_label_accuracy(pred, gt, usable) == pytest.approx(1.0)
    assert da.kept_ratio(usable) == pytest.approx(5 / 7)
    with pytest.raises(ValueError, match="class ids"):
        da.confusion_matrix(gt, pred + 1, 3)
    png = da.save_confusion_png(cm, str(tmp_path / "cm.png"), ["a", "b", "c"])
    plot = da.save_loop_plot([{"target_acc": 0.5, "kept_ratio": 0.9}, {"target_acc": 0.7, "kept_ratio": 0.8}],
                             str(tmp_path / "loops.png"))
    for path in (png, plot):
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
