"""ZeroPad: zero padding whose gradient is a crop, usable in compiled (jit) gradient steps."""
import numpy as np
import pytest

import mindspore as ms
import mindspore.ops as ops
from mindspore import Tensor

from ascend_kernels.padding import ZeroPad, pad_end, zero_pad


def test_forward_matches_ops_pad():
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32))
    for pads in [(1, 2), (1, 2, 3, 0), (0, 0, 0, 0, 2, 1)]:
        np.testing.assert_array_equal(ZeroPad(pads)(x).asnumpy(), ops.pad(x, pads).asnumpy())
        np.testing.assert_array_equal(zero_pad(x, pads).asnumpy(), ops.pad(x, pads).asnumpy())


def test_gradient_is_the_crop_in_a_compiled_loop():
    """Many compiled gradient calls (the pad-gradient kernel this replaces could hang here)."""
    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal((2, 3, 6, 5)).astype(np.float32))
    pad = ZeroPad((1, 2, 3, 0))
    weight = Tensor(rng.standard_normal((2, 3, 9, 8)).astype(np.float32))

    def loss(v):
        return (pad(v) * weight).sum()
    step = ms.jit(ms.grad(loss))
    expect = weight.asnumpy()[:, :, 3:9, 1:6]
    for _ in range(30):
        got = step(x).asnumpy()
    np.testing.assert_allclose(got, expect, rtol=0, atol=0)


def test_bad_pads():
    with pytest.raises(ValueError, match="pads"):
        ZeroPad((1, 2, 3))
    with pytest.raises(ValueError, match="pads"):
        ZeroPad((1, -1))


def test_pad_end_matches_ops_pad_and_crops_the_gradient():
    rng = np.random.default_rng(2)
    x = Tensor(rng.standard_normal((2, 3, 5, 7)).astype(np.float32))
    np.testing.assert_array_equal(pad_end(x, 1, 3).asnumpy(), ops.pad(x, (0, 1, 0, 3)).asnumpy())
    np.testing.assert_array_equal(pad_end(x, 0, 0).asnumpy(), x.asnumpy())
    weight = Tensor(rng.standard_normal((2, 3, 6, 9)).astype(np.float32))

    def loss(v):
        return (pad_end(v, 2, 1) * weight).sum()
    step = ms.jit(ms.grad(loss))
    for _ in range(30):
        got = step(x).asnumpy()
    np.testing.assert_array_equal(got, weight.asnumpy()[:, :, :5, :7])
