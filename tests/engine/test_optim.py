"""AdamW against a NumPy AdamW (torch.optim.AdamW's update), the old MindSpore form under its own
name, delayed groups, and per-group gradient clipping against NumPy (PyNative and compiled)."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Parameter, Tensor

from mindcv_ext.engine.optim import (OPTIMIZERS, AdamW, check_group_clip, clip_by_group, create_optimizer,
                                     param_group_ids, param_groups)

B1, B2, EPS = 0.9, 0.999, 1e-8
STEPS = 6


def _grads(seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((3, 4)), rng.standard_normal((4,)) * 10.0) for _ in range(STEPS)]


def _np_adamw(p, grads, lrs, wd, start=0, bias_correction=True):
    """Textbook AdamW (decoupled decay p *= 1 - lr*wd, then the bias-corrected Adam step) in float64;
    without bias correction: MindSpore's AdamWeightDecay form p -= lr * (m / (sqrt(v) + eps) + wd * p)."""
    p = np.array(p, np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for step, (g, lr) in enumerate(zip(grads, lrs), 1):
        if step <= start:
            continue
        t = step - start
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        if bias_correction:
            p = p * (1 - lr * wd)
            p = p - lr * (m / (1 - B1 ** t)) / (np.sqrt(v / (1 - B2 ** t)) + EPS)
        else:
            p = p - lr * (m / (np.sqrt(v) + EPS) + wd * p)
    return p


def _params():
    rng = np.random.default_rng(1)
    w0, b0 = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((4,)).astype(np.float32)
    return (Parameter(Tensor(w0), name="w"), Parameter(Tensor(b0), name="b")), w0, b0


def _run(opt, params, grads):
    for gw, gb in grads:
        opt((Tensor(gw.astype(np.float32)), Tensor(gb.astype(np.float32))))
    return [p.asnumpy() for p in params]


def test_optimizer_names():
    assert OPTIMIZERS == ("sgd", "momentum", "adamw", "adamw_nobias", "adam", "rmsprop")
    with pytest.raises(ValueError, match="unknown optim.name 'lamb'"):
        create_optimizer("lamb", [], 0.1)


@pytest.mark.parametrize("steps", [1, STEPS])
def test_adamw_matches_numpy_adamw(steps):
    (w, b), w0, b0 = _params()
    lrs = [0.01 * (1 + i) for i in range(STEPS)]
    wd = 0.05
    groups = param_groups([w, b], wd, True, lrs)  # w decays, b (1-D) does not
    opt = create_optimizer("adamw", groups, lrs, betas=(B1, B2), eps=EPS)
    assert isinstance(opt, AdamW)
    grads = _grads()[:steps]
    got_w, got_b = _run(opt, (w, b), grads)
    np.testing.assert_allclose(got_w, _np_adamw(w0, [g[0] for g in grads], lrs, wd), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_b, _np_adamw(b0, [g[1] for g in grads], lrs, 0.0), rtol=1e-5, atol=1e-6)


def test_first_adamw_step_is_lr_times_sign():
    """With bias correction the first update is lr * g / (|g| + eps), about lr for every entry
    (MindSpore's AdamWeightDecay moves by lr * (1 - b1) / sqrt(1 - b2) = 3.16 lr instead)."""
    (w, b), w0, b0 = _params()
    g = _grads()[:1]
    for name, factor in (("adamw", 1.0), ("adamw_nobias", (1 - B1) / np.sqrt(1 - B2))):
        (w, b), w0, b0 = _params()
        opt = create_optimizer(name, [{"params": [w, b], "weight_decay": 0.0}], 0.01)
        got_w, _ = _run(opt, (w, b), g)
        np.testing.assert_allclose(np.abs(got_w - w0), 0.01 * factor, rtol=1e-4)


def test_adamw_nobias_keeps_mindspore_form():
    (w, b), w0, b0 = _params()
    lrs = [0.01] * STEPS
    opt = create_optimizer("adamw_nobias", param_groups([w, b], 0.05, True, lrs), lrs, betas=(B1, B2), eps=EPS)
    grads = _grads()
    got_w, got_b = _run(opt, (w, b), grads)
    np.testing.assert_allclose(got_w, _np_adamw(w0, [g[0] for g in grads], lrs, 0.05, bias_correction=False),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_b, _np_adamw(b0, [g[1] for g in grads], lrs, 0.0, bias_correction=False),
                               rtol=1e-5, atol=1e-6)


def test_frozen_steps_group_acts_as_a_late_optimizer():
    """The SNN-MLP LIF optimizer first steps in epoch 1: parameters and moments untouched before,
    its own bias-correction count from its first step; its lr schedule still follows the global step."""
    (w, b), w0, b0 = _params()
    lrs = [0.01 * (1 + i) for i in range(STEPS)]
    lif_lrs = [0.001 * (1 + i) for i in range(STEPS)]
    groups = [{"params": [w], "weight_decay": 0.05, "lr": lrs},
              {"params": [b], "weight_decay": 0.0, "lr": lif_lrs, "frozen_steps": 2}]
    opt = create_optimizer("adamw", groups, lrs, betas=(B1, B2), eps=EPS)
    grads = _grads()
    got_w, got_b = _run(opt, (w, b), grads)
    np.testing.assert_allclose(got_w, _np_adamw(w0, [g[0] for g in grads], lrs, 0.05), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_b, _np_adamw(b0, [g[1] for g in grads], lif_lrs, 0.0, start=2),
                               rtol=1e-5, atol=1e-6)
    (w, b), _, b0 = _params()
    opt = create_optimizer("adamw", groups[:1] + [dict(groups[1], params=[b])], lrs)
    _run(opt, (w, b), grads[:2])
    np.testing.assert_array_equal(b.asnumpy(), b0)


def test_frozen_steps_errors():
    (w, b), _, _ = _params()
    with pytest.raises(ValueError, match="frozen_steps needs optim.name 'adamw'"):
        create_optimizer("sgd", [{"params": [w], "frozen_steps": 3}], 0.1)
    with pytest.raises(ValueError, match="frozen_steps must be a non-negative int"):
        AdamW([{"params": [w], "frozen_steps": -1}])
    with pytest.raises(ValueError, match="beta1"):
        AdamW([w], beta1=1.0)


# ------------------------------------------------------------------ per-group clipping
def _np_clip(grads, ids, norms):
    out = [np.array(g, np.float64) for g in grads]
    for k, norm in enumerate(norms):
        members = [i for i, gid in enumerate(ids) if gid == k]
        if norm is None or not members:
            continue
        total = np.sqrt(sum(np.sum(out[i] ** 2) for i in members))
        coef = min(1.0, norm / (total + 1e-6))
        for i in members:
            out[i] = out[i] * coef
    return out


@pytest.mark.parametrize("compiled", [False, True])
def test_clip_by_group_matches_numpy(compiled):
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal((4, 3)) * 3, rng.standard_normal((5,)), rng.standard_normal((1,)) * 50,
             rng.standard_normal((1,)) * 40, rng.standard_normal((2, 2)) * 0.01]
    ids = (0, 0, 1, 1, 2)
    norms = (5.0, 5.0, 5.0)  # group 2 is below its norm: unchanged

    def fn(*gs):
        return clip_by_group(gs, ids, norms)

    fn = ms.jit(fn) if compiled else fn
    got = fn(*[Tensor(g.astype(np.float32)) for g in grads])
    want = _np_clip(grads, ids, norms)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.asnumpy(), w, rtol=1e-5, atol=1e-7)
    # each clipped group ends at its own norm; clipping all together would shrink group 0 far more
    assert np.sqrt(sum(np.sum(got[i].asnumpy() ** 2) for i in (0, 1))) == pytest.approx(5.0, rel=1e-5)
    joint = _np_clip(grads, (0,) * 5, (5.0,))
    assert np.linalg.norm(joint[0]) < 0.5 * np.linalg.norm(got[0].asnumpy())


def test_clip_by_group_none_leaves_a_group_alone():
    grads = (Tensor(np.full((3,), 10.0, np.float32)), Tensor(np.full((2,), 10.0, np.float32)))
    out = clip_by_group(grads, (0, 1), (1.0, None))
    np.testing.assert_allclose(np.linalg.norm(out[0].asnumpy()), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out[1].asnumpy(), grads[1].asnumpy())


def test_param_group_ids_and_checks():
    params = [Parameter(Tensor(np.zeros(1, np.float32)), name=n)
              for n in ("layers.0.blocks.0.lif_module.lif1.tau", "head.weight",
                        "layers.0.blocks.0.lif_module.lif2.Vth")]
    ids = param_group_ids(params, [lambda n: n.rsplit(".", 1)[-1] in ("tau", "Vth")])
    assert ids == (1, 0, 1)
    check_group_clip(ids, (5.0, 5.0))
    with pytest.raises(ValueError, match=r"group ids \[1\] have no clip norm"):
        check_group_clip(ids, (5.0,))
    with pytest.raises(ValueError, match="positive or None"):
        check_group_clip(ids, (5.0, 0.0))


def test_adamw_compiles_inside_a_train_step():
    """The trainer compiles its step (``ms.jit``): the same numbers as the NumPy reference there."""
    (w, b), w0, b0 = _params()
    lrs = [0.01 * (1 + i) for i in range(3)]
    groups = [{"params": [w], "weight_decay": 0.05, "lr": lrs},
              {"params": [b], "weight_decay": 0.0, "lr": lrs, "frozen_steps": 1}]
    opt = create_optimizer("adamw", groups, lrs, betas=(B1, B2), eps=EPS)
    step = ms.jit(opt.construct)
    grads = _grads()[:3]
    for gw, gb in grads:
        step((Tensor(gw.astype(np.float32)), Tensor(gb.astype(np.float32))))
    np.testing.assert_allclose(w.asnumpy(), _np_adamw(w0, [g[0] for g in grads], lrs, 0.05), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.asnumpy(), _np_adamw(b0, [g[1] for g in grads], lrs, 0.0, start=1),
                               rtol=1e-5, atol=1e-6)


def test_group_clipped_step_compiles_with_a_late_group():
    """The SNN-MLP step: main weights and a LIF-like scalar clipped separately (norm 5 each), the
    scalar's AdamW group starting after the first "epoch"; compiled and PyNative runs agree."""
    from mindspore import nn, ops

    class Net(nn.Cell):
        def __init__(self):
            super().__init__()
            self.dense = nn.Dense(4, 3)
            self.tau = Parameter(Tensor(np.array([0.25], np.float32)), name="tau")

        def construct(self, x):
            return self.dense(x) * self.tau * 40.0

    class Step(nn.TrainOneStepCell):
        def __init__(self, net_with_loss, optimizer, ids):
            super().__init__(net_with_loss, optimizer)
            self.ids = ids

        def construct(self, x, y):
            loss = self.network(x, y)
            grads = self.grad(self.network, self.weights)(x, y, ops.ones_like(loss))
            self.optimizer(clip_by_group(grads, self.ids, (5.0, 5.0)))
            return loss

    def run(compiled):
        ms.set_seed(0)
        net = Net()
        params = net.trainable_params()
        groups = [{"params": [p for p in params if p.name != "tau"], "weight_decay": 0.05, "lr": [0.01] * 4},
                  {"params": [net.tau], "weight_decay": 0.0, "lr": [0.001] * 4, "frozen_steps": 2}]
        ids = param_group_ids(params, [lambda n: n == "tau"])
        step = Step(nn.WithLossCell(net, nn.MSELoss()), create_optimizer("adamw", groups, [0.01] * 4), ids)
        fn = ms.jit(step.construct) if compiled else step
        rng = np.random.default_rng(0)
        taus = []
        for _ in range(4):
            x, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 3))
            fn(Tensor(x.astype(np.float32)), Tensor(y.astype(np.float32)))
            taus.append(float(net.tau.asnumpy()[0]))
        return taus, net.dense.weight.asnumpy()

    taus, w = run(compiled=True)
    assert taus[0] == taus[1] == 0.25 and taus[2] != 0.25  # untouched while frozen
    taus_py, w_py = run(compiled=False)
    np.testing.assert_allclose(taus, taus_py, rtol=1e-5)
    np.testing.assert_allclose(w, w_py, rtol=1e-5, atol=1e-6)
