"""SegFormer / MiT: variant table, parameter counts against a count derived from the official layer
definitions, efficient attention against NumPy, output shapes, ImageNet MiT conversion."""
import numpy as np
import pytest
import mindspore as ms

import mindcv_ext
from mindcv_ext.convert import ConversionError
from mindcv_ext.models import segformer as sf
from mindcv_ext.utils.summary import count_params

ms.set_context(mode=ms.PYNATIVE_MODE)

# Official mix_transformer.py variant table.
OFFICIAL = {
    "mit_b0": ((32, 64, 160, 256), (2, 2, 2, 2)),
    "mit_b1": ((64, 128, 320, 512), (2, 2, 2, 2)),
    "mit_b2": ((64, 128, 320, 512), (3, 4, 6, 3)),
    "mit_b3": ((64, 128, 320, 512), (3, 4, 18, 3)),
    "mit_b4": ((64, 128, 320, 512), (3, 8, 27, 3)),
    "mit_b5": ((64, 128, 320, 512), (3, 6, 40, 3)),
}
SR = (8, 4, 2, 1)


def official_mit_shapes(dims, depths, srs=SR, cin=3, mlp=4):
    """{official key: shape} of an ImageNet MiT state dict (head excluded), from the official modules."""
    out, prev = {}, cin
    for i, (d, n, sr) in enumerate(zip(dims, depths, srs), 1):
        k = 7 if i == 1 else 3
        out[f"patch_embed{i}.proj.weight"] = (d, prev, k, k)
        out[f"patch_embed{i}.proj.bias"] = (d,)
        out[f"patch_embed{i}.norm.weight"] = out[f"patch_embed{i}.norm.bias"] = (d,)
        for j in range(n):
            b = f"block{i}.{j}"
            for nm in ("norm1", "norm2"):
                out[f"{b}.{nm}.weight"] = out[f"{b}.{nm}.bias"] = (d,)
            out[f"{b}.attn.q.weight"], out[f"{b}.attn.q.bias"] = (d, d), (d,)
            out[f"{b}.attn.kv.weight"], out[f"{b}.attn.kv.bias"] = (2 * d, d), (2 * d,)
            out[f"{b}.attn.proj.weight"], out[f"{b}.attn.proj.bias"] = (d, d), (d,)
            if sr > 1:
                out[f"{b}.attn.sr.weight"], out[f"{b}.attn.sr.bias"] = (d, d, sr, sr), (d,)
                out[f"{b}.attn.norm.weight"] = out[f"{b}.attn.norm.bias"] = (d,)
            out[f"{b}.mlp.fc1.weight"], out[f"{b}.mlp.fc1.bias"] = (mlp * d, d), (mlp * d,)
            out[f"{b}.mlp.dwconv.dwconv.weight"], out[f"{b}.mlp.dwconv.dwconv.bias"] = (mlp * d, 1, 3, 3), (mlp * d,)
            out[f"{b}.mlp.fc2.weight"], out[f"{b}.mlp.fc2.bias"] = (d, mlp * d), (d,)
        out[f"norm{i}.weight"] = out[f"norm{i}.bias"] = (d,)
        prev = d
    return out


def head_params(dims, embed, classes):
    return sum(c * embed + embed for c in dims) + 4 * embed * embed + 2 * embed + embed * classes + classes


def n_elems(shapes):
    return int(sum(np.prod(s) for s in shapes.values()))


def test_registered_variants_follow_the_official_table():
    for name, (dims, depths) in OFFICIAL.items():
        assert mindcv_ext.models.is_model(f"segformer_{name}")
        cfg = sf.MIT_CONFIGS[name]
        assert cfg["embed_dims"] == dims and cfg["depths"] == depths
        assert cfg["num_heads"] == (1, 2, 5, 8) and cfg["sr_ratios"] == SR and cfg["mlp_ratio"] == 4
    assert mindcv_ext.models.is_model("segformer_mit_tiny")


@pytest.mark.parametrize("name", ["mit_b0", "mit_b1", "mit_b2"])
def test_param_count_matches_official_layer_definitions(name):
    dims, depths = OFFICIAL[name]
    net = mindcv_ext.create_model(f"segformer_{name}", num_classes=150)
    embed = 256 if name == "mit_b0" else 768  # original SegFormer head widths
    assert count_params(net.encoder) == n_elems(official_mit_shapes(dims, depths))
    assert count_params(net) == n_elems(official_mit_shapes(dims, depths)) + head_params(dims, embed, 150)


def _layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def _np(p):
    return p.asnumpy().astype(np.float64)


def numpy_efficient_attention(cell, x, h, w, heads):
    """Independent reference: keys/values from non-overlapping sr x sr patches (conv k = stride = sr)."""
    b, n, c = x.shape
    params = {k.split(".")[-2] + "." + k.split(".")[-1]: _np(v) for k, v in cell.parameters_and_names()}
    q = x @ params["q.weight"].T + params["q.bias"]
    src = x
    if cell.sr_ratio > 1:
        r = cell.sr_ratio
        grid = x.reshape(b, h, w, c).reshape(b, h // r, r, w // r, r, c)
        wgt = params["sr.weight"]  # (out, in, r, r)
        src = np.einsum("byixjc,ocij->byxo", grid, wgt).reshape(b, -1, c) + params["sr.bias"]
        src = _layer_norm(src, params["norm.gamma"], params["norm.beta"], 1e-5)
    kv = src @ params["kv.weight"].T + params["kv.bias"]
    k, v = kv[..., :c], kv[..., c:]
    d = c // heads
    out = np.zeros_like(q)
    for hd in range(heads):
        sl = slice(hd * d, (hd + 1) * d)
        logits = q[..., sl] @ k[..., sl].transpose(0, 2, 1) / np.sqrt(d)
        logits -= logits.max(-1, keepdims=True)
        att = np.exp(logits)
        att /= att.sum(-1, keepdims=True)
        out[..., sl] = att @ v[..., sl]
    return out @ params["proj.weight"].T + params["proj.bias"]


@pytest.mark.parametrize("sr,heads", [(2, 2), (1, 4)])
def test_efficient_attention_matches_numpy(sr, heads):
    cell = sf.EfficientAttention(16, heads, sr)
    rng = np.random.default_rng(0)
    for _, p in cell.parameters_and_names():
        p.set_data(ms.Tensor(rng.normal(0, 0.3, p.shape).astype(np.float32)))
    x = rng.normal(size=(2, 8 * 6, 16)).astype(np.float32)
    got = cell(ms.Tensor(x), 8, 6).asnumpy()
    ref = numpy_efficient_attention(cell, x.astype(np.float64), 8, 6, heads)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_tiny_segformer_shapes_and_strides():
    net = mindcv_ext.create_model("segformer_mit_tiny", num_classes=6)
    net.set_train(False)
    x = ms.Tensor(np.random.default_rng(1).normal(size=(2, 3, 64, 96)).astype(np.float32))
    feats = net.encoder(x)
    assert [tuple(f.shape) for f in feats] == [(2, 16, 16, 24), (2, 32, 8, 12), (2, 64, 4, 6), (2, 128, 2, 3)]
    assert tuple(net(x).shape) == (2, 6, 16, 24)
    with pytest.raises(ValueError, match="expected input"):
        net.encoder(ms.Tensor(np.zeros((1, 1, 32, 32), np.float32)))


def test_bad_config_errors():
    with pytest.raises(sf.MiTConfigError, match="divisible"):
        sf.MixVisionTransformer((30, 64, 160, 256), (1, 1, 1, 1), (4, 2, 5, 8), SR)
    with pytest.raises(sf.MiTConfigError, match="4 stages"):
        sf.MixVisionTransformer((32, 64), (1, 1), (1, 2), (8, 4))


def test_imagenet_mit_loads_into_encoder():
    net = mindcv_ext.create_model("segformer_mit_tiny", num_classes=4)
    dims = sf.MIT_CONFIGS["mit_tiny"]["embed_dims"]
    shapes = official_mit_shapes(dims, (1, 1, 1, 1))
    rng = np.random.default_rng(2)
    sd = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    sd["head.weight"], sd["head.bias"] = np.zeros((1000, dims[3]), np.float32), np.zeros(1000, np.float32)
    left = sf.load_mit_imagenet(net, sd)
    assert left and all(k.startswith("decoder.") for k in left)
    params = net.parameters_dict()
    np.testing.assert_array_equal(params["encoder.block2.0.norm1.gamma"].asnumpy(), sd["block2.0.norm1.weight"])
    np.testing.assert_array_equal(params["encoder.block1.0.attn.norm.beta"].asnumpy(), sd["block1.0.attn.norm.bias"])
    np.testing.assert_array_equal(params["encoder.block3.0.mlp.dwconv.dwconv.weight"].asnumpy(),
                                  sd["block3.0.mlp.dwconv.dwconv.weight"])
    del sd["norm4.weight"]
    with pytest.raises(ConversionError, match="norm4.gamma"):
        sf.load_mit_imagenet(net, sd)
    with pytest.raises(ConversionError, match="not an ImageNet MiT"):
        sf.load_mit_imagenet(net, {"foo.weight": np.zeros(3, np.float32)})
