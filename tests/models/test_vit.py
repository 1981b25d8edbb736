"""ViT: timm parameter counts, position embeddings (sin-cos, bicubic resize vs OpenCV), any input
size, converters (timm / BEiT-style qkv bias / FastMIM pre-training checkpoints)."""
import cv2
import numpy as np
import pytest
import mindspore as ms

import mindcv_ext
from mindcv_ext.convert import ConversionError, convert_state_dict
from mindcv_ext.layers import pos_embed as pe
from mindcv_ext.models import vit
from mindcv_ext.utils.summary import count_params

# Parameter totals of timm's models with 1000 classes (timm.create_model(name) summed over
# model.parameters(); also listed on the timm model cards: 22.1 M, 86.6 M, 304.3 M).
TIMM_PARAMS = {"vit_small_patch16_224": 22_050_664, "vit_base_patch16_224": 86_567_656,
               "vit_large_patch16_224": 304_326_632}


@pytest.fixture
def cheap_init(monkeypatch):
    """Zero initialisation for the big variants: parameter shapes only, built fast."""
    monkeypatch.setattr(vit, "TruncatedNormal", lambda sigma=0.02: "zeros")


@pytest.mark.parametrize("name", list(TIMM_PARAMS))
def test_param_counts_equal_timm(name, cheap_init):
    assert count_params(mindcv_ext.create_model(name)) == TIMM_PARAMS[name]


def test_vit_base_arithmetic():
    # 768-d, 12 blocks, 197 tokens: patch conv + cls + pos + 12 x block + norm + head
    block = 2 * 2 * 768 + (768 * 2304 + 2304) + (768 * 768 + 768) + (768 * 3072 + 3072) + (3072 * 768 + 768)
    assert 768 * 3 * 256 + 768 + 768 + 197 * 768 + 12 * block + 2 * 768 + 768 * 1000 + 1000 == 86_567_656


def test_sincos_table():
    table = pe.sincos_2d_np(16, 3, 5)  # tokens row-major; first half columns, second half rows
    r, c = 2, 3
    row = table[r * 5 + c]
    omega = 1.0 / 10000 ** (np.arange(4) / 4)
    np.testing.assert_allclose(row[:4], np.sin(c * omega))
    np.testing.assert_allclose(row[4:8], np.cos(c * omega))
    np.testing.assert_allclose(row[8:12], np.sin(r * omega))
    np.testing.assert_allclose(row[12:], np.cos(r * omega))
    ops_table = pe.sincos_2d(ms.Tensor(pe.sincos_omega(16)), 3, 5).asnumpy()[0]
    np.testing.assert_allclose(ops_table, table, atol=1e-6)


def test_pos_embed_resize_matches_opencv_bicubic():
    """PyTorch bicubic (align_corners=False, A=-0.75) equals OpenCV INTER_CUBIC; 8x8 -> 14x14 as FastMIM."""
    rng = np.random.default_rng(0)
    pos = rng.standard_normal((1, 1 + 64, 6)).astype(np.float32)
    out = pe.resize_pos_embed_np(pos, (14, 14), num_prefix_tokens=1)
    assert out.shape == (1, 1 + 196, 6)
    np.testing.assert_array_equal(out[:, 0], pos[:, 0])  # class token untouched
    grid = pos[0, 1:].reshape(8, 8, 6)
    ref = cv2.resize(grid, (14, 14), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_allclose(out[0, 1:].reshape(14, 14, 6), ref, atol=1e-4)
    np.testing.assert_array_equal(pe.resize_pos_embed_np(pos, (8, 8)), pos)  # same grid: identity


def test_pos_embed_resize_round_trip():
    """8 -> 14 -> 8 on a smooth embedding returns it (to interpolation error); a transposed grid would not."""
    yy, xx = np.mgrid[:8, :8] / 7.0
    grid = np.stack([np.sin(1.3 * xx + 0.4 * yy), np.cos(0.8 * yy), xx * yy, xx], -1)
    pos = np.concatenate([np.zeros((1, 4)), grid.reshape(64, 4)])[None].astype(np.float32)
    back = pe.resize_pos_embed_np(pe.resize_pos_embed_np(pos, (14, 14)), (8, 8))
    err = np.abs(back - pos).max()
    assert err < 0.03
    assert np.abs(grid.transpose(1, 0, 2) - grid).max() > 10 * err


def test_any_input_size_and_errors():
    net = mindcv_ext.create_model("vit_pico_patch8_56", num_classes=3)
    net.set_train(False)
    for size in ((32, 32), (56, 56), (40, 64)):
        assert net(ms.Tensor(np.zeros((1, 3) + size, np.float32))).shape == (1, 3)
    with pytest.raises(ValueError, match="not divisible by the patch size 8"):
        net(ms.Tensor(np.zeros((1, 3, 30, 32), np.float32)))
    with pytest.raises(vit.VitConfigError, match="global_pool"):
        mindcv_ext.create_model("vit_pico_patch8_56", global_pool="max")


def test_learned_pos_embed_on_the_fly_equals_resize_on_load():
    rng = np.random.default_rng(1)
    a = mindcv_ext.create_model("vit_pico_patch8_56", num_classes=3, img_size=32)  # 4x4 grid
    b = mindcv_ext.create_model("vit_pico_patch8_56", num_classes=3, img_size=56)  # 7x7 grid
    a.set_train(False), b.set_train(False)
    a.pos_embed.set_data(ms.Tensor(rng.standard_normal(a.pos_embed.shape).astype(np.float32)))
    params = {k: v.asnumpy() for k, v in a.parameters_dict().items()}
    params["pos_embed"] = pe.resize_pos_embed_np(params["pos_embed"], (7, 7))
    ms.load_param_into_net(b, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in params.items()})
    x = ms.Tensor(rng.standard_normal((2, 3, 56, 56)).astype(np.float32))
    np.testing.assert_allclose(a(x).asnumpy(), b(x).asnumpy(), atol=1e-5)


def test_sincos_model_has_no_pos_param_and_head_split_matters():
    six = mindcv_ext.create_model("vit_pico_patch8_56", num_heads=2, pos_embed="sincos", num_classes=0)
    twelve = mindcv_ext.create_model("vit_pico_patch8_56", num_heads=4, pos_embed="sincos", num_classes=0)
    assert "pos_embed" not in six.parameters_dict()
    ms.load_param_into_net(twelve, six.parameters_dict())
    x = ms.Tensor(np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32))
    a, b = six.forward_features(x).asnumpy(), twelve.forward_features(x).asnumpy()
    assert a.shape == b.shape == (1, 17, 64) and np.abs(a - b).max() > 1e-3


def _torch_names(net):
    """Our parameters under timm's names (LayerNorm gamma/beta -> weight/bias)."""
    out = {}
    for name, p in net.parameters_dict().items():
        out[name.replace(".gamma", ".weight").replace(".beta", ".bias")] = p.asnumpy()
    return out


def test_converter_key_map_and_round_trip():
    rng = np.random.default_rng(3)
    src = mindcv_ext.create_model("vit_pico_patch8_56", num_classes=5)
    src.set_train(False)
    for p in src.get_parameters():
        p.set_data(ms.Tensor(rng.standard_normal(p.shape).astype(np.float32) * 0.05))
    sd = _torch_names(src)
    assert "blocks.0.norm1.weight" in sd and "norm.bias" in sd and "blocks.0.attn.qkv.weight" in sd
    mapped = vit.vit_state_dict_from_torch(sd, grid=7)
    assert "blocks.0.norm1.gamma" in mapped and "norm.beta" in mapped
    np.testing.assert_array_equal(mapped["blocks.1.attn.qkv.weight"], sd["blocks.1.attn.qkv.weight"])
    dst = mindcv_ext.create_model("vit_pico_patch8_56", num_classes=5)
    dst.set_train(False)
    ms.load_param_into_net(dst, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in mapped.items()})
    x = ms.Tensor(rng.standard_normal((1, 3, 56, 56)).astype(np.float32))
    np.testing.assert_allclose(dst(x).asnumpy(), src(x).asnumpy(), atol=1e-6)


def test_converter_beit_qkv_bias_layout():
    sd = _torch_names(mindcv_ext.create_model("vit_pico_patch8_56"))
    qkv_bias = sd.pop("blocks.2.attn.qkv.bias")
    sd["blocks.2.attn.q_bias"], sd["blocks.2.attn.v_bias"] = qkv_bias[:64] + 1, qkv_bias[128:] + 2
    mapped = vit.vit_state_dict_from_torch(sd)
    bias = mapped["blocks.2.attn.qkv.bias"]
    np.testing.assert_array_equal(bias[:64], qkv_bias[:64] + 1)
    assert not bias[64:128].any()  # no key bias
    np.testing.assert_array_equal(bias[128:], qkv_bias[128:] + 2)


def test_fastmim_pretraining_checkpoint_to_finetuning():
    """Pre-training dict (6-head model at 128 px: 8x8 sin-cos pos_embed + decoder + mask token) ->
    fine-tuning model (14x14 learned pos_embed); average pooling drops ``norm``."""
    base = _torch_names(mindcv_ext.create_model("vit_pico_patch8_56", num_classes=0, img_size=64))
    sd = {k: v for k, v in base.items() if k != "pos_embed"}
    sd["pos_embed"] = vit.sincos_table(64, 8)[None]
    sd["mask_token"] = np.zeros((1, 3, 1, 1), np.float32)
    sd["decoder_embed.weight"] = np.zeros((32, 64), np.float32)
    sd["decoder_pred.weight"] = np.zeros((108, 32), np.float32)
    mapped = vit.vit_state_dict_from_torch(sd, grid=14, global_pool="avg", num_classes=10)
    assert mapped["pos_embed"].shape == (1, 197, 64)
    assert not any(k.startswith(("decoder_", "mask_token", "norm.")) for k in mapped)
    np.testing.assert_allclose(mapped["pos_embed"][0, 1:].reshape(14, 14, 64),
                               cv2.resize(sd["pos_embed"][0, 1:].reshape(8, 8, 64), (14, 14),
                                          interpolation=cv2.INTER_CUBIC), atol=1e-4)
    # the registered converter (token pooling, default grid) passes the name/shape checks
    sd.pop("decoder_embed.weight")
    sd["head.weight"], sd["head.bias"] = np.zeros((1000, 64), np.float32), np.zeros(1000, np.float32)
    out = convert_state_dict("vit_pico_patch8_56", sd)
    assert out["pos_embed"].shape == (1, 50, 64)
    with pytest.raises(ConversionError, match="does not look like a ViT"):
        vit.vit_state_dict_from_torch({"conv1.weight": np.zeros(3)})
