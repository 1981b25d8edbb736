"""Grouping on procedural rooms: the oracle sanity check and HPG against single-radius BFS."""
import numpy as np
import pytest

from mindcv_ext.seg3d import (ROOM_INSTANCE_CLASSES, Instance, RoomScenes, evaluate_instances, hierarchical_grouping,
                              make_room, offset_targets, point_nms, single_radius_grouping)
from mindcv_ext.seg3d.graph import build_point_graph, concat_graphs
from mindcv_ext.seg3d.transforms import augment_scene, elastic_distortion, pool_by_voxel, random_linear_map, voxelize


def _noisy_offsets(room, fraction, rng):
    """GT offsets + Gaussian noise with std ``fraction`` x the object's largest extent."""
    off, _ = offset_targets(room["coords"], room["instance"])
    for iid in np.unique(room["instance"][room["instance"] >= 0]):
        m = room["instance"] == iid
        off[m] += rng.normal(0, fraction * np.ptp(room["coords"][m], 0).max(), (m.sum(), 3))
    return off


def _ap(rooms, group, fraction):
    """AP of grouping with GT semantics; score = proposal size / largest (no oracle), NMS 0.3."""
    scenes = []
    for seed, room in rooms:
        off = _noisy_offsets(room, fraction, np.random.default_rng(seed))
        props = group(room["coords"], off, room["semantic"], room["semantic"] > 1, min_points=20)
        scores = props.sizes / max(props.sizes.max(), 1) if len(props) else np.zeros(0)
        keep = point_nms(props.indices, scores, 0.3)
        scenes.append(([Instance(props.indices[k], props.classes[k], scores[k]) for k in keep],
                       room["semantic"], room["instance"]))
    return evaluate_instances(scenes, ROOM_INSTANCE_CLASSES, min_region_size=20)


@pytest.fixture(scope="module")
def rooms():
    return [(s, make_room(500 + s)) for s in range(6)]


def test_rooms_have_labels_and_scales():
    room = make_room(3)
    assert room["coords"].shape == room["colors"].shape and room["coords"].dtype == np.float32
    assert set(np.unique(room["semantic"])) <= set(range(6)) and {0, 1} <= set(np.unique(room["semantic"]))
    assert np.all(room["instance"][room["semantic"] <= 1] == -100) and np.all(room["instance"][room["semantic"] > 1] >= 0)
    for iid in np.unique(room["instance"][room["instance"] >= 0]):
        assert len(np.unique(room["semantic"][room["instance"] == iid])) == 1
    assert np.all(np.abs(room["colors"]) <= 1)
    np.testing.assert_array_equal(make_room(3)["coords"], room["coords"])   # seeded
    extents = [np.ptp(r["coords"][r["instance"] == i], 0).max() for r in RoomScenes(4, seed=10)
               for i in np.unique(r["instance"][r["instance"] >= 0])]
    assert min(extents) < 0.5 and max(extents) > 1.0                       # multi-scale objects


def test_oracle_semantics_and_offsets_give_ap50_one(rooms):
    res = _ap(rooms, hierarchical_grouping, 0.0)
    assert res["ap50"] > 0.99 and res["ap25"] > 0.99


def test_hpg_beats_single_radius_under_offset_noise(rooms):
    # calibration (seeds 500-505 and 506-511, noise 0.15 x object extent): HPG 0.90 / 0.85 AP50,
    # single radius 0.23 / 0.14; asserted margin 0.4
    hpg = _ap(rooms, hierarchical_grouping, 0.15)["ap50"]
    single = _ap(rooms, single_radius_grouping, 0.15)["ap50"]
    assert hpg > single + 0.4, (hpg, single)


def test_voxelize_and_pool():
    coords = np.array([[0.01, 0.01, 0.01], [0.02, 0.03, 0.04], [0.11, 0.0, 0.0]])
    voxels, inverse, counts = voxelize(coords, 0.05)
    assert len(voxels) == 2 and counts.tolist() == [2, 1] and inverse[0] == inverse[1] != inverse[2]
    np.testing.assert_allclose(pool_by_voxel(coords, inverse)[inverse[0]], coords[:2].mean(0), rtol=1e-6)
    with pytest.raises(ValueError, match="voxel_size"):
        voxelize(coords, 0)


def test_augmentations():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(200, 3))
    m = random_linear_map(rng, jitter=False, flip=True, rotate=True)
    d = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.testing.assert_allclose(d(pts @ m), d(pts), atol=1e-9)         # flip + rotation are isometries
    np.testing.assert_allclose((pts @ m)[:, 2], pts[:, 2])             # z is kept
    warped = elastic_distortion(pts, 0.5, 0.2, rng)
    moved = np.linalg.norm(warped - pts, axis=1)
    assert 0 < moved.mean() < 0.2
    near = np.linalg.norm(pts[:, None] - pts[None], axis=-1) < 0.05    # a smooth field: neighbours move alike
    pair_moves = np.linalg.norm((warped - pts)[:, None] - (warped - pts)[None], axis=-1)[near]
    assert pair_moves.mean() < 0.5 * moved.mean()
    aug = augment_scene(pts, rng)
    assert aug.shape == pts.shape and aug.min() == pytest.approx(0.0, abs=1e-6)


def test_point_graph_and_batching():
    rng = np.random.default_rng(1)
    a, b = rng.random((300, 3)) * 2, rng.random((120, 3))
    ga, gb = build_point_graph(a, (0.3, 0.9), k=8), build_point_graph(b, (0.3, 0.9), k=8)
    assert [len(c) for c in ga.coords][0] == 300 and len(ga.coords[2]) < len(ga.coords[1]) < 300
    np.testing.assert_array_equal(ga.knn[0][:, 0], np.arange(300))          # itself first
    for lvl in (1, 2):                                                      # each point maps into its voxel centre
        fine, coarse = ga.coords[lvl - 1], ga.coords[lvl]
        size = (0.3, 0.9)[lvl - 1]
        assert np.all(np.floor(fine / size) == np.floor(coarse[ga.unpool[lvl - 1]] / size))
    assert ga.knn[2].shape[1] == 8                                          # repeated when fewer than k
    both = concat_graphs([ga, gb])
    assert len(both.coords[0]) == 420 and both.knn[0][300:].min() == 300
    np.testing.assert_array_equal(both.unpool[0][300:], gb.unpool[0] + len(ga.coords[1]))
    assert len(ga.inputs()) == 3 + 3 + 2 + 2
