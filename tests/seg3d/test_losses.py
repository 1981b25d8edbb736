import numpy as np
import mindspore as ms
import pytest

from mindcv_ext.seg3d import (mask_loss, offset_direction_loss, offset_l1_loss, offset_targets, score_loss,
                              semantic_loss)


def _np_bce(x, t):
    p = 1 / (1 + np.exp(-x))
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


@pytest.fixture
def offsets():
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(40, 3))
    inst = rng.integers(-1, 4, 40)
    inst[inst < 0] = -100
    pred = rng.normal(size=(40, 3)).astype(np.float32)
    return coords, inst, pred


def test_offset_targets_are_instance_mean_minus_point(offsets):
    coords, inst, _ = offsets
    gt, valid = offset_targets(coords, inst)
    for i in range(len(coords)):
        if inst[i] == -100:
            assert valid[i] == 0 and np.all(gt[i] == 0)
        else:
            centre = coords[inst == inst[i]].mean(0)
            np.testing.assert_allclose(gt[i], centre - coords[i], rtol=1e-5, atol=1e-6)


def test_offset_losses_equal_numpy(offsets):
    coords, inst, pred = offsets
    gt, valid = offset_targets(coords, inst)
    v = valid.astype(bool)
    ref_l1 = np.abs(pred - gt)[v].sum() / v.sum()
    cos = [np.dot(p, g) / ((np.linalg.norm(p) + 1e-8) * (np.linalg.norm(g) + 1e-8)) for p, g in zip(pred[v], gt[v])]
    ref_dir = -np.sum(cos) / v.sum()
    args = [ms.Tensor(a) for a in (pred, gt, valid)]
    np.testing.assert_allclose(offset_l1_loss(*args).asnumpy(), ref_l1, rtol=1e-5)
    np.testing.assert_allclose(offset_direction_loss(*args).asnumpy(), ref_dir, rtol=1e-5)


def test_semantic_loss_ignores_label():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(10, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 10)
    labels[[2, 7]] = -100
    keep = labels != -100
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ref = -logp[keep, labels[keep]].mean()
    got = semantic_loss(ms.Tensor(logits), ms.Tensor(labels.astype(np.int32))).asnumpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_score_and_mask_bce_equal_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 5)).astype(np.float32) * 3
    t = rng.random((3, 5)).astype(np.float32)
    w = (rng.random((3, 5)) > 0.3).astype(np.float32)
    np.testing.assert_allclose(mask_loss(ms.Tensor(x), ms.Tensor(t), ms.Tensor(w)).asnumpy(),
                               (_np_bce(x, t) * w).sum() / w.sum(), rtol=1e-5)
    pv = np.array([1, 1, 0], np.float32)
    np.testing.assert_allclose(score_loss(ms.Tensor(x[:, 0]), ms.Tensor(t[:, 0]), ms.Tensor(pv)).asnumpy(),
                               (_np_bce(x[:, 0], t[:, 0]) * pv).sum() / 2, rtol=1e-5)
