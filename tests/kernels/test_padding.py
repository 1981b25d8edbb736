"""ZeroPad: zero padding whose gradient is a crop, usable in compiled (jit) gradient steps."""
import numpy as np
import pytest

import mindspore as ms
import mindspore.ops as ops
from mindspore import Tensor

from ascend_kernels.padding import ZeroPad, pad_end, pad_zeros, zero_pad


def test_forward_matches_ops_pad():
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32))
    for pads in [(1, 2), (1, 2, 3, 0), (0, 0, 0, 0, 2, 1)]:
        np.testing.assert_array_equal(ZeroPad(pads)(x).asnumpy(), ops.pad(x, pads).asnumpy())
        np.testing.assert_array_equal(zero_pad(x, pads).asnumpy(), ops.pad(x, pads).asnumpy())
        np.testing.assert_array_equal(pad_zeros(x, pads).asnumpy(), ops.pad(x, pads).asnumpy())


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


def test_pad_amounts_computed_inside_a_custom_bprop():
    """A whole compiled train step through adder layers: their bprop pads the spread-out output
    gradient with amounts derived from shapes (stride 2 included)."""
    import mindspore.nn as nn
    from mindcv_ext.layers.adder_conv import AdderConv2d

    class Net(nn.Cell):
        def __init__(self):
            super().__init__()
            self.a = AdderConv2d(3, 4, 3, padding=1, backend="custom")
            self.b = AdderConv2d(4, 5, 3, stride=2, padding=1, backend="custom")

        def construct(self, x):
            return self.b(self.a(x)).mean(axis=(2, 3))

    net = Net()
    rng = np.random.default_rng(3)
    x = Tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    y = Tensor(np.array([1, 3], np.int32))
    loss = nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    step = nn.TrainOneStepCell(loss, nn.SGD(net.trainable_params(), 0.01))
    losses = [float(step(x, y).asnumpy()) for _ in range(3)]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_bad_pads():
    with pytest.raises(ValueError, match="pads"):
        pad_zeros(Tensor(np.zeros((1, 2), np.float32)), (1, 2, 3))
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
