import numpy as np
import pytest

from mindcv_ext.seg3d import GroupingError, ball_query_components, hierarchical_grouping, single_radius_grouping


def _sphere(rng, centre, radius, n):
    v = rng.normal(size=(n, 3))
    return centre + radius * v / np.linalg.norm(v, axis=1, keepdims=True)


def _as_sets(proposals):
    return {frozenset(p.tolist()) for p in proposals.indices}


def test_touching_spheres_of_different_classes_never_merge():
    rng = np.random.default_rng(0)
    a = _sphere(rng, np.zeros(3), 0.3, 800)
    b = _sphere(rng, np.array([0.6, 0, 0]), 0.3, 800)    # surfaces touch at x = 0.3
    pts = np.concatenate([a, b])
    sem = np.repeat([2, 3], 800)
    # radii large enough to swallow both spheres at every level
    props = hierarchical_grouping(pts, None, sem, np.ones(1600, bool), radius=0.1, levels=3, growth=3.0, min_points=1)
    for p in props.indices:
        assert len(np.unique(sem[p])) == 1
    assert frozenset(range(800)) in _as_sets(props) and frozenset(range(800, 1600)) in _as_sets(props)
    # the same geometry with one class does merge: the rule, not the geometry, kept them apart
    same = ball_query_components(pts, np.full(1600, 2), 0.1)
    assert len(np.unique(same)) == 1


def test_fragments_merge_at_a_higher_level_and_all_levels_are_returned():
    rng = np.random.default_rng(1)
    # a large object: its shifted points form 4 tight fragments 0.12 m apart (offset errors)
    frag_centres = np.array([[0, 0, 0], [0.12, 0, 0], [0, 0.12, 0], [0.12, 0.12, 0]])
    frags = [c + rng.normal(0, 0.003, (60, 3)) for c in frag_centres]
    # a small separate object of the same class, 1 m away
    small = np.array([1.0, 0, 0]) + rng.normal(0, 0.003, (60, 3))
    pts = np.concatenate(frags + [small])
    sem = np.full(len(pts), 2)
    props = hierarchical_grouping(pts, np.zeros_like(pts), sem, np.ones(len(pts), bool), radius=0.03, levels=3,
                                  growth=2.5, min_points=50)
    sets = _as_sets(props)
    for f in range(4):                               # level 0: the four fragments and the small object
        assert frozenset(range(60 * f, 60 * f + 60)) in sets
    assert frozenset(range(240, 300)) in sets
    whole = frozenset(range(240))
    assert whole in sets                             # merged at a higher level
    level_of = {frozenset(p.tolist()): lvl for p, lvl in zip(props.indices, props.levels)}
    assert level_of[whole] >= 1 and level_of[frozenset(range(60))] == 0
    assert len(sets) == len(props)                   # no group is repeated across levels
    # single radius (PointGroup) only ever sees the fragments
    single = _as_sets(single_radius_grouping(pts, np.zeros_like(pts), sem, np.ones(len(pts), bool), min_points=50))
    assert whole not in single and len(single) == 5


def test_size_adaptive_radius_keeps_small_groups_apart():
    rng = np.random.default_rng(2)
    big = [c + rng.normal(0, 0.003, (200, 3)) for c in ([0, 0, 0], [0.2, 0, 0])]
    tiny = [c + rng.normal(0, 0.003, (10, 3)) for c in ([2, 0, 0], [2.2, 0, 0])]
    pts = np.concatenate(big + tiny)
    sem = np.full(len(pts), 2)
    kw = dict(radius=0.03, levels=1, growth=8.0, min_points=10)
    fixed = _as_sets(hierarchical_grouping(pts, None, sem, np.ones(len(pts), bool), **kw))
    adaptive = _as_sets(hierarchical_grouping(pts, None, sem, np.ones(len(pts), bool), adaptive_exponent=1.0, **kw))
    assert frozenset(range(400)) in fixed and frozenset(range(400, 420)) in fixed
    assert frozenset(range(400)) in adaptive and frozenset(range(400, 420)) not in adaptive


def test_dual_set_adds_clusters_on_original_coordinates():
    rng = np.random.default_rng(3)
    pts = np.concatenate([rng.normal(0, 0.004, (80, 3)), rng.normal(0, 0.004, (80, 3)) + [0.5, 0, 0]])
    sem = np.full(160, 2)
    off = np.zeros_like(pts)
    off[80:] = [-0.5, 0, 0]                          # wrong offsets pull the two objects together
    shifted = hierarchical_grouping(pts, off, sem, np.ones(160, bool), levels=0, min_points=50)
    dual = hierarchical_grouping(pts, off, sem, np.ones(160, bool), levels=0, min_points=50, dual_set=True)
    assert _as_sets(shifted) == {frozenset(range(160))}
    assert _as_sets(dual) == {frozenset(range(160)), frozenset(range(80)), frozenset(range(80, 160))}
    assert sorted(dual.sources) == ["original", "original", "shifted"]


def test_background_is_left_out_and_bad_input_is_rejected():
    pts = np.random.default_rng(4).normal(0, 0.01, (100, 3))
    sem = np.full(100, 2)
    fg = np.zeros(100, bool)
    fg[:60] = True
    props = hierarchical_grouping(pts, None, sem, fg, min_points=10)
    assert all(p.max() < 60 for p in props.indices)
    with pytest.raises(GroupingError, match="offsets must have shape"):
        hierarchical_grouping(pts, np.zeros((99, 3)), sem, fg)
    with pytest.raises(GroupingError, match="NaN"):
        ball_query_components(np.full((3, 3), np.nan), np.zeros(3), 0.1)
    with pytest.raises(GroupingError, match="radius"):
        ball_query_components(pts, sem, 0.0)
