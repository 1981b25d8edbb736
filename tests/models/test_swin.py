"""Swin: timm parameter counts, shifted-window block vs a NumPy reference, window constraint,
relative-position-bias resizing (7x7 <-> 13x13 tables) and converters."""
import cv2
import numpy as np
import pytest
import mindspore as ms
from scipy.special import erf

import mindcv_ext
from mindcv_ext.layers.pos_embed import resize_rel_pos_bias_table
from mindcv_ext.models import swin
from mindcv_ext.utils.summary import count_params

# timm totals with 1000 classes (timm.create_model(name) parameters; model cards: 28.3 M, 49.6 M,
# 87.8 M, 196.5 M). Buffers (relative_position_index, attn_mask) are not parameters.
TIMM_PARAMS = {"swin_tiny_patch4_window7_224": 28_288_354, "swin_small_patch4_window7_224": 49_606_258,
               "swin_base_patch4_window7_224": 87_768_224, "swin_large_patch4_window7_224": 196_532_476}


@pytest.mark.parametrize("name", list(TIMM_PARAMS))
def test_param_counts_equal_timm(name, monkeypatch):
    monkeypatch.setattr(swin, "TruncatedNormal", lambda sigma=0.02: "zeros")
    assert count_params(mindcv_ext.create_model(name)) == TIMM_PARAMS[name]


def test_relative_index_and_shift_mask_ops_match_numpy():
    w = 4
    idx = swin.relative_position_index_np(w, w)
    # independent definition: (dh + w - 1) * (2w - 1) + (dw + w - 1) for tokens p = (r, c), q
    for p in (0, 5, 15):
        for q in (0, 7, 12):
            dh, dw = p // w - q // w, p % w - q % w
            assert idx[p, q] == (dh + w - 1) * (2 * w - 1) + (dw + w - 1)
    np.testing.assert_array_equal(swin._relative_index(w, w).asnumpy().reshape(16, 16), idx)
    np.testing.assert_array_equal(swin._relative_index(2, 4).asnumpy().reshape(4, 4),
                                  swin.relative_position_index_np(2, 4))
    mask = swin.shift_mask_np(8, 8, 4, 2)
    np.testing.assert_array_equal(swin._shift_mask(8, 8, 4, 2).asnumpy(), mask)
    assert mask.shape == (4, 16, 16) and not mask[0].any() and (mask[3] == -100).sum() > 0


def _ln(x, g, b, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * g + b


def _block_reference(blk, x, h, w):
    """NumPy shifted-window block following the official SwinTransformerBlock.forward."""
    p = {k.split(".", 0)[-1]: v.asnumpy().astype(np.float64) for k, v in blk.parameters_and_names()}
    b, _, c = x.shape
    win, heads = blk.window, blk.attn.num_heads
    eff, shift = (min(h, w), 0) if min(h, w) <= win else (win, win // 2 if blk.shifted else 0)
    y = _ln(x, p["norm1.gamma"], p["norm1.beta"]).reshape(b, h, w, c)
    if shift:
        y = np.roll(y, (-shift, -shift), (1, 2))
    wins = y.reshape(b, h // eff, eff, w // eff, eff, c).transpose(0, 1, 3, 2, 4, 5).reshape(-1, eff * eff, c)
    qkv = wins @ p["attn.qkv.weight"].T + p["attn.qkv.bias"]
    qkv = qkv.reshape(len(wins), eff * eff, 3, heads, c // heads).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * (c // heads) ** -0.5, qkv[1], qkv[2]
    att = q @ k.transpose(0, 1, 3, 2)
    table = p["attn.relative_position_bias_table"]
    bias = table[swin.relative_position_index_np(eff, win).reshape(-1)].reshape(eff * eff, eff * eff, heads)
    att = att + bias.transpose(2, 0, 1)[None]
    if shift:
        m = swin.shift_mask_np(h, w, eff, shift)
        att = (att.reshape(b, len(m), heads, eff * eff, eff * eff) + m[None, :, None]).reshape(att.shape)
    att = np.exp(att - att.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    out = (att @ v).transpose(0, 2, 1, 3).reshape(len(wins), eff * eff, c)
    out = out @ p["attn.proj.weight"].T + p["attn.proj.bias"]
    out = out.reshape(b, h // eff, w // eff, eff, eff, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
    if shift:
        out = np.roll(out, (shift, shift), (1, 2))
    x = x + out.reshape(b, h * w, c)
    hid = _ln(x, p["norm2.gamma"], p["norm2.beta"]) @ p["mlp.fc1.weight"].T + p["mlp.fc1.bias"]
    hid = 0.5 * hid * (1 + erf(hid / np.sqrt(2)))
    return x + hid @ p["mlp.fc2.weight"].T + p["mlp.fc2.bias"]


@pytest.mark.parametrize("shifted,h,w", [(True, 8, 8), (True, 8, 12), (False, 8, 8), (True, 4, 4), (True, 2, 2)])
def test_block_matches_numpy_reference(shifted, h, w):
    rng = np.random.default_rng(0)
    blk = swin.SwinBlock(8, 2, 4, shifted)
    blk.set_train(False)
    for prm in blk.get_parameters():
        prm.set_data(ms.Tensor(rng.standard_normal(prm.shape).astype(np.float32) * 0.3))
    x = rng.standard_normal((2, h * w, 8)).astype(np.float32)
    out = blk(ms.Tensor(x.reshape(2, h, w, 8))).asnumpy().reshape(2, h * w, 8)
    np.testing.assert_allclose(out, _block_reference(blk, x.astype(np.float64), h, w), atol=1e-4)


def test_window_constraint():
    net = swin.SwinTransformer(8, (1, 1, 1, 1), (1, 1, 2, 2), window_size=4, num_classes=2)
    net.set_train(False)
    for size in (128, 256, 64):  # stage maps 32/16/8/4, 64/../8, 16/8/4/2 (last one window 2)
        net.check_input_size(size, size)
    assert net(ms.Tensor(np.zeros((1, 3, 64, 64), np.float32))).shape == (1, 2)
    for size in (160, 192, 224):  # last stage 5, 6, 7: neither divisible by 4 nor <= 4
        with pytest.raises(ValueError, match="not divisible by the window 4"):
            net.check_input_size(size, size)
    net7 = swin.SwinTransformer(8, (1, 1, 1, 1), (1, 1, 2, 2), window_size=7)
    net7.check_input_size(224, 224)
    with pytest.raises(ValueError, match="not divisible by 32"):
        net7.check_input_size(200, 200)


def test_rel_pos_bias_resize_geometric_7_to_13():
    """Window 4 -> 7 (FastMIM fine-tuning, SimMIM's geometric mode). Source entries sit at offsets
    0, +-1, +-(1 + q), +-(1 + q + q^2) with 1 + q + q^2 = 6, so a table linear in those positions
    comes out linear in the integer target offsets; centre and corners are kept; same size = identity."""
    q = (-1 + 21 ** 0.5) / 2
    pos = np.array([-(1 + q + q * q), -(1 + q), -1, 0, 1, 1 + q, 1 + q + q * q])
    ph, pw = np.meshgrid(pos, pos, indexing="ij")
    heads = np.stack([0.5 * ph - 0.25 * pw + 1.0, 2.0 * pw, np.cos(ph) * pw], -1).reshape(49, 3)
    out = resize_rel_pos_bias_table(heads, 7)
    assert out.shape == (169, 3)
    th, tw = np.meshgrid(np.arange(-6, 7), np.arange(-6, 7), indexing="ij")
    np.testing.assert_allclose(out[:, 0], (0.5 * th - 0.25 * tw + 1.0).reshape(-1), atol=1e-4)
    np.testing.assert_allclose(out[:, 1], (2.0 * tw).reshape(-1), atol=1e-4)
    grid_out, grid_in = out.reshape(13, 13, 3), heads.reshape(7, 7, 3)
    np.testing.assert_allclose(grid_out[6, 6], grid_in[3, 3], atol=1e-5)       # offset (0, 0)
    np.testing.assert_allclose(grid_out[0, 12], grid_in[0, 6], atol=1e-4)      # offset (-6, 6) <- (-3, 3)
    np.testing.assert_allclose(grid_out[6, 7], grid_in[3, 4], atol=1e-5)       # offset (0, 1) <- (0, 1)
    np.testing.assert_array_equal(resize_rel_pos_bias_table(heads, 4), heads.astype(np.float32))


def test_rel_pos_bias_resize_bicubic_and_round_trip():
    rng = np.random.default_rng(1)
    table = rng.standard_normal((49, 2)).astype(np.float32)
    up = resize_rel_pos_bias_table(table, 7, mode="bicubic")
    np.testing.assert_allclose(up.reshape(13, 13, 2), cv2.resize(table.reshape(7, 7, 2), (13, 13),
                                                                  interpolation=cv2.INTER_CUBIC), atol=1e-4)
    yy, xx = np.mgrid[-3:4, -3:4] / 3.0
    smooth = np.stack([np.cos(xx + 0.5 * yy), xx * yy], -1).reshape(49, 2)
    for mode in ("geometric", "bicubic"):
        back = resize_rel_pos_bias_table(resize_rel_pos_bias_table(smooth, 7, mode), 4, mode)
        assert np.abs(back - smooth).max() < 0.1, mode
    with pytest.raises(ValueError, match="not \\(2w-1\\)\\^2"):
        resize_rel_pos_bias_table(np.zeros((50, 2)), 7)


def _torch_names(net):
    return {k.replace(".gamma", ".weight").replace(".beta", ".bias"): v.asnumpy()
            for k, v in net.parameters_dict().items()}


def _tiny(window, classes=4):
    net = swin.SwinTransformer(8, (2, 2, 2, 2), (1, 1, 2, 2), window_size=window, num_classes=classes)
    net.set_train(False)
    return net


def test_converter_official_and_timm_layouts_round_trip():
    rng = np.random.default_rng(2)
    src = _tiny(2)
    for p in src.get_parameters():
        p.set_data(ms.Tensor(rng.standard_normal(p.shape).astype(np.float32) * 0.1))
    official = _torch_names(src)
    official["layers.0.blocks.1.attn.relative_position_index"] = np.zeros((4, 4), np.int64)
    official["layers.0.blocks.1.attn_mask"] = np.zeros((16, 4, 4), np.float32)
    assert "layers.0.downsample.reduction.weight" in official and "patch_embed.norm.weight" in official
    # timm >= 0.9: merging moved to the start of the next stage, classifier as head.fc
    timm_new = {}
    for k, v in official.items():
        if ".downsample." in k:
            s = int(k.split(".")[1])
            k = k.replace(f"layers.{s}.downsample.", f"layers.{s + 1}.downsample.")
        timm_new[k.replace("head.", "head.fc.")] = v
    x = ms.Tensor(rng.standard_normal((1, 3, 32, 32)).astype(np.float32))
    want = src(x).asnumpy()
    expected = set(src.parameters_dict())
    for sd in (official, timm_new):
        mapped = swin.swin_state_dict_from_torch(sd, window_size=2)
        assert set(mapped) == expected
        dst = _tiny(2)
        ms.load_param_into_net(dst, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in mapped.items()})
        np.testing.assert_allclose(dst(x).asnumpy(), want, atol=1e-5)


def test_converter_fastmim_pretraining_checkpoint():
    """``encoder.`` prefix, decoder and mask token dropped; window-4 tables (7x7) -> window 7 (13x13)."""
    pre = _torch_names(_tiny(4, classes=0))
    sd = {"encoder." + k: v for k, v in pre.items()}
    sd["mask_token"] = np.zeros((1, 3, 1, 1), np.float32)
    sd["decoder_pred.weight"] = np.zeros((432, 32), np.float32)
    mapped = swin.swin_state_dict_from_torch(sd, window_size=7, num_classes=4)
    fine = _tiny(7)
    shapes = {k: tuple(v.shape) for k, v in fine.parameters_dict().items()}
    assert set(mapped) == set(shapes) - {"head.weight", "head.bias"}
    assert all(tuple(v.shape) == shapes[k] for k, v in mapped.items())
    assert mapped["layers.2.blocks.1.attn.relative_position_bias_table"].shape == (169, 2)
