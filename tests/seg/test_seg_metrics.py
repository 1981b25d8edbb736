"""Segmentation metrics, exchanged fractions, AUROC, palette and optimiser schedule against
independent NumPy/sklearn references."""
import numpy as np
import pytest

from mindcv_ext.seg import corruption as au
from mindcv_ext.seg.exchange import ScoreLayoutError, exchanged_fraction, score_maps
from mindcv_ext.seg.metrics import (MetricInputError, SegMeter, confusion_matrix, logits_to_labels,
                                    segmentation_scores)
from mindcv_ext.seg.optim import poly_warmup_lr
from mindcv_ext.seg.palette import (PaletteError, colorize, segmentation_palette, write_score_png,
                                    write_segmentation_png)


def reference_scores(gt, pred, num_classes, ignore=255):
    """Per-class loops over pixels, no confusion matrix."""
    gt, pred = gt.ravel(), pred.ravel()
    keep = gt != ignore
    gt, pred = gt[keep], pred[keep]
    pixel = np.mean(gt == pred) * 100
    accs, ious = [], []
    for c in range(num_classes):
        in_gt, in_pred = gt == c, pred == c
        if in_gt.any():
            accs.append(np.mean(pred[in_gt] == c))
        union = np.sum(in_gt | in_pred)
        if union:
            ious.append(np.sum(in_gt & in_pred) / union)
    return pixel, np.mean(accs) * 100, np.mean(ious) * 100


def test_miou_matches_reference_with_ignore_label():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 4, (3, 20, 20))
    pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, 5, gt.shape))
    gt[:, :3] = 255                      # ignored rows (whatever is predicted there)
    pred[gt == 1] = 1                    # class 1 perfect
    gt[gt == 3] = 2                      # class 3 never in gt, only predicted -> IoU 0, no accuracy
    pred[pred == 4] = 0                  # class 4 nowhere -> left out of both means
    pred[0, 5, 5] = 3
    s = segmentation_scores(confusion_matrix(gt, pred, 5))
    ref = reference_scores(gt, pred, 5)
    np.testing.assert_allclose([s["pixel_acc"], s["mean_acc"], s["miou"]], ref, rtol=1e-12)
    assert s["iou"][3] == 0.0 and np.isnan(s["iou"][4])


def test_ignored_pixels_do_not_count():
    gt = np.array([[0, 1], [255, 255]])
    pred_a = np.array([[0, 1], [0, 0]])
    pred_b = np.array([[0, 1], [1, 1]])
    np.testing.assert_array_equal(confusion_matrix(gt, pred_a, 2), confusion_matrix(gt, pred_b, 2))
    assert segmentation_scores(confusion_matrix(gt, pred_a, 2))["miou"] == 100.0


def test_metric_errors():
    with pytest.raises(MetricInputError, match="differ in shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 3)
    with pytest.raises(MetricInputError, match=r"\[0, 3\)"):
        confusion_matrix(np.zeros((2, 2)), np.full((2, 2), 3), 3)
    with pytest.raises(MetricInputError, match="3 outputs"):
        SegMeter(4).update([np.zeros((1, 4, 2, 2))], np.zeros((1, 4, 4)))


def test_meter_resizes_logits_and_scores_each_output():
    gt = np.zeros((1, 8, 8), np.int64)
    gt[:, :, 4:] = 1
    good = np.zeros((1, 2, 4, 4), np.float32)
    good[0, 0, :, :2], good[0, 1, :, 2:] = 1, 1
    bad = good[:, ::-1].copy()
    meter = SegMeter(2, names=("rgb", "depth"))
    meter.update([good, bad], gt)
    s = meter.scores()
    assert s["rgb_miou"] == 100.0 and s["rgb_pixel_acc"] == 100.0 and s["depth_pixel_acc"] == 0.0
    assert logits_to_labels(good[0], (8, 8)).shape == (8, 8)


def test_exchanged_fraction_per_stage_and_modality():
    layout = [(0, 0, "rgb"), (0, 0, "depth"), (0, 1, "rgb"), (0, 1, "depth"), (1, 0, "rgb"), (1, 0, "depth")]
    scores = [np.array([[0.0, 0.5, 0.01, 0.9]]), np.ones((1, 4)), np.array([[0.0, 0.0, 0.5, 0.5]]),
              np.zeros((1, 4)), np.array([[0.019, 0.02]]), np.array([[0.5, 0.0]])]
    f = exchanged_fraction(scores, layout, 0.02)
    assert f["stage1/rgb"] == pytest.approx(0.5) and f["stage1/depth"] == pytest.approx(0.5)
    assert f["stage2/rgb"] == pytest.approx(0.5) and f["stage2/depth"] == pytest.approx(0.5)
    assert f["rgb"] == pytest.approx((0.5 + 0.5 + 0.5) / 3) and f["depth"] == pytest.approx((0 + 1 + 0.5) / 3)
    maps = score_maps(scores, layout, [(2, 2), (1, 2)])
    np.testing.assert_allclose(maps[(0, "rgb")][0], [[0.0, 0.25], [0.255, 0.7]])
    with pytest.raises(ScoreLayoutError):
        exchanged_fraction(scores[:2], layout)


def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(1)
    labels = rng.random(300) < 0.3
    values = np.round(rng.normal(size=300) + labels, 1)  # many ties
    assert au.auroc(labels, values) == pytest.approx(roc_auc_score(labels, values), abs=1e-12)
    with pytest.raises(au.AurocInputError, match="both classes"):
        au.auroc(np.ones(4), np.arange(4))


def test_corruption_auroc_on_token_grid():
    pix = np.zeros((1, 8, 8), bool)
    pix[0, :4, :4] = True                       # token (0, 0) of a 2x2 grid
    tokens = au.token_mask(pix, (2, 2))
    np.testing.assert_array_equal(tokens, [[True, False, False, False]])
    scores = np.array([[0.001, 0.5, 0.3, 0.01]])
    assert au.corruption_auroc(scores, pix, (2, 2)) == 1.0
    # hard decision score < 0.02: TPR 1, FPR 1/3 -> balanced accuracy 5/6
    assert au.corruption_auroc(scores, pix, (2, 2), threshold=0.02) == pytest.approx(5 / 6)
    with pytest.raises(au.AurocInputError, match="divide"):
        au.token_mask(np.zeros((1, 7, 8)), (2, 2))


def test_palette_and_png(tmp_path):
    import cv2
    pal = segmentation_palette()
    # VOC colour map: 1 -> (128, 0, 0), 2 -> (0, 128, 0), 3 -> (128, 128, 0), 7 -> (128, 128, 128), 8 -> (64, 0, 0)
    assert [tuple(pal[i]) for i in (0, 1, 2, 3, 7, 8)] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0),
                                                             (128, 128, 128), (64, 0, 0)]
    assert len({tuple(c) for c in pal}) == 256
    labels = np.array([[0, 1], [255, 2]])
    rgb = colorize(labels)
    assert tuple(rgb[0, 0]) == (128, 0, 0) and tuple(rgb[1, 0]) == (0, 0, 0) and tuple(rgb[1, 1]) == (128, 128, 0)
    path = write_segmentation_png(str(tmp_path / "out" / "seg.png"), labels)
    np.testing.assert_array_equal(cv2.imread(path)[..., ::-1], rgb)
    with pytest.raises(PaletteError):
        colorize(np.array([[300]]))
    with pytest.raises(PaletteError):
        colorize(np.zeros((2, 2), np.float32))
    grey = cv2.imread(write_score_png(str(tmp_path / "s.png"), [[0.0, 0.5], [1.0, 2.0]], scale=2), 0)
    np.testing.assert_array_equal(grey[::2, ::2], [[0, 128], [255, 255]])
    assert grey.shape == (4, 4)


def test_poly_warmup_schedule():
    lr = poly_warmup_lr(6e-5, 30, warmup_iter=10, max_iter=20, warmup_ratio=1e-6, power=1.0)
    assert lr[0] == pytest.approx(6e-5 * 1e-6, rel=1e-3)
    assert lr[5] == pytest.approx(6e-5 * (1 - 0.5 * (1 - 1e-6)), rel=1e-5)
    assert lr[10] == pytest.approx(6e-5 * 0.5, rel=1e-5) and lr[19] == pytest.approx(6e-5 * 0.05, rel=1e-5)
    assert np.all(lr[20:] == lr[19])  # past max_iter the LR stays
