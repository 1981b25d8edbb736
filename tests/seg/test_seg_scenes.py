"""Generated RGB-D scenes (ambiguity and corruption by construction) and a few training steps of a
tiny TokenFusion on them."""
import numpy as np
import pytest
import mindspore as ms

import mindcv_ext
from mindcv_ext.seg.loss import TokenFusionLoss
from mindcv_ext.seg.scenes import CLASSES, DEPTH_SCALE, NUM_CLASSES, SceneConfigError, render_scenes

ms.set_context(mode=ms.PYNATIVE_MODE)


@pytest.fixture(scope="module")
def scenes():
    return render_scenes(12, 64, seed=5, corrupt_prob=0.8)


def test_shapes_seed_and_classes(scenes):
    assert scenes["rgb"].shape == (12, 3, 64, 64) and scenes["depth"].shape == (12, 3, 64, 64)
    assert scenes["mask"].shape == (12, 64, 64) and scenes["mask"].dtype == np.int32
    assert set(np.unique(scenes["mask"])) == set(range(NUM_CLASSES)) and CLASSES[2] == "poster"
    again = render_scenes(12, 64, seed=5, corrupt_prob=0.8)
    for k in scenes:
        np.testing.assert_array_equal(again[k], scenes[k])
    assert 0 <= scenes["rgb"].min() and scenes["rgb"].max() <= 1
    np.testing.assert_array_equal(scenes["depth"][:, 0], scenes["depth"][:, 2])


def test_posters_only_differ_from_the_wall_in_colour(scenes):
    for i in range(12):
        d, m = scenes["depth_m"][i], scenes["mask"][i]
        wall, poster = d[m == 1], d[m == 2]
        if poster.size:
            assert np.ptp(wall) == 0 and np.all(poster == wall[0])
            rgb = scenes["rgb"][i].transpose(1, 2, 0)
            clean = ~scenes["rgb_corrupt"][i]
            assert np.abs(rgb[(m == 2) & clean].mean(0) - rgb[(m == 1) & clean].mean(0)).max() > 0.1


def test_floor_and_wall_only_differ_in_depth(scenes):
    # one albedo for both (RGB differs only by the smooth illumination); in depth the floor recedes
    # row by row while the wall is one constant plane; the floor-wall edge moves with the camera height
    edges = set()
    for i in range(12):
        d, m = scenes["depth_m"][i], scenes["mask"][i]
        rgb = scenes["rgb"][i].transpose(1, 2, 0)
        clean = ~scenes["rgb_corrupt"][i]
        rows = [r for r in range(64) if (m[r] == 0).sum() >= 2]
        r0 = rows[0]  # first floor row: the wall is right above it; no colour edge between them
        cols = (m[r0] == 0) & (m[r0 - 1] == 1) & clean[r0] & clean[r0 - 1]
        if cols.sum() >= 4:
            assert np.abs(rgb[r0, cols].mean(0) - rgb[r0 - 1, cols].mean(0)).max() < 0.05
        assert np.ptp([d[r][m[r] == 0].mean() for r in rows]) > 1.0 and np.ptp(d[m == 1]) == 0
        edges.add(rows[0])
    assert len(edges) > 2


def test_boxes_are_flat_and_cylinders_curved_in_depth(scenes):
    # along one image row, a box's depth is constant; a cylinder's depth varies (front-most at its axis)
    flat, curved = [], []
    for i in range(12):
        d, m = scenes["depth_m"][i], scenes["mask"][i]
        for cls, out in ((3, flat), (4, curved)):
            rows = [r for r in range(64) if (m[r] == cls).sum() >= 6]
            for r in rows[:1]:
                out.append(np.ptp(d[r][m[r] == cls]))
    assert flat and curved
    assert np.median(curved) > 5 * max(np.median(flat), 1e-6)


def test_corruption_masks_mark_holes_and_overexposure():
    clean = render_scenes(3, 64, seed=2, corrupt_prob=0.0)
    bad = render_scenes(3, 64, seed=2, corrupt_prob=1.0)
    np.testing.assert_array_equal(clean["mask"][0], bad["mask"][0])  # labels untouched
    assert not clean["rgb_corrupt"].any() and not clean["depth_corrupt"].any()
    assert bad["rgb_corrupt"].any() and bad["depth_corrupt"].any()
    assert np.all(bad["depth"][:, 0][bad["depth_corrupt"]] == 0)
    assert np.all(bad["depth"][:, 0][~bad["depth_corrupt"]] > 0.5 / DEPTH_SCALE)
    assert bad["rgb"].transpose(0, 2, 3, 1)[bad["rgb_corrupt"]].min() > 0.85
    with pytest.raises(SceneConfigError, match="multiple of 32"):
        render_scenes(2, 40)


def test_tiny_tokenfusion_loss_falls_on_scenes():
    data = render_scenes(8, 32, seed=0)
    ms.set_seed(0)
    net = mindcv_ext.create_model("tokenfusion_mit_tiny", num_classes=NUM_CLASSES, drop_path_rate=0.0)
    net.set_train(True)
    loss_cell = TokenFusionLoss(lamda=1e-4)
    opt = ms.nn.Adam(net.trainable_params(), learning_rate=3e-3)
    assert any(p.name == "alpha" for p in opt.parameters)  # the ensemble weights are trained

    def forward(rgb, depth, mask):
        return loss_cell(net(rgb, depth), mask)

    step = ms.value_and_grad(forward, None, opt.parameters)
    alpha0 = net.alpha.asnumpy().copy()
    losses = []
    for i in range(4):
        sl = slice(4 * (i % 2), 4 * (i % 2) + 4)
        loss, grads = step(ms.Tensor(data["rgb"][sl]), ms.Tensor(data["depth"][sl]), ms.Tensor(data["mask"][sl]))
        opt(grads)
        losses.append(float(loss.asnumpy()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2]), losses
    assert np.abs(net.alpha.asnumpy() - alpha0).max() > 0
