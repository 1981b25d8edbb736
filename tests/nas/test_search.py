"""The supernet and one search iteration: kept-only evaluation, gradients of dropped ops, shared
masks, the alpha adjust inside the step, a falling loss on digits, exact resume, derived genotype."""
import json
import math

import numpy as np
import pytest
import mindspore as ms
from sklearn.datasets import load_digits

from mindcv_ext.models.darts import NetworkCIFAR, load_genotype, save_genotype
from mindcv_ext.nas import (MixedOp, SearchNetwork, SearchStep, derive_genotype, kept_softmax,
                            plot_alpha_shares, plot_genotype, search_lr, shares)


def _softmax(a):
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = (d.images[:32] / 16.0 - 0.5).astype(np.float32)[:, None].repeat(3, 1)
    return ms.Tensor(x), ms.Tensor(d.target[:32].astype(np.int32))


def _tiny(seed=0, **kw):
    # 4 cells: reductions at 1 and 2, so two cells of each type share a mask
    return SearchNetwork(num_classes=10, channels=4, layers=4, nodes=2, seed=seed, **kw)


def _edges(net, reduction):
    return [[e for e in cell.edges] for cell in net.layers if cell.reduction == reduction]


def test_kept_softmax_gradient_matches_formula():
    rng = np.random.default_rng(0)
    alpha = rng.standard_normal((3, 8)).astype(np.float32)
    mask = rng.random((3, 8)) > 0.4
    mask[:, 0] = True
    c = rng.standard_normal((3, 8)).astype(np.float32)   # g_o = <dL/dm, o(x)> for a linear loss
    fn = lambda a: (kept_softmax(a, ms.Tensor(mask.astype(np.float32))) * ms.Tensor(c)).sum()  # noqa: E731
    grad = ms.grad(fn)(ms.Tensor(alpha)).asnumpy()
    p = np.where(mask, np.exp(alpha), 0.0)
    p /= p.sum(1, keepdims=True)
    expected = p * (c - (p * c).sum(1, keepdims=True))
    np.testing.assert_allclose(grad, expected, atol=1e-6)
    assert (grad[~mask] == 0).all()


def test_dropped_ops_get_exactly_zero_gradient(digits):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = _tiny()
    step = SearchStep(net, drop_rate=0.3, seed=4)
    x, y = digits[0][:8], digits[1][:8]
    masks = {"normal": step.sampler.sample(2), "reduce": step.sampler.sample(2)}
    for m in masks["normal"] + masks["reduce"]:
        m[0, [1, 5]] = False   # make sure each group has a drop somewhere
    step.masks = masks
    (_, _), grads = step._ce_grad(x, y)
    g_w, g_a = step._split(grads)
    grad_of = {id(p): g.asnumpy() for p, g in zip(step.w_params, g_w)}
    dropped_checked = kept_nonzero = 0
    for reduction, kind in ((False, "normal"), (True, "reduce")):
        for cell_edges in _edges(net, reduction):
            k = 0
            for i, m in enumerate(masks[kind]):
                for j in range(i + 2):
                    edge = cell_edges[k]
                    k += 1
                    for o, op in enumerate(edge.candidates):
                        for p in op.trainable_params():
                            g = grad_of[id(p)]
                            if not m[j, o]:
                                assert np.all(g == 0), f"dropped {edge.op_names[o]} got a gradient"
                                dropped_checked += 1
                            elif np.any(g != 0):
                                kept_nonzero += 1
    assert dropped_checked > 0 and kept_nonzero > 0
    for g, m in zip(g_a, masks["normal"] + masks["reduce"]):
        g = g.asnumpy()
        assert np.all(g[~m] == 0)
        assert np.count_nonzero(g[m]) >= m.sum() - 2   # kept entries do get gradients ('none' too)


def test_step_shares_mask_and_keeps_kept_share(digits):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = _tiny(seed=1)
    step = SearchStep(net, drop_rate=0.3, alpha_lr=3e-2, seed=7)
    step.set_epoch(0, 10)
    a_before = sum(net.alpha_values(), [])
    step(*digits)
    masks = step.last["masks"]
    for reduction, kind in ((False, "normal"), (True, "reduce")):
        cells = _edges(net, reduction)
        assert len(cells) == 2
        flat = [tuple(m[j]) for m in masks[kind] for j in range(m.shape[0])]
        for cell_edges in cells:
            assert [e.last_kept for e in cell_edges] == flat
    assert any((~m).any() for m in masks["normal"] + masks["reduce"])
    a_after = sum(net.alpha_values(), [])
    for before, after, m in zip(a_before, a_after, masks["normal"] + masks["reduce"]):
        assert not np.allclose(before, after)  # the optimizers moved the alphas
        for e in range(m.shape[0]):
            if not m[e].all():
                share_before = (_softmax(before[e].astype(np.float64)) * m[e]).sum()
                share_after = (_softmax(after[e].astype(np.float64)) * m[e]).sum()
                assert share_after == pytest.approx(share_before, abs=1e-6)


def test_search_loss_falls_resumes_exactly_and_derives(digits, tmp_path):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    x, y = digits[0][:8], digits[1][:8]
    net = SearchNetwork(num_classes=10, channels=4, layers=3, nodes=2, seed=2)
    step = SearchStep(net, drop_rate=1e-2, w_lr=0.1, seed=3)
    step.set_epoch(0, 4)
    ce = []
    for _ in range(5):
        step(x, y)
        ce.append(step.last["ce"])
    assert np.mean(ce[-2:]) < np.mean(ce[:2]) - 0.05, ce
    assert 0 < step.last["weights_decayed"] <= len(step.w_params)

    step.save(str(tmp_path / "search.ckpt"))
    expected = step(x, y)
    expected_state = step.state_dict()

    other = SearchNetwork(num_classes=10, channels=4, layers=3, nodes=2, seed=9)
    resumed = SearchStep(other, drop_rate=1e-2, w_lr=0.1, seed=123)
    resumed.load(str(tmp_path / "search.ckpt"))
    assert resumed(x, y) == pytest.approx(expected, rel=1e-5)
    state = resumed.state_dict()
    np.testing.assert_array_equal(state["sampler.rng"], expected_state["sampler.rng"])
    for key, value in expected_state.items():
        # weights, BN statistics, both optimizers' moments. (Alpha entries whose gradient is ~0 are
        # left out: Adam divides by sqrt(v) ~ |g|, so float noise of 1e-7 there moves them visibly.)
        if not key.startswith("alpha_"):
            np.testing.assert_allclose(state[key], value, atol=1e-5, err_msg=key)

    genotype = derive_genotype(*net.alpha_values(), rule="alpha")
    save_genotype(genotype, str(tmp_path / "genotype.json"))
    assert json.load(open(tmp_path / "genotype.json"))["normal_concat"] == [2, 3]
    loaded = load_genotype(str(tmp_path / "genotype.json"))
    assert loaded == load_genotype(genotype._asdict())
    plot_genotype(loaded, str(tmp_path / "cells.png"))
    plot_alpha_shares([shares(*net.alpha_values()), shares(*other.alpha_values())], str(tmp_path / "share.png"))
    for name in ("cells.png", "share.png"):
        assert open(tmp_path / name, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    child = NetworkCIFAR(loaded, num_classes=10, channels=4, layers=3)
    child.set_train(False)
    assert child(x[:2]).shape == (2, 10)


def test_r_zero_is_plain_darts_and_schedule():
    tiny = lambda s: SearchNetwork(num_classes=10, channels=2, layers=3, nodes=1, seed=s)  # noqa: E731
    step = SearchStep(tiny(3), drop_rate=0.0, seed=0)
    assert all(m.all() for m in step.sampler.sample(4))
    lr0 = step.set_epoch(0, 76)
    assert lr0 == pytest.approx(0.0015 + (0.0375 - 0.0015) * (1 + math.cos(math.pi / 76)) / 2)
    assert search_lr(75, 76) == pytest.approx(0.0015)
    warm = SearchStep(tiny(4), drop_rate=0.5, warmup_epochs=2, seed=0)
    warm.set_epoch(1, 10)
    assert warm.in_warmup and all(m.all() for m in warm.sampler.sample(2))
    warm.set_epoch(2, 10)
    assert not warm.in_warmup


def test_mixed_op_runs_only_kept_ops():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    calls = []
    op = MixedOp(4, 1, ("sep_conv_3x3", "max_pool_3x3", "skip_connect", "none"))
    for name, cand in zip(op.op_names, op.candidates):
        cand.register_forward_hook(lambda c, i, o, _n=name: calls.append(_n))
    x = ms.Tensor(np.random.default_rng(0).standard_normal((1, 4, 6, 6)).astype(np.float32))
    w = [ms.Tensor(0.25, ms.float32)] * 4
    op(x, w, (False, True, True, True))
    assert calls == ["max_pool_3x3", "skip_connect"]
