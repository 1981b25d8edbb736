"""Group LIF of SNN-MLP: the Hybrid-DSL kernels, their composite twin and a numpy oracle agree.

The rule under test is specs/backbones.md 3.4: groups of 4 along the chosen axis, membrane reset
to 0 at each group start, hard reset after a spike, strict ``u > Vth``, output ``u`` or ``Vth``,
tail positions passed through; gradients hold the fire flag constant. Kernel compiles take a few
seconds per input shape, so the custom kernel sees only two shapes here (both with tails).
"""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, ops

import ascend_kernels
from ascend_kernels import lif as L
from mindcv_ext.layers.lif import LIFSpike

from _kernel_testutils import needs_hybrid

TAU, VTH = 0.75, 0.25  # exact in float32, so the u == Vth ties below are exact in every backend


def _rand(shape, seed):
    return np.random.default_rng(seed).normal(0.0, 1.0, shape).astype(np.float32)


def _with_ties(x, axis, vth):
    """Put exact ``u == Vth`` cases in: a group start equal to Vth gives u_0 = Vth (no spike)."""
    x = np.moveaxis(x.copy(), axis, -1)
    x[..., 0] = vth
    if x.shape[-1] > 4:
        x[..., 4] = vth
    return np.moveaxis(x, -1, axis)


def _value_and_grads(fn, x, tau, vth, dy, axis, group=4):
    grad = ops.GradOperation(get_all=True, sens_param=True)
    t = Tensor([tau], ms.float32)
    v = Tensor([vth], ms.float32)
    y = fn(Tensor(x), t, v, axis, group).asnumpy()
    dx, dt, dv = grad(lambda a, b, c: fn(a, b, c, axis, group))(Tensor(x), t, v, Tensor(dy))
    return y, dx.asnumpy(), float(dt.asnumpy()[0]), float(dv.asnumpy()[0])


def _assert_matches(got, ref, rtol=1e-5, atol=1e-5):
    y, dx, dt, dv = got
    ry, rdx, rdt, rdv = ref
    np.testing.assert_allclose(y, ry, rtol=rtol, atol=atol)
    np.testing.assert_allclose(dx, rdx, rtol=rtol, atol=atol)
    # the scalar gradients sum many terms in float32
    assert abs(dt - rdt) <= 1e-4 * max(1.0, abs(rdt)), (dt, rdt)
    assert abs(dv - rdv) <= 1e-4 * max(1.0, abs(rdv)), (dv, rdv)


# ----------------------------------------------------------------------------------------------
# The oracle itself, against the rule worked by hand
# ----------------------------------------------------------------------------------------------
def test_reference_follows_the_rule_by_hand():
    # one group of 4 and a tail of 2, tau 0.5, Vth 0.6:
    # u0 = 1.0 fires (y 1.0, reset); u1 = 0.5 (y 0.6); u2 = 0.25 - 0.2 = 0.05 (y 0.6);
    # u3 = 0.025 + 0.3 = 0.325 (y 0.6); positions 4 and 5 pass through.
    x = np.array([1.0, 0.5, -0.2, 0.3, 2.0, -9.0])
    y, dx, dtau, dvth = L.lif_reference(x, 0.5, 0.6, axis=0, group=4, dy=np.ones(6))
    np.testing.assert_allclose(y, [1.0, 0.6, 0.6, 0.6, 2.0, -9.0], atol=1e-12)
    # no spike after position 0, so every gradient of u is a Vth gradient and dx is the tail only
    np.testing.assert_allclose(dx, [1.0, 0.0, 0.0, 0.0, 1.0, 1.0], atol=1e-12)
    assert dvth == pytest.approx(3.0)
    assert dtau == pytest.approx(0.0)


def test_reference_gradients_match_finite_differences_with_flags_fixed():
    # away from thresholds the flags do not change under a small step, so autograd-with-fixed-
    # flags equals the true derivative there
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 1.0, (3, 9))
    dy = rng.normal(0.0, 1.0, (3, 9))
    tau, vth, eps = 0.6, 0.1, 1e-6

    def loss(xx, tt, vv):
        return float(np.sum(L.lif_reference(xx, tt, vv, axis=1) * dy))

    _, dx, dtau, dvth = L.lif_reference(x, tau, vth, axis=1, dy=dy)
    assert dtau == pytest.approx((loss(x, tau + eps, vth) - loss(x, tau - eps, vth)) / (2 * eps), rel=1e-5, abs=1e-7)
    assert dvth == pytest.approx((loss(x, tau, vth + eps) - loss(x, tau, vth - eps)) / (2 * eps), rel=1e-5, abs=1e-7)
    e = np.zeros_like(x)
    e[1, 5] = eps
    assert dx[1, 5] == pytest.approx((loss(x + e, tau, vth) - loss(x - e, tau, vth)) / (2 * eps), rel=1e-5, abs=1e-7)


# ----------------------------------------------------------------------------------------------
# Composite twin (cheap: many shapes, group sizes, ties)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,axis", [((2, 3, 8, 5), 2), ((2, 3, 5, 14), 3), ((1, 2, 7, 6), 2),
                                        ((1, 2, 3, 3), 3), ((2, 4, 13, 4), 2)])
def test_composite_matches_reference(shape, axis):
    x = _with_ties(_rand(shape, 1), axis, VTH)
    dy = _rand(shape, 2)
    got = _value_and_grads(L.lif_composite, x, TAU, VTH, dy, axis)
    _assert_matches(got, L.lif_reference(x, TAU, VTH, axis, 4, dy))


@pytest.mark.parametrize("group", [1, 2, 3, 5])
def test_composite_other_group_sizes(group):
    shape, axis = (2, 2, 11, 3), 2
    x, dy = _rand(shape, 4), _rand(shape, 5)
    got = _value_and_grads(L.lif_composite, x, 0.4, -0.1, dy, axis, group)
    _assert_matches(got, L.lif_reference(x, 0.4, -0.1, axis, group, dy))


def test_tail_positions_pass_through_and_get_identity_gradient():
    shape, axis = (1, 2, 4, 7), 3  # W = 7: positions 4..6 are the tail
    x, dy = _rand(shape, 6), _rand(shape, 7)
    y, dx, _, _ = _value_and_grads(L.lif_composite, x, TAU, VTH, dy, axis)
    np.testing.assert_array_equal(y[..., 4:], x[..., 4:])
    np.testing.assert_array_equal(dx[..., 4:], dy[..., 4:])
    # inside the group every output is at least Vth
    assert np.all(y[..., :4] >= VTH)


# ----------------------------------------------------------------------------------------------
# Custom kernels (Hybrid DSL, compiled by AKG)
# ----------------------------------------------------------------------------------------------
@needs_hybrid
@pytest.mark.parametrize("axis", [2, 3])
def test_custom_matches_composite_and_reference(axis):
    # (2, 3, 7, 9): along H the length 7 leaves a tail of 3, along W 9 leaves a tail of 1
    shape = (2, 3, 7, 9)
    x = _with_ties(_rand(shape, 10 + axis), axis, VTH)
    dy = _rand(shape, 20 + axis)
    ref = L.lif_reference(x, TAU, VTH, axis, 4, dy)
    custom = _value_and_grads(L.lif_custom, x, TAU, VTH, dy, axis)
    composite = _value_and_grads(L.lif_composite, x, TAU, VTH, dy, axis)
    _assert_matches(custom, ref)
    _assert_matches(custom, composite)


@needs_hybrid
@pytest.mark.slow  # the graph build compiles the kernels again (~45 s on 2 cores)
def test_custom_in_graph_mode_matches_pynative():
    shape = (2, 3, 7, 9)
    x, dy = Tensor(_rand(shape, 30)), Tensor(_rand(shape, 31))
    cell = LIFSpike(lif=4, dim=3, init_tau=TAU, init_vth=VTH, backend="custom")
    grad = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)
    params = ms.ParameterTuple(cell.trainable_params())
    eager = grad(cell, params)(x, dy)

    @ms.jit
    def compiled_grad(a, b):
        return grad(cell, params)(a, b)

    compiled = compiled_grad(x, dy)
    (dx_e,), (dt_e, dv_e) = eager
    (dx_c,), (dt_c, dv_c) = compiled
    np.testing.assert_allclose(dx_c.asnumpy(), dx_e.asnumpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dt_c.asnumpy(), dt_e.asnumpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dv_c.asnumpy(), dv_e.asnumpy(), rtol=1e-5, atol=1e-6)


@needs_hybrid
def test_custom_keeps_input_dtype():
    shape = (2, 3, 7, 9)  # a shape already compiled above: no new kernel
    x = _rand(shape, 40)
    y16 = L.lif_custom(Tensor(x, ms.float16), Tensor([TAU], ms.float32), Tensor([VTH], ms.float32), 2)
    assert y16.dtype == ms.float16
    ref = L.lif_reference(x.astype(np.float16).astype(np.float32), TAU, VTH, 2)
    np.testing.assert_allclose(y16.asnumpy().astype(np.float32), ref, rtol=2e-3, atol=2e-3)


# ----------------------------------------------------------------------------------------------
# The Cell and backend selection
# ----------------------------------------------------------------------------------------------
def test_cell_parameters_and_identity_switch():
    cell = LIFSpike(lif=4, dim=2, init_tau=0.25, init_vth=0.1)
    names = {p.name: tuple(p.shape) for p in cell.get_parameters()}
    assert names == {"tau": (1,), "Vth": (1,)}
    assert cell.tau.requires_grad and cell.Vth.requires_grad
    frozen = LIFSpike(fix_tau=True, fix_vth=True)
    assert not frozen.tau.requires_grad and not frozen.Vth.requires_grad
    x = Tensor(_rand((1, 2, 8, 8), 50))
    np.testing.assert_array_equal(LIFSpike(lif=-1)(x).asnumpy(), x.asnumpy())


def test_cell_composite_runs_the_rule_along_its_axis():
    x = _rand((2, 3, 8, 6), 51)
    for dim in (2, 3):
        cell = LIFSpike(lif=4, dim=dim, init_tau=TAU, init_vth=VTH, backend="composite")
        np.testing.assert_allclose(cell(Tensor(x)).asnumpy(), L.lif_reference(x, TAU, VTH, dim), rtol=1e-6, atol=1e-6)


def test_backend_resolution(monkeypatch):
    monkeypatch.setenv("MINDCV_EXT_KERNELS", "composite")
    assert not LIFSpike(lif=4).use_custom()
    monkeypatch.setenv("MINDCV_EXT_KERNELS", "custom")
    cell = LIFSpike(lif=4)
    assert cell.use_custom()  # an explicit request is honoured
    with ascend_kernels.exporting():
        assert not cell.use_custom()
    # the kernel is written for groups of 4: auto falls back, an explicit request is an error
    monkeypatch.setenv("MINDCV_EXT_KERNELS", "auto")
    assert L.resolve_backend(None, group=3) == "composite"
    with pytest.raises(ValueError, match="groups of 4"):
        L.resolve_backend("custom", group=3)
    with pytest.raises(ValueError, match="groups of 4"):
        LIFSpike(lif=3, backend="custom")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="dim"):
        LIFSpike(dim=1)
    with pytest.raises(ValueError, match="lif"):
        LIFSpike(lif=0)
    with pytest.raises(ValueError, match="backend"):
        LIFSpike(backend="fast")
    with pytest.raises(ValueError, match="tau"):
        L.lif_composite(Tensor(_rand((1, 1, 4, 4), 0)), Tensor([0.1, 0.2], ms.float32), Tensor([0.1], ms.float32), 2)
    with pytest.raises(ValueError, match="groups of 4"):
        L.lif_custom(Tensor(_rand((1, 1, 4, 4), 0)), Tensor([0.1], ms.float32), Tensor([0.1], ms.float32), 2, group=2)
    with pytest.raises(ValueError, match="axis"):
        L.view_shape((2, 3), 5)
    with pytest.raises(ValueError, match="NCHW"):
        LIFSpike(backend="composite")(Tensor(_rand((3, 8), 0)))
