import numpy as np
import mindspore as ms
import pytest
from mindspore import nn

import mindcv_ext
from mindcv_ext.models.maskgroup import example_inputs, masked_max
from mindcv_ext.seg3d import (MaskGroupLoss, hierarchical_grouping, make_room, offset_targets, pack_proposals,
                              proposal_targets)
from mindcv_ext.seg3d.graph import build_point_graph


def test_registered_and_shapes():
    assert {"maskgroup_tiny", "maskgroup_small", "maskgroup_base"} <= set(mindcv_ext.list_models("maskgroup_*"))
    net = mindcv_ext.create_model("maskgroup_tiny", num_classes=6, in_channels=6)
    net.set_train(False)
    sem, off, mask, score = net(*example_inputs(net, num_points=128, num_proposals=3, proposal_points=16))
    assert sem.shape == (128, 6) and off.shape == (128, 3) and mask.shape == (3, 16) and score.shape == (3,)
    with pytest.raises(ValueError, match="channels"):
        mindcv_ext.create_model("maskgroup_tiny", channels=())


def test_mask_score_ignores_padding():
    net = mindcv_ext.create_model("maskgroup_tiny", num_classes=6, in_channels=6)
    net.set_train(False)
    x = list(example_inputs(net, num_points=128, num_proposals=3, proposal_points=16))
    idx, valid = x[-2].asnumpy().copy(), x[-1].asnumpy()
    _, _, mask_a, score_a = net(*x)
    idx[valid == 0] = 0                                   # other points under the padding
    x[-2] = ms.Tensor(idx)
    _, _, mask_b, score_b = net(*x)
    np.testing.assert_allclose(score_a.asnumpy(), score_b.asnumpy(), rtol=1e-5, atol=1e-6)
    v = valid > 0
    np.testing.assert_allclose(mask_a.asnumpy()[v], mask_b.asnumpy()[v], rtol=1e-5, atol=1e-6)
    got = masked_max(ms.Tensor(np.array([[[1.0], [5.0]], [[2.0], [3.0]]], np.float32)),
                     ms.Tensor(np.array([[1, 0], [0, 0]], np.float32))).asnumpy()
    np.testing.assert_allclose(got, [[1.0], [0.0]])


def _tiny_batch():
    room = make_room(7, room_size=(2.0, 2.0, 1.0), num_objects=(2, 3), size_range=(0.3, 0.8), spacing=0.08,
                     background_spacing=0.15)
    coords, sem, inst = room["coords"], room["semantic"], room["instance"]
    graph = build_point_graph(coords, (0.2, 0.6), k=8)
    gt_off, off_valid = offset_targets(coords, inst)
    props = hierarchical_grouping(coords, gt_off, sem, sem > 1, min_points=5)
    props.indices.append(np.flatnonzero(sem > 1))         # an over-merged proposal, so the mask has work
    props.classes, props.levels = np.append(props.classes, 2), np.append(props.levels, 9)
    props.sources.append("shifted")
    packed = pack_proposals(props, max_proposals=8, max_points=64, rng=np.random.default_rng(0))
    score_t, mask_t, mask_w = proposal_targets(packed, props, inst)
    feats = np.concatenate([room["colors"], coords - coords.mean(0)], 1)
    arrays = ([feats] + list(graph.inputs()) + [packed.index, packed.valid, sem.astype(np.int32), gt_off, off_valid,
              score_t, packed.proposal_valid, mask_t, mask_w])
    return [ms.Tensor(a) for a in arrays], len(coords)


def test_forward_backward_and_loss_falls():
    ms.set_seed(0)
    batch, n = _tiny_batch()
    assert 200 < n < 1500
    net = mindcv_ext.create_model("maskgroup_tiny", num_classes=6, in_channels=6)
    loss_fn = MaskGroupLoss(net)
    opt = nn.Adam(net.trainable_params(), learning_rate=1e-2)
    grad_fn = ms.value_and_grad(loss_fn, None, opt.parameters)
    losses = []
    for step in range(5):
        loss, grads = grad_fn(*batch)
        if step == 0:
            norms = [float(np.abs(g.asnumpy()).sum()) for g in grads]
            assert np.isfinite(loss.asnumpy()) and all(np.isfinite(norms))
            names = [p.name for p, g in zip(opt.parameters, norms) if g == 0]
            assert not names, f"no gradient reaches {names}"
        opt(grads)
        losses.append(float(loss.asnumpy()))
    assert losses[-1] < 0.9 * losses[0], losses


def test_padded_graph_gives_the_same_outputs_on_real_points():
    from mindcv_ext.seg3d.graph import pad_graph
    rng = np.random.default_rng(3)
    coords = (rng.random((150, 3)) * 2).astype(np.float32)
    graph = build_point_graph(coords, (0.3, 0.9), k=8)
    sizes = [len(c) + 7 for c in graph.coords]
    padded, rows = pad_graph(graph, sizes)
    feats = rng.uniform(-1, 1, (150, 6)).astype(np.float32)
    net = mindcv_ext.create_model("maskgroup_tiny", num_classes=6, in_channels=6)
    net.set_train(False)
    ref = net.points(ms.Tensor(feats), *[ms.Tensor(a) for a in graph.inputs()])
    got = net.points(ms.Tensor(feats[rows]), *[ms.Tensor(a) for a in padded.inputs()])
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g.asnumpy()[:150], r.asnumpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="more than its padded size"):
        pad_graph(graph, [10] + sizes[1:])
