"""HOG target: parity with a slow NumPy loop reference, invariances, shapes and token layout."""
import math

import numpy as np
import pytest
import mindspore as ms

from mindcv_ext.mim.hog import HOGLayer
from mindcv_ext.mim.targets import hog_token_targets, token_targets_to_map


def hog_reference(img: np.ndarray, nbins=9, cell=8):
    """Loop-by-loop HOG of FastMIM's definition. Also returns the per-pixel bin, magnitude and a flag
    for pixels whose scaled orientation lies on a bin edge (where frameworks may differ by one bin:
    with reflect padding every first/last column has g_x = 0, i.e. orientation 0 or 9)."""
    b, c, h, w = img.shape
    kx = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
    hist = np.zeros((b, c, nbins, h // cell, w // cell))
    bins = np.zeros((b, c, h, w), int)
    mags = np.zeros((b, c, h, w))
    on_edge = np.zeros((b, c, h, w), bool)

    def px(bi, ci, r, q):  # reflect padding by one pixel
        r = -r if r < 0 else (2 * (h - 1) - r if r >= h else r)
        q = -q if q < 0 else (2 * (w - 1) - q if q >= w else q)
        return float(img[bi, ci, r, q])

    for bi in range(b):
        for ci in range(c):
            for r in range(h):
                for q in range(w):
                    gx = gy = 0.0
                    for u in range(3):
                        for v in range(3):
                            val = px(bi, ci, r + u - 1, q + v - 1)
                            gx += kx[u][v] * val
                            gy += kx[v][u] * val
                    phase = math.atan2(gx, gy) / math.pi * nbins
                    k = math.floor(phase) % nbins  # Python's % is a floor-mod
                    bins[bi, ci, r, q], mags[bi, ci, r, q] = k, math.hypot(gx, gy)
                    on_edge[bi, ci, r, q] = abs(phase - round(phase)) < 1e-4
                    hist[bi, ci, k, r // cell, q // cell] += math.hypot(gx, gy)
    norm = np.sqrt((hist ** 2).sum(2, keepdims=True))
    hist = hist / np.maximum(norm, 1e-12)
    return hist.reshape(b, c * nbins, h // cell, w // cell), bins, mags, on_edge


def _hog(x, **kw):
    return HOGLayer(**kw)(ms.Tensor(np.asarray(x, np.float32))).asnumpy()


def test_per_pixel_votes_match_loop_reference():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((2, 3, 12, 20)).astype(np.float32)
    _, bins, mags, on_edge = hog_reference(img, cell=4)
    votes = _hog(img, cell=1, normalize=False).reshape(2, 3, 9, 12, 20)
    got_bin, got_mag = votes.argmax(2), votes.max(2)
    assert ((votes > 0).sum(2) <= 1).all()  # a hard vote into a single bin
    np.testing.assert_allclose(got_mag, mags, rtol=1e-5, atol=1e-5)
    same = got_bin == bins
    off_by_one = ((got_bin - bins) % 9 == 1) | ((bins - got_bin) % 9 == 1)
    assert (same | (on_edge & off_by_one)).all()
    assert on_edge[..., 1:-1].mean() < 0.01  # edges are (almost) only the border columns


def test_cell_histograms_match_loop_reference():
    rng = np.random.default_rng(1)
    img = rng.standard_normal((2, 3, 16, 40)).astype(np.float32)
    ref, _, _, on_edge = hog_reference(img)
    out = _hog(img)
    assert out.shape == ref.shape == (2, 27, 2, 5)
    edge_cell = on_edge.reshape(2, 3, 2, 8, 5, 8).any((3, 5))  # (b, c, cell row, cell col)
    keep = ~edge_cell
    assert keep.mean() >= 0.5
    out5, ref5 = out.reshape(2, 3, 9, 2, 5).transpose(0, 1, 3, 4, 2), ref.reshape(2, 3, 9, 2, 5).transpose(0, 1, 3, 4, 2)
    np.testing.assert_allclose(out5[keep], ref5[keep], atol=2e-5)
    raw = _hog(img, normalize=False)
    assert raw.max() > 1.0  # unnormalised: magnitudes summed over 64 pixels


def test_constant_image_gives_zero():
    img = np.full((1, 3, 16, 16), 0.7, np.float32)
    assert np.abs(_hog(img)).max() == 0.0


def test_channel_offset_and_positive_scale_do_not_change_it():
    rng = np.random.default_rng(2)
    img = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    scale = np.array([0.5, 2.0, 4.0], np.float32).reshape(1, 3, 1, 1)
    shift = np.array([-1.0, 0.25, 3.0], np.float32).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(_hog(img * scale + shift), _hog(img), atol=1e-5)
    # ImageNet normalisation is such a per-channel affine map
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(_hog((img - mean) / std), _hog(img), atol=1e-5)


def _bin_energy(hog):
    return hog.reshape(hog.shape[0], 3, 9, -1).sum((0, 1, 3))


def test_rotation_swaps_bins_0_and_4_on_edge_images():
    img = np.zeros((1, 3, 16, 16), np.float32)
    img[..., 5:] = 1.0                      # vertical edge: gy = 0 -> bin 4
    vertical = _bin_energy(_hog(img))
    horizontal = _bin_energy(_hog(np.rot90(img, 1, axes=(2, 3)).copy()))  # horizontal edge: gx = 0 -> bin 0
    assert vertical[4] > 0 and np.delete(vertical, 4).max() == 0
    assert horizontal[0] > 0 and np.delete(horizontal, 0).max() == 0
    np.testing.assert_allclose(vertical[4], horizontal[0], rtol=1e-5)


def test_shapes_and_bad_input():
    out = _hog(np.random.default_rng(3).standard_normal((2, 3, 32, 48)))
    assert out.shape == (2, 27, 4, 6)
    with pytest.raises(ValueError, match="divisible by the cell"):
        _hog(np.zeros((1, 3, 20, 16)))
    with pytest.raises(ValueError, match="expects"):
        _hog(np.zeros((1, 1, 16, 16)))


@pytest.mark.parametrize("stride,dim", [(16, 108), (32, 432)])
def test_token_layout(stride, dim):
    rng = np.random.default_rng(4)
    hog = rng.standard_normal((2, 27, 128 // 8, 128 // 8)).astype(np.float32)
    g = 128 // stride
    tok = hog_token_targets(ms.Tensor(hog), g, g).asnumpy()
    assert tok.shape == (2, g * g, dim)
    u = stride // 8
    for b, t, c, i, j in [(0, 0, 0, 0, 0), (1, g * g - 1, 26, u - 1, u - 1), (1, g + 1, 13, 1, 0)]:
        r, q = t // g, t % g
        assert tok[b, t, c * u * u + i * u + j] == hog[b, c, r * u + i, q * u + j]
    back = token_targets_to_map(ms.Tensor(tok), g, g, 27).asnumpy()
    np.testing.assert_array_equal(back, hog)
