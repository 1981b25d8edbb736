"""Grouped operation dropout, alpha adjust, genotype derivation (NumPy, no graphs).

Reference numbers: DropNAS paper / official code (wiljohnhong/DropNAS), p = r^(1/4):
r = 3e-5 -> p = 0.0740, 7.41 kept ops per edge on average, 46% of edges drop something.
"""
import math

import numpy as np
import pytest

from mindcv_ext.nas import (SPACES, MaskSampler, SearchSpaceError, adjust_alphas, derive_genotype,
                            edge_kept_ratios, parametric_share)


def _softmax(a):
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("r_p,r_np", [(3e-5, 3e-5), (1e-5, 1e-4), (0.05, 0.2)])
def test_drop_statistics_match_p(r_p, r_np):
    sampler = MaskSampler("original", r_p, r_np, seed=0)
    masks = np.concatenate([m for _ in range(400) for m in sampler.sample(4)])  # 400 x 14 edges
    n = masks.shape[0]
    for group, r in ((range(0, 4), r_p), (range(4, 8), r_np)):
        p = r ** 0.25
        # a group is redrawn when empty: the drop rate of one op given the group is not all dropped
        p_cond = (p - p ** 4) / (1 - p ** 4)
        dropped = (~masks[:, list(group)]).mean()
        sigma = math.sqrt(p_cond * (1 - p_cond) / (n * 4))
        assert abs(dropped - p_cond) < 5 * sigma + 1e-4
        assert masks[:, list(group)].any(1).all()  # never an empty group


def test_paper_numbers_for_r_3e5():
    sampler = MaskSampler("original", 3e-5, seed=1)
    assert sampler.drop_probs[0] == pytest.approx(0.0740, abs=1e-4)
    masks = np.concatenate([m for _ in range(3000) for m in sampler.sample(4)])
    assert masks.sum(1).mean() == pytest.approx(7.41, abs=0.02)
    assert (~masks).any(1).mean() == pytest.approx(0.46, abs=0.015)


def test_group_never_empty_at_high_rate():
    sampler = MaskSampler("1-skip", 0.9, 0.9, seed=3)
    assert sampler.groups == ((0, 1, 2, 3), (4, 5))
    assert sampler.drop_probs[1] == pytest.approx(0.9 ** 0.5)  # exponent = true group size
    for m in (m for _ in range(300) for m in sampler.sample(4)):
        assert m[:, :4].any(1).all() and m[:, 4:].any(1).all()
    assert MaskSampler("1-skip", 0.9, 0.9, exponent_sizes=(4, 4)).drop_probs[1] == pytest.approx(0.9 ** 0.25)


def test_zero_rate_keeps_everything_and_state_roundtrip():
    assert all(m.all() for m in MaskSampler("original", 0.0, seed=0).sample(4))
    a = MaskSampler("original", 0.3, seed=5)
    a.sample(4)
    b = MaskSampler("original", 0.3, seed=99)
    b.set_state(a.get_state())
    for x, y in zip(a.sample(4), b.sample(4)):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(SearchSpaceError):
        MaskSampler("original", 1.5)
    with pytest.raises(SearchSpaceError):
        MaskSampler("no-such-space")


def test_spaces():
    assert SPACES["original"].ops[:4] == ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    assert SPACES["original"].ops[4:] == ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "none")
    assert SPACES["3-skip"].ops.count("skip_connect") == 3 and len(SPACES["3-skip"].ops) == 8
    assert "max_pool_3x3" not in SPACES["1-skip"].ops and len(SPACES["1-skip"].ops) == 6


def test_alpha_adjust_restores_kept_share():
    rng = np.random.default_rng(0)
    before = rng.standard_normal((5, 8))
    mask = rng.random((5, 8)) > 0.3
    mask[:, 0] = mask[:, 4] = True
    mask[2] = True  # an edge without drops is left alone
    ratio = edge_kept_ratios(before, mask)
    np.testing.assert_allclose(ratio, (_softmax(before) * mask).sum(1))
    after_step = before + 0.3 * rng.standard_normal((5, 8))  # an optimizer moved every entry
    adjusted = adjust_alphas(after_step, mask, ratio)
    np.testing.assert_allclose((_softmax(adjusted) * mask).sum(1), ratio, atol=1e-6)
    np.testing.assert_array_equal(adjusted[~mask], after_step[~mask])  # dropped alphas untouched
    np.testing.assert_array_equal(adjusted[2], after_step[2])
    # the kept ops' internal distribution is the updated one
    kept = mask[0]
    np.testing.assert_allclose(_softmax(adjusted[0][kept]), _softmax(after_step[0][kept]), rtol=1e-9)


def _alphas(values_per_node):
    return [np.array(v, np.float64) for v in values_per_node]


def test_genotype_rules_on_hand_set_alphas():
    # ops: sep3 sep5 dil3 dil5 max avg skip none
    node0 = [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 5.0],    # edge 0: raw best non-none = skip 1.0; softmax tiny
             [0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]    # edge 1: sep3 0.9, softmax share larger
    node1 = [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
             [0.0, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, -3.0],
             [0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0]]
    node2 = [[0.0] * 8, [0.0] * 8, [2.0] + [0.0] * 7, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.5]]
    node3 = [[0.0] * 8, [0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0], [0.0] * 8, [0.0] * 8,
             [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]
    alphas = _alphas([node0, node1, node2, node3])
    g_alpha = derive_genotype(alphas, alphas, rule="alpha")
    g_soft = derive_genotype(alphas, alphas, rule="softmax")
    assert g_alpha.normal[0] == [("skip_connect", 0), ("sep_conv_3x3", 1)]
    assert g_soft.normal[0] == [("sep_conv_3x3", 1), ("skip_connect", 0)]  # softmax of edge 0 is diluted by none
    # node 1: edge 2 strongest (dil5); edge 1 (sep5 0.2) beats edge 0 (all 0, first index sep3) under both rules
    assert g_alpha.normal[1] == [("dil_conv_5x5", 2), ("sep_conv_5x5", 1)]
    assert g_soft.normal[1] == [("dil_conv_5x5", 2), ("sep_conv_5x5", 1)]
    # node 2: raw: edge 2 (sep3 2.0) then edge 0 (tie 0.0, lowest index); softmax: edge 3's none (2.5) shrinks
    # its other entries below edge 0/1's uniform 1/8, so edge 3 ranks last
    assert g_alpha.normal[2] == [("sep_conv_3x3", 2), ("sep_conv_3x3", 0)]
    assert g_soft.normal[2] == [("sep_conv_3x3", 2), ("sep_conv_3x3", 0)]
    assert g_alpha.normal[3] == [("dil_conv_3x3", 4), ("max_pool_3x3", 1)]
    assert g_alpha.normal_concat == [2, 3, 4, 5] and g_alpha.reduce == g_alpha.normal
    with pytest.raises(SearchSpaceError):
        derive_genotype(alphas, alphas, rule="argmax")
    with pytest.raises(SearchSpaceError):
        derive_genotype([np.zeros((3, 8))], [np.zeros((3, 8))])


def test_parametric_share():
    uniform = [np.zeros((i + 2, 8)) for i in range(4)]
    assert parametric_share(uniform) == pytest.approx(0.5)
    assert parametric_share([np.zeros((2, 6))], "1-skip") == pytest.approx(4 / 6)
    skewed = [np.array([[1.0, 0, 0, 0, 0, 0, 0, 0], [0.0] * 8])]
    e = math.e
    assert parametric_share(skewed) == pytest.approx(((e + 3) / (e + 7) + 0.5) / 2)
