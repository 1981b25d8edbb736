"""Masking (exact count per sample, mask token only on masked pixels) and the masked-only loss."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from mindcv_ext.mim.masking import (BlockMaskGenerator, MaskConfigError, apply_mask_token, block_mask, num_masked,
                                    upsample_mask)
from mindcv_ext.mim.model import MIMConfigError, MIMModel
from mindcv_ext.mim.targets import pixel_token_targets


@pytest.mark.parametrize("grid,ratio,expected", [((8, 8), 0.75, 48), ((4, 4), 0.75, 12), ((2, 2), 0.75, 3),
                                                 ((5, 3), 0.6, 9), ((7, 7), 0.0, 0)])
def test_exact_masked_count_per_sample(grid, ratio, expected):
    assert num_masked(grid[0] * grid[1], ratio) == expected  # units - int(units * (1 - ratio))
    masks = block_mask(64, grid, ratio, np.random.default_rng(0))
    assert masks.shape == (64,) + grid and set(np.unique(masks)) <= {0.0, 1.0}
    assert (masks.reshape(64, -1).sum(1) == expected).all()
    if 0 < expected < grid[0] * grid[1]:
        distinct = len({m.tobytes() for m in masks})  # per-sample draws differ
        assert distinct > (60 if grid == (8, 8) else 1)


def test_generator_is_seeded_and_checks_sizes():
    a, b = BlockMaskGenerator(16, seed=3), BlockMaskGenerator(16, seed=3)
    np.testing.assert_array_equal(a(4, 128, 128), b(4, 128, 128))
    assert a.for_image(224, 224).shape == (14, 14)
    with pytest.raises(MaskConfigError, match="not divisible by the mask block 16"):
        a(2, 120, 128)
    with pytest.raises(MaskConfigError, match="ratio"):
        BlockMaskGenerator(16, ratio=1.0)


def test_mask_token_reaches_only_masked_pixels():
    rng = np.random.default_rng(1)
    img = rng.standard_normal((3, 3, 32, 48)).astype(np.float32)
    mask = block_mask(3, (2, 3), 0.5, rng)
    token = np.array([0.3, -1.2, 2.5], np.float32).reshape(1, 3, 1, 1)
    pix = upsample_mask(ms.Tensor(mask), 16)
    out = apply_mask_token(ms.Tensor(img), pix, ms.Tensor(token)).asnumpy()
    ref_pix = np.kron(mask, np.ones((16, 16)))[:, None].astype(bool)
    ref_pix = np.broadcast_to(ref_pix, img.shape)
    np.testing.assert_array_equal(out[~ref_pix], img[~ref_pix])
    np.testing.assert_array_equal(out[ref_pix], np.broadcast_to(token, img.shape)[ref_pix])


class _PatchBackbone(nn.Cell):
    """A stride-8 linear patch encoder that remembers its last input."""

    output_stride = 8
    num_features = 16

    def __init__(self):
        super().__init__()
        self.proj = nn.Dense(3 * 64, 16)
        self.seen = None

    def forward_features(self, x):
        self.seen = x.asnumpy()
        return self.proj(pixel_token_targets(x, 8, norm=False))


def test_model_masks_the_input_and_loss_ignores_unmasked_tokens():
    rng = np.random.default_rng(2)
    net = MIMModel(_PatchBackbone(), target="pixel", decoder_dim=32, decoder_depth=1, mask_block=16)
    img = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    mask = block_mask(2, (2, 2), 0.75, rng)
    pred, target, tmask = net.forward_pred(ms.Tensor(img), ms.Tensor(mask))
    seen = net.backbone.seen
    pix = np.broadcast_to(np.kron(mask, np.ones((16, 16)))[:, None].astype(bool), img.shape)
    np.testing.assert_array_equal(seen[~pix], img[~pix])
    np.testing.assert_allclose(seen[pix], np.broadcast_to(net.mask_token.asnumpy(), img.shape)[pix])
    # the 16-px mask unit covers 2x2 stride-8 tokens
    np.testing.assert_array_equal(tmask.asnumpy().reshape(2, 4, 4), np.kron(mask, np.ones((2, 2))))

    pred, target, tmask = pred.asnumpy(), target.asnumpy(), tmask.asnumpy()
    sel = tmask.astype(bool)
    official = ((pred[sel] - target[sel]) ** 2).mean()  # the official plain mean over selected elements
    loss = MIMModel.masked_mse(ms.Tensor(pred), ms.Tensor(target), ms.Tensor(tmask)).asnumpy()
    np.testing.assert_allclose(loss, official, rtol=1e-5)
    changed = target.copy()
    changed[~sel] += 100.0  # unmasked targets: no effect
    assert MIMModel.masked_mse(ms.Tensor(pred), ms.Tensor(changed), ms.Tensor(tmask)).asnumpy() == loss
    changed = target.copy()
    changed[sel.nonzero()[0][0], sel.nonzero()[1][0]] += 1.0  # one masked token: changes it
    assert MIMModel.masked_mse(ms.Tensor(pred), ms.Tensor(changed), ms.Tensor(tmask)).asnumpy() > loss


def test_pixel_target_layout_and_norm():
    rng = np.random.default_rng(3)
    img = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    raw = pixel_token_targets(ms.Tensor(img), 8, norm=False).asnumpy()
    assert raw.shape == (1, 4, 192)
    # token 1 = patch (row 0, col 1); index (i * p + j) * 3 + c
    assert raw[0, 1, (2 * 8 + 5) * 3 + 1] == img[0, 1, 2, 8 + 5]
    normed = pixel_token_targets(ms.Tensor(img), 8, norm=True).asnumpy()
    ref = (raw - raw.mean(-1, keepdims=True)) / np.sqrt(raw.var(-1, ddof=1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(normed, ref, atol=1e-5)


def test_bad_configurations():
    with pytest.raises(MIMConfigError, match="forward_features"):
        MIMModel(nn.Dense(2, 2))
    stride_less = _PatchBackbone()
    stride_less.output_stride = None
    with pytest.raises(MIMConfigError, match="output_stride"):
        MIMModel(stride_less)
    with pytest.raises(MIMConfigError, match="multiple of the stride"):
        MIMModel(_PatchBackbone(), mask_block=12)
    net = MIMModel(_PatchBackbone(), target="hog", decoder_dim=32)
    assert net.target_dim == 27  # stride 8 / cell 8 -> one cell per token
    with pytest.raises(ValueError, match="does not match images"):
        net(ms.Tensor(np.zeros((2, 3, 32, 32), np.float32)), ms.Tensor(np.zeros((2, 2, 2), np.float32)))
