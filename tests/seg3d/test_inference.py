import numpy as np
import pytest

from mindcv_ext.seg3d import (Proposals, finalize_instances, pack_proposals, point_nms, proposal_targets,
                              score_targets)


def _props(sets, classes):
    return Proposals([np.array(s) for s in sets], np.array(classes), np.zeros(len(sets), np.int64),
                     ["shifted"] * len(sets))


def test_nms_keeps_the_best_of_duplicates():
    a = np.arange(0, 100)
    sets = [a[:90], a, np.arange(200, 260), a[5:]]   # three near-copies of one object, one other object
    keep = point_nms(sets, np.array([0.5, 0.9, 0.3, 0.7]), iou_threshold=0.3)
    assert keep.tolist() == [1, 2]
    # a low threshold never drops disjoint sets
    assert sorted(point_nms([np.arange(10), np.arange(10, 20)], np.array([0.1, 0.2]), 0.0).tolist()) == [0, 1]


def test_score_target_mapping():
    np.testing.assert_allclose(score_targets(np.array([0.0, 0.25, 0.5, 0.75, 1.0])), [0, 0, 0.5, 1, 1])
    with pytest.raises(ValueError):
        score_targets(np.array([0.5]), fg_thresh=0.2, bg_thresh=0.3)


def test_pack_and_targets():
    inst = np.array([0] * 10 + [1] * 10 + [-100] * 5)
    props = _props([list(range(0, 12)), list(range(10, 25)), list(range(20, 25))], [2, 2, 2])
    packed = pack_proposals(props, max_proposals=4, max_points=12)
    assert packed.index.shape == (4, 12) and packed.proposal_valid.tolist() == [1, 1, 1, 0]
    assert packed.valid[0].sum() == 12 and packed.valid[2].sum() == 5 and packed.valid[1].sum() == 12
    score_t, mask_t, mask_w = proposal_targets(packed, props, inst)
    # proposal 0: IoU 10/12 with instance 0 -> target 1; mask = its first 10 points
    assert score_t[0] == 1.0 and mask_t[0].tolist() == [1] * 10 + [0, 0]
    # proposal 1: IoU 10/15 with instance 1 -> (2/3 - 1/4) / 0.5
    assert score_t[1] == pytest.approx((10 / 15 - 0.25) / 0.5)
    # proposal 2 lies on unlabelled points: IoU 0, no mask loss
    assert score_t[2] == 0 and mask_w[2].sum() == 0 and mask_w[3].sum() == 0
    subset = pack_proposals(props, max_proposals=2, max_points=4, rng=np.random.default_rng(0))
    assert subset.valid.sum() == 8 and set(subset.source.tolist()) <= {0, 1, 2}


def test_finalize_applies_mask_score_and_size_thresholds():
    props = _props([list(range(0, 150)), list(range(0, 140)), list(range(200, 260)), list(range(300, 500))],
                   [2, 2, 3, 4])
    packed = pack_proposals(props, max_proposals=5)
    assert packed.index.shape == (5, 200)
    mask = np.ones((5, 200), np.float32)
    mask[3, :50] = 0.1                                  # the mask removes 50 points of proposal 3
    scores = np.array([0.8, 0.9, 0.9, 0.6, 0.0], np.float32)
    out = finalize_instances(props, packed, scores, mask, min_points=100)
    # 1 beats its duplicate 0; 2 is too small; 3 keeps the 150 masked-in points
    assert [(len(i.indices), i.label, i.score) for i in out] == [(140, 2, pytest.approx(0.9)), (150, 4, pytest.approx(0.6))]
    no_mask = finalize_instances(props, packed, scores, None, min_points=100)
    assert len(no_mask[1].indices) == 200
    assert finalize_instances(props, packed, scores, mask, score_threshold=0.95) == []
