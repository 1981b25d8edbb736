"""Reconstruction grid: glyph orientation per bin and a PNG written from a model's prediction."""
import numpy as np
import mindspore as ms

from mindcv_ext.mim import block_mask, create_mim_model
from mindcv_ext.mim.targets import token_targets_to_map
from mindcv_ext.mim.visualize import hog_glyphs, save_reconstruction_grid


def _one_bin(k):
    hog = np.zeros((27, 1, 1), np.float32)
    hog[k] = 1.0
    return hog_glyphs(hog, cell_px=12)


def test_glyph_orientation():
    vertical_edge = _one_bin(4)  # bin 4: g_y = 0, a vertical edge -> a vertical stroke
    horizontal_edge = _one_bin(0)  # bin 0: g_x ~ 0, a horizontal edge -> a (nearly) horizontal stroke
    assert len(np.unique(np.nonzero(vertical_edge)[1])) == 1 and len(np.unique(np.nonzero(vertical_edge)[0])) > 6
    rows = np.unique(np.nonzero(horizontal_edge)[0])
    assert len(rows) <= 3 and len(np.unique(np.nonzero(horizontal_edge)[1])) > 6


def test_png_grid_from_model(tmp_path):
    import matplotlib.image as mpimg

    net = create_mim_model("vit_pico_patch8_56")
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    masks = block_mask(2, (4, 4), 0.75, rng)
    pred, target, _ = net.forward_pred(ms.Tensor(images), ms.Tensor(masks))
    pred_map = token_targets_to_map(pred, 4, 4, 27).asnumpy()
    target_map = token_targets_to_map(target, 4, 4, 27).asnumpy()
    np.testing.assert_allclose(target_map, net.hog(ms.Tensor(images)).asnumpy(), atol=1e-6)
    path = save_reconstruction_grid(str(tmp_path / "recon.png"), images, masks, target_map, pred_map, mask_block=8)
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 300
