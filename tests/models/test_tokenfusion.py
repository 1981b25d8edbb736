"""TokenFusion: exchange semantics, soft pruning gradient, L1 term, shared weights and per-modality
LayerNorms, official checkpoint and ImageNet MiT conversion, graph-mode exchange."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import ops

import mindcv_ext
from mindcv_ext.convert import ConversionError, convert_state_dict
from mindcv_ext.models import tokenfusion as tf
from mindcv_ext.seg.loss import score_l1, tokenfusion_loss
from mindcv_ext.utils.summary import count_params

ms.set_context(mode=ms.PYNATIVE_MODE)

TINY_DIMS, SR = (16, 32, 64, 128), (8, 4, 2, 1)


def T(a):
    return ms.Tensor(np.asarray(a, np.float32))


def _inputs(seed=0, size=32, batch=2):
    rng = np.random.default_rng(seed)
    return T(rng.normal(size=(batch, 3, size, size))), T(rng.normal(size=(batch, 3, size, size)))


def _tiny(num_classes=5, **kw):
    net = mindcv_ext.create_model("tokenfusion_mit_tiny", num_classes=num_classes, **kw)
    net.set_train(False)
    return net


@pytest.fixture(scope="module")
def tiny():
    return _tiny()


@pytest.fixture(scope="module")
def tiny_outputs(tiny):
    rgb, depth = _inputs()
    return tiny(rgb, depth)


# ------------------------------------------------------------------------------ exchange semantics

def test_exchange_keeps_or_replaces_each_token_both_directions():
    x0 = np.arange(12, dtype=np.float32).reshape(1, 4, 3)
    x1 = -np.arange(12, dtype=np.float32).reshape(1, 4, 3) - 100
    s0 = [[0.5, 0.01, 0.02, 0.0]]      # token 1 and 3 of RGB are replaced; 0.02 itself is kept
    s1 = [[0.019, 0.9, 0.3, 0.001]]    # token 0 and 3 of depth are replaced
    y0, y1 = tf.TokenExchange(0.02)(T(x0), T(x1), T(s0), T(s1))
    y0, y1 = y0.asnumpy(), y1.asnumpy()
    np.testing.assert_array_equal(y0[0], np.stack([x0[0, 0], x1[0, 1], x0[0, 2], x1[0, 3]]))
    np.testing.assert_array_equal(y1[0], np.stack([x0[0, 0], x1[0, 1], x1[0, 2], x0[0, 3]]))


def test_attention_branch_prunes_then_exchanges():
    att = tf.ParallelAttention(16, 2, 2)
    rng = np.random.default_rng(3)
    x0, x1 = T(rng.normal(size=(2, 16, 16))), T(rng.normal(size=(2, 16, 16)))
    s0 = rng.uniform(0, 0.05, (2, 16)).astype(np.float32)
    s1 = rng.uniform(0, 0.05, (2, 16)).astype(np.float32)
    a0, a1 = (a.asnumpy() for a in att.attend(x0, x1, 4, 4))
    y0, y1 = (y.asnumpy() for y in att(x0, x1, 4, 4, T(s0), T(s1)))
    keep0, keep1 = s0 >= 0.02, s1 >= 0.02
    assert keep0.any() and (~keep0).any() and keep1.any() and (~keep1).any()
    # tokens at or above the threshold: their own pruned update, untouched by the other modality
    np.testing.assert_array_equal(y0[keep0], (a0 * s0[..., None])[keep0])
    np.testing.assert_array_equal(y1[keep1], (a1 * s1[..., None])[keep1])
    # tokens below: the other modality's pruned update at the same position
    np.testing.assert_array_equal(y0[~keep0], (a1 * s1[..., None])[~keep0])
    np.testing.assert_array_equal(y1[~keep1], (a0 * s0[..., None])[~keep1])


def test_a_replaced_token_gets_no_task_gradient_on_its_score():
    """Pruning then exchange: the score of a token below the threshold only multiplies an update
    that is discarded (unless the other modality takes it), so no task gradient reaches it and the
    L1 term alone pushes it further down; an exchanged token stays exchanged."""
    rng = np.random.default_rng(4)
    a0, a1, w0, w1 = (T(rng.normal(size=(1, 3, 4))) for _ in range(4))
    s1 = T([[0.5, 0.5, 0.01]])           # depth token 2 takes the RGB update
    ex = tf.TokenExchange(0.02)

    def task_loss(s0):
        y0, y1 = ex(a0 * ops.expand_dims(s0, -1), a1 * ops.expand_dims(s1, -1), s0, s1)
        return (y0 * w0).sum() + (y1 * w1).sum()

    g = ms.grad(task_loss)(T([[0.5, 0.01, 0.01]])).asnumpy()[0]
    assert g[0] != 0          # kept: its own update is used
    assert g[1] == 0          # replaced and not taken by depth: no task gradient
    assert g[2] != 0          # replaced, but depth token 2 uses the RGB update


def test_exchange_compiles_in_graph_mode():
    # (the whole tiny model also compiles in graph mode -- forward and train step -- but takes
    # minutes on two cores, so only the exchange Cell is compiled here)
    ex = tf.TokenExchange(0.02)
    x0, x1 = T(np.ones((1, 3, 2))), T(np.zeros((1, 3, 2)))
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        y0, y1 = ex(x0, x1, T([[0.5, 0.0, 0.3]]), T([[0.0, 0.5, 0.5]]))
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    np.testing.assert_array_equal(y0.asnumpy()[0, :, 0], [1, 0, 1])
    np.testing.assert_array_equal(y1.asnumpy()[0, :, 0], [1, 0, 0])


# ------------------------------------------------------------------------------ model outputs, loss

def test_outputs_scores_and_ensemble(tiny, tiny_outputs):
    net = tiny
    rgb = _inputs()[0]
    l0, l1, ens, scores = tiny_outputs
    assert tuple(l0.shape) == tuple(l1.shape) == tuple(ens.shape) == (2, 5, 8, 8)
    grids = tf.token_grids(32, 32)
    assert grids == [(8, 8), (4, 4), (2, 2), (1, 1)]
    assert len(scores) == len(net.score_layout) == 2 * 4
    for s, (stage, _, _) in zip(scores, net.score_layout):
        assert tuple(s.shape) == (2, grids[stage][0] * grids[stage][1])
        assert 0 <= s.asnumpy().min() and s.asnumpy().max() <= 1
    w = np.exp(net.alpha.asnumpy()) / np.exp(net.alpha.asnumpy()).sum()
    np.testing.assert_allclose(ens.asnumpy(), w[0] * l0.asnumpy() + w[1] * l1.asnumpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        net(rgb, T(np.zeros((2, 1, 32, 32))))


def test_l1_term_equals_the_sum_of_scores(tiny_outputs):
    outputs = tiny_outputs
    mask = ms.Tensor(np.random.default_rng(0).integers(0, 5, (2, 32, 32)).astype(np.int32))
    lam = 0.25
    diff = (tokenfusion_loss(outputs, mask, lam) - tokenfusion_loss(outputs, mask, 0.0)).asnumpy()
    ref = sum(float(np.abs(s.asnumpy()).sum()) for s in outputs[3])
    np.testing.assert_allclose(diff, lam * ref, rtol=1e-4)
    np.testing.assert_allclose(score_l1(outputs[3]).asnumpy(), ref, rtol=1e-5)


def test_task_loss_gradient_reaches_every_score_predictor(tiny):
    net = tiny
    rgb, depth = _inputs(2, batch=1)
    mask = ms.Tensor(np.random.default_rng(1).integers(0, 5, (1, 32, 32)).astype(np.int32))
    preds = [p for p in net.trainable_params() if "score_predictor" in p.name and p.name.endswith(".1.weight")]
    assert len(preds) == 8  # 4 stages x 2 modalities

    def loss_fn(a, b):
        return tokenfusion_loss(net(a, b), mask, 0.0)  # no L1 term: only the soft pruning path

    grads = ms.grad(loss_fn, grad_position=None, weights=preds)(rgb, depth)
    for p, g in zip(preds, grads):
        assert np.abs(g.asnumpy()).max() > 0, p.name


# ------------------------------------------------------------------------------ sharing and LayerNorms

def _mit_params(dims, depths, srs=SR, mlp=4, cin=3):
    shared, norms, prev = 0, 0, cin
    for i, (d, n, sr) in enumerate(zip(dims, depths, srs)):
        k = 7 if i == 0 else 3
        shared += k * k * prev * d + d
        norms += 2 * d * (1 + 2 * n + 1)  # patch norm, norm1/norm2 per block, stage norm
        block = (d * d + d) + (2 * d * d + 2 * d) + (d * d + d) + (mlp * d * d + mlp * d) \
            + (9 * mlp * d + mlp * d) + (mlp * d * d + d)
        if sr > 1:
            block += sr * sr * d * d + d
            norms += 2 * d * n
        shared += n * block
        prev = d
    return shared, norms


def _predictor_params(d):
    return 2 * d + (d * d + d) + (d * d // 2 + d // 2) + (d // 2 * d // 4 + d // 4) + (d // 4 * 2 + 2)


def test_shared_weights_counted_once():
    dims, depths = (32, 64, 160, 256), (2, 2, 2, 2)
    net = mindcv_ext.create_model("tokenfusion_mit_b0", num_classes=40)
    shared, norms = _mit_params(dims, depths)
    head = sum(c * 256 + 256 for c in dims) + 4 * 256 * 256 + 2 * 256 + 256 * 40 + 40
    predictors = 2 * sum(_predictor_params(d) for d in dims)
    # one copy of every conv/linear, two copies of every LayerNorm, 8 predictors, shared head, alpha
    assert count_params(net) == shared + 2 * norms + predictors + head + 2
    plain = mindcv_ext.create_model("segformer_mit_b0", num_classes=40)
    assert count_params(plain.encoder) == shared + norms


def _perturb(net, pattern):
    """Add noise to the parameters whose name holds ``pattern``; returns a restore function."""
    rng = np.random.default_rng(9)
    saved = {p.name: p.asnumpy().copy() for p in net.trainable_params() if pattern in p.name}
    assert saved
    for p in net.trainable_params():
        if p.name in saved:
            p.set_data(T(saved[p.name] + rng.normal(0, 0.5, p.shape)))

    def restore():
        for p in net.trainable_params():
            if p.name in saved:
                p.set_data(T(saved[p.name]))
    return restore


def test_modality_layernorms_are_separate_and_couple_only_through_exchange(tiny):
    rgb, depth = _inputs(4, batch=1)

    def logits():
        out = tiny(rgb, depth)
        return out[0].asnumpy(), out[1].asnumpy()

    # Threshold 0: no token is ever substituted (scores are >= 0), so the branches share weights but
    # no activations. Depth-only parameters (ln_1, depth score net) must leave the RGB logits
    # bit-identical, and RGB-only ones (ln_0) the depth logits.
    assert tf.set_threshold(tiny, 0.0) == 4
    rgb0, depth0 = logits()
    restore = _perturb(tiny, ".ln_1.")
    restore_s = _perturb(tiny, "score_nets.1.")
    rgb1, depth1 = logits()
    restore(), restore_s()
    np.testing.assert_array_equal(rgb1, rgb0)
    assert np.abs(depth1 - depth0).max() > 1e-3
    restore = _perturb(tiny, ".ln_0.")
    rgb2, depth2 = logits()
    restore()
    np.testing.assert_array_equal(depth2, depth0)
    assert np.abs(rgb2 - rgb0).max() > 1e-3
    # Threshold 2 > any score: every token takes the other modality's attention update, so the
    # depth LayerNorms now reach the RGB logits (the coupling is the exchange and nothing else).
    tf.set_threshold(tiny, 2.0)
    rgb3, _ = logits()
    restore = _perturb(tiny, ".ln_1.")
    rgb4, _ = logits()
    restore()
    tf.set_threshold(tiny, tf.DEFAULT_THRESHOLD)
    assert np.abs(rgb4 - rgb3).max() > 1e-3


# ------------------------------------------------------------------------------ converters

def official_wetr_shapes(dims, depths, num_classes, embed, srs=SR, mlp=4, old_mlp=False):
    """{official key: shape} of a WeTr segmenter state dict, from the official modules:
    ModuleParallel -> '<layer>.module', LayerNormParallel -> 'ln_0'/'ln_1', PredictorLG -> score_nets."""
    out, prev = {}, 3

    def ln(prefix, d):
        for m in (0, 1):
            out[f"{prefix}.ln_{m}.weight"] = out[f"{prefix}.ln_{m}.bias"] = (d,)

    for i, (d, n, sr) in enumerate(zip(dims, depths, srs), 1):
        e = f"encoder.patch_embed{i}"
        k = 7 if i == 1 else 3
        out[f"{e}.proj.module.weight"], out[f"{e}.proj.module.bias"] = (d, prev, k, k), (d,)
        ln(f"{e}.norm", d)
        for j in range(n):
            b = f"encoder.block{i}.{j}"
            ln(f"{b}.norm1", d)
            ln(f"{b}.norm2", d)
            for name, shape in (("q", (d, d)), ("kv", (2 * d, d)), ("proj", (d, d))):
                out[f"{b}.attn.{name}.module.weight"], out[f"{b}.attn.{name}.module.bias"] = shape, (shape[0],)
            if sr > 1:
                out[f"{b}.attn.sr.module.weight"], out[f"{b}.attn.sr.module.bias"] = (d, d, sr, sr), (d,)
                ln(f"{b}.attn.norm", d)
            fc1, fc2 = (f"{b}.mlp.module.fc1", f"{b}.mlp.module.fc2") if old_mlp else \
                (f"{b}.mlp.fc1.module", f"{b}.mlp.fc2.module")
            out[f"{fc1}.weight"], out[f"{fc1}.bias"] = (mlp * d, d), (mlp * d,)
            dw = f"{b}.mlp.module.dwconv.dwconv" if old_mlp else f"{b}.mlp.dwconv.dwconv"
            out[f"{dw}.weight"], out[f"{dw}.bias"] = (mlp * d, 1, 3, 3), (mlp * d,)
            out[f"{fc2}.weight"], out[f"{fc2}.bias"] = (d, mlp * d), (d,)
        ln(f"encoder.norm{i}", d)
        for m in (0, 1):
            p = f"encoder.score_predictor.{i - 1}.score_nets.{m}"
            out[f"{p}.0.weight"] = out[f"{p}.0.bias"] = (d,)
            for idx, (o, c) in zip((1, 3, 5, 7), ((d, d), (d // 2, d), (d // 4, d // 2), (2, d // 4))):
                out[f"{p}.{idx}.weight"], out[f"{p}.{idx}.bias"] = (o, c), (o,)
        prev = d
    for i, c in enumerate(dims, 1):
        out[f"decoder.linear_c{i}.proj.weight"], out[f"decoder.linear_c{i}.proj.bias"] = (embed, c), (embed,)
    out["decoder.linear_fuse.conv.weight"] = (embed, 4 * embed, 1, 1)
    for leaf in ("weight", "bias", "running_mean", "running_var"):
        out[f"decoder.linear_fuse.bn.{leaf}"] = (embed,)
    out["decoder.linear_fuse.bn.num_batches_tracked"] = ()
    out["decoder.linear_pred.weight"], out["decoder.linear_pred.bias"] = (num_classes, embed, 1, 1), (num_classes,)
    out["alpha"] = (2,)
    return out


@pytest.mark.parametrize("old_mlp", [False, True])
def test_official_checkpoint_converts(old_mlp):
    shapes = official_wetr_shapes(TINY_DIMS, (1, 1, 1, 1), 5, 64, old_mlp=old_mlp)
    rng = np.random.default_rng(7)
    sd = {"module." + k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    mapped = convert_state_dict("tokenfusion_mit_tiny", sd, num_classes=5)
    assert len(mapped) == len(shapes) - 1  # num_batches_tracked dropped
    fc1 = "mlp.module.fc1" if old_mlp else "mlp.fc1.module"
    pairs = {"encoder.block2.0.norm1.ln_1.gamma": "encoder.block2.0.norm1.ln_1.weight",
             "encoder.block1.0.attn.sr.weight": "encoder.block1.0.attn.sr.module.weight",
             "encoder.block3.0.mlp.fc1.bias": f"encoder.block3.0.{fc1}.bias",
             "encoder.score_predictor.2.score_nets.1.0.beta": "encoder.score_predictor.2.score_nets.1.0.bias",
             "encoder.score_predictor.0.score_nets.0.7.weight": "encoder.score_predictor.0.score_nets.0.7.weight",
             "decoder.linear_fuse.bn.moving_variance": "decoder.linear_fuse.bn.running_var", "alpha": "alpha"}
    for ours, official in pairs.items():
        np.testing.assert_array_equal(mapped[ours], sd["module." + official])
    net = _tiny()
    ms.load_param_into_net(net, {k: ms.Parameter(T(v), name=k) for k, v in mapped.items()}, strict_load=True)
    np.testing.assert_array_equal(net.alpha.asnumpy(), sd["module.alpha"])


def test_official_checkpoint_errors():
    shapes = official_wetr_shapes(TINY_DIMS, (1, 1, 1, 1), 5, 64)
    sd = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    del sd["encoder.block1.0.attn.q.module.weight"]
    with pytest.raises(ConversionError, match="block1.0.attn.q.weight"):
        convert_state_dict("tokenfusion_mit_tiny", sd, num_classes=5)
    with pytest.raises(ConversionError, match="ImageNet MiT"):
        tf.convert_official_state_dict({"patch_embed1.proj.weight": np.zeros(1)}, "tokenfusion_mit_tiny")


def test_imagenet_mit_duplicated_into_both_layernorms():
    from tests.models.test_segformer import official_mit_shapes
    shapes = official_mit_shapes(TINY_DIMS, (1, 1, 1, 1))
    rng = np.random.default_rng(8)
    sd = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    sd["head.weight"], sd["head.bias"] = np.zeros((1000, 128), np.float32), np.zeros(1000, np.float32)
    net = _tiny()
    left = tf.load_mit_imagenet(net, sd)
    assert left and all(k.startswith(("encoder.score_predictor.", "decoder.")) or k == "alpha" for k in left)
    params = net.parameters_dict()
    for copy in ("ln_0", "ln_1"):
        np.testing.assert_array_equal(params[f"encoder.block1.0.norm2.{copy}.gamma"].asnumpy(),
                                      sd["block1.0.norm2.weight"])
        np.testing.assert_array_equal(params[f"encoder.patch_embed3.norm.{copy}.beta"].asnumpy(),
                                      sd["patch_embed3.norm.bias"])
    np.testing.assert_array_equal(params["encoder.block4.0.attn.kv.weight"].asnumpy(), sd["block4.0.attn.kv.weight"])
