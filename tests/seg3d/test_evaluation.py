import numpy as np
import pytest

from mindcv_ext.seg3d import AP_OVERLAPS, Instance, average_precision, evaluate_instances


def _scene():
    """Three objects (classes 2, 2, 3) of 100 points, 50 void points, one 8-point object."""
    sem = np.concatenate([np.full(100, 2), np.full(100, 2), np.full(100, 3), np.full(50, 0), np.full(8, 3)])
    inst = np.concatenate([np.full(100, 0), np.full(100, 1), np.full(100, 2), np.full(50, -100), np.full(8, 3)])
    return sem, inst


def _perfect(sem, inst, scores=(0.9, 0.8, 0.7)):
    return [Instance(np.flatnonzero(inst == i), int(sem[inst == i][0]), s) for i, s in zip(range(3), scores)]


def test_thresholds_are_scannets():
    assert AP_OVERLAPS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


def test_average_precision_by_hand():
    # TP, TP, FP ranked in that order: every operating point at precision 1 until recall 1
    assert average_precision(np.array([1, 1, 0]), np.array([0.9, 0.8, 0.1]), 0) == pytest.approx(1.0)
    # the FP ranked first: points (p, r) = (2/3, 1), (1/2, 1/2), (0, 0), (1, 0)
    # widths (r_{k-1} - r_{k+1}) / 2 = 1/4, 1/2, 1/4, 0  ->  2/3 * 1/4 + 1/2 * 1/2 = 5/12
    assert average_precision(np.array([1, 1, 0]), np.array([0.5, 0.4, 0.9]), 0) == pytest.approx(5 / 12)
    # a missed GT halves the reachable recall: points (1, 1/2), (1, 0) -> 1/4 + 1/4
    assert average_precision(np.array([1]), np.array([0.5]), 1) == pytest.approx(0.5)


def test_perfect_prediction_scores_one():
    sem, inst = _scene()
    res = evaluate_instances([(_perfect(sem, inst), sem, inst)] * 2, [2, 3], min_region_size=20)
    assert res["ap"] == res["ap50"] == res["ap25"] == 1.0
    assert set(res["per_class"]) == {"2", "3"}


def test_false_positive_ranked_first_lowers_ap():
    sem, inst = _scene()
    wrong = Instance(np.arange(300, 350), 2, 0.0)   # lies on void only: ignored whatever its score
    fp = Instance(np.concatenate([np.arange(0, 40), np.arange(100, 140)]), 2, 0.0)  # IoU < 0.5 with both
    good = evaluate_instances([(_perfect(sem, inst) + [wrong, Instance(fp.indices, 2, 0.1)], sem, inst)], [2],
                              min_region_size=20)
    bad = evaluate_instances([(_perfect(sem, inst) + [Instance(wrong.indices, 2, 1.0), Instance(fp.indices, 2, 1.0)],
                               sem, inst)], [2], min_region_size=20)
    assert good["ap50"] == pytest.approx(1.0)
    assert bad["ap50"] == pytest.approx(5 / 12)    # FP first, then the two class-2 TPs (see the by-hand test)


def test_duplicates_are_penalised():
    sem, inst = _scene()
    preds = _perfect(sem, inst)
    dup = Instance(np.flatnonzero(inst == 0)[:95], 2, 0.85)   # a second match of object 0, between the TPs
    res = evaluate_instances([(preds + [dup], sem, inst)], [2], min_region_size=20)
    # ranked TP(0.9), FP(0.85), TP(0.8): (2/3, 1), (1/2, 1/2), (1, 1/2), (1, 0) -> 19/24
    assert res["ap50"] == pytest.approx(19 / 24)
    # the duplicate with the top score: the GT keeps the higher score, the lower becomes the FP
    top = evaluate_instances([(preds + [Instance(dup.indices, 2, 0.95)], sem, inst)], [2], min_region_size=20)
    assert top["ap50"] == pytest.approx(19 / 24)


def test_small_regions_are_ignored():
    sem, inst = _scene()
    preds = _perfect(sem, inst)
    # the 8-point object is not counted as GT: missing it costs nothing, predicting it is no FP
    assert evaluate_instances([(preds, sem, inst)], [3], min_region_size=20)["ap50"] == 1.0
    on_small = Instance(np.arange(350, 358), 3, 0.99)
    assert evaluate_instances([(preds, sem, inst)], [3], min_region_size=5)["ap50"] == pytest.approx(0.5)  # now GT
    assert evaluate_instances([(preds + [on_small], sem, inst)], [3], min_region_size=20)["ap50"] == 1.0
    # a larger prediction mostly on the small object and void is ignored, not a false positive
    mostly_ignored = Instance(np.arange(300, 358), 3, 0.99)
    assert evaluate_instances([(preds + [mostly_ignored], sem, inst)], [3], min_region_size=20)["ap50"] == 1.0


def test_iou_thresholds_and_missing_classes():
    sem, inst = _scene()
    partial = Instance(np.flatnonzero(inst == 2)[:58], 3, 0.5)     # IoU 0.58 with object 2
    res = evaluate_instances([([partial], sem, inst)], [3, 7], min_region_size=20)
    assert res["ap50"] == 1.0 and res["ap25"] == 1.0
    assert res["ap"] == pytest.approx(2 / 9)                       # matched at 0.50 and 0.55 only
    assert np.isnan(res["per_class"]["7"]["ap50"])                 # no GT: left out of the mean
    none = evaluate_instances([([], sem, inst)], [2, 3], min_region_size=20)
    assert none["ap50"] == 0.0                                     # GT but no prediction


def test_bad_gt_is_rejected():
    with pytest.raises(ValueError, match="equal 1-D arrays"):
        evaluate_instances([([], np.zeros(5), np.zeros(4))], [2])
