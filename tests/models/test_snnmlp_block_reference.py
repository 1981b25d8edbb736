"""SNN-MLP LIFBlock against a NumPy transliteration of the official forward (snn_mlp.py
LIFBlock / LIFModule and the LIFSpike CUDA kernel's group LIF), written from the paper's code
description, independently of the package: catches a swapped branch axis, a misplaced GELU or
norm, a wrong residual, or a LIF that leaks across groups or touches the tail."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor
from scipy.special import erf

from mindcv_ext.models.snnmlp import LIFBlock


def _gn(x, p, name):  # GroupNorm(1, C): statistics over (C, H, W) per sample, affine per channel
    mu = x.mean((1, 2, 3), keepdims=True)
    var = x.var((1, 2, 3), keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * p[name + ".gamma"][None, :, None, None] + p[name + ".beta"][None, :, None, None]


def _gelu(x):
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def _pw(x, p, name):  # 1x1 conv with bias
    return np.einsum("nchw,oc->nohw", x, p[name + ".weight"][:, :, 0, 0]) + p[name + ".bias"][None, :, None, None]


def _dw3(x, p, name):  # depthwise 3x3, padding 1, bias
    w = p[name + ".weight"][:, 0]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    h, wd = x.shape[2:]
    out = sum(w[None, :, i, j, None, None] * xp[:, :, i:i + h, j:j + wd] for i in range(3) for j in range(3))
    return out + p[name + ".bias"][None, :, None, None]


def _group_lif(x, tau, vth, axis, group=4):
    """Per group of 4 consecutive positions along ``axis``: u = tau * m + x, y = u if u > Vth else
    Vth, m = 0 after a spike else u; the state restarts at 0 in every group; the tail passes."""
    x = np.moveaxis(x, axis, -1)
    y = x.copy()
    full = x.shape[-1] // group * group
    for g0 in range(0, full, group):
        m = np.zeros(x.shape[:-1])
        for j in range(group):
            u = tau * m + x[..., g0 + j]
            spike = u > vth
            y[..., g0 + j] = np.where(spike, u, vth)
            m = np.where(spike, 0.0, u)
    return np.moveaxis(y, -1, axis)


def _block(x, p):
    q = "lif_module."
    t = _gn(x, p, "norm1")
    t = _gelu(_gn(_pw(t, p, q + "conv1"), p, q + "norm1"))
    t = _gelu(_gn(_dw3(t, p, q + "dw1"), p, q + "norm2"))
    along_h = _gelu(_pw(_group_lif(t, p[q + "lif1.tau"][0], p[q + "lif1.Vth"][0], axis=2), p, q + "conv2_1"))
    along_w = _gelu(_pw(_group_lif(t, p[q + "lif2.tau"][0], p[q + "lif2.Vth"][0], axis=3), p, q + "conv2_2"))
    x = x + _pw(_gn(along_h + along_w, p, q + "norm3"), p, q + "conv3")
    return x + _pw(_gelu(_pw(_gn(x, p, "norm2"), p, "mlp.fc1")), p, "mlp.fc2")


def test_group_lif_reference_by_hand():
    # the reference itself on one line of 6: a group of 4 (tau 0.5, Vth 1) then an untouched tail
    x = np.array([0.6, 0.8, 0.3, 2.0, 5.0, -3.0]).reshape(1, 1, 1, 6)
    y = _group_lif(x, 0.5, 1.0, axis=3).ravel()
    # u: 0.6 (no spike) -> 0.5*0.6+0.8 = 1.1 (spike, reset) -> 0.3 -> 0.5*0.3+2.0 = 2.15 (spike)
    np.testing.assert_allclose(y, [1.0, 1.1, 1.0, 2.15, 5.0, -3.0])


@pytest.mark.parametrize("hw", [(10, 6), (8, 8)])
def test_lif_block_matches_numpy_official_forward(hw):
    dim = 8
    block = LIFBlock(dim, backend="composite")
    block.set_train(False)
    rng = np.random.default_rng(5)
    p = {}
    lif_values = {"lif_module.lif1.tau": 0.6, "lif_module.lif1.Vth": 0.15,   # different per branch, so a
                  "lif_module.lif2.tau": 0.3, "lif_module.lif2.Vth": -0.2}   # swapped axis shows
    for q in block.get_parameters():
        if q.name in lif_values:
            v = np.full(q.shape, lif_values[q.name], np.float32)
        elif q.name.endswith("gamma"):
            v = (1 + 0.3 * rng.standard_normal(q.shape)).astype(np.float32)
        else:
            v = (0.4 * rng.standard_normal(q.shape)).astype(np.float32)
        q.set_data(Tensor(v))
        p[q.name] = v.astype(np.float64)
    x = rng.standard_normal((2, dim) + hw).astype(np.float32)
    expected = _block(x.astype(np.float64), p)
    got = block(Tensor(x)).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # the LIF thresholds matter on these values: both spiking and resting positions occur
    t = _gelu(_gn(_dw3(_gelu(_gn(_pw(_gn(x.astype(np.float64), p, "norm1"), p, "lif_module.conv1"),
                                 p, "lif_module.norm1")), p, "lif_module.dw1"), p, "lif_module.norm2"))
    frac = (_group_lif(t, 0.6, 0.15, 2) == 0.15).mean()
    assert 0.05 < frac < 0.95, frac
