"""TokenFusion translation generator and discriminator: output shapes and range, fusion only in the
last block of each encoder stage, the score predictors reached by the loss, shared weights counted
once, the ensemble of detached outputs."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import ops

import mindcv_ext
from mindcv_ext.models import tokenfusion as tf
from mindcv_ext.models import tokenfusion_gen as tg
from mindcv_ext.utils.summary import count_params

ms.set_context(mode=ms.PYNATIVE_MODE)

DEPTHS = (2, 2, 1, 1, 1)   # two blocks in the first stages: fusion must sit in the second one only
DIMS = tg.GEN_CONFIGS["tiny"]["embed_dims"]
SRS = tg.GEN_CONFIGS["tiny"]["sr_ratios"]


def _inputs(size=32, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(ms.Tensor(rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)) for _ in range(2))


@pytest.fixture(scope="module")
def gen():
    net = mindcv_ext.create_model("tokenfusion_gen_tiny", depths=DEPTHS)
    net.set_train(False)
    return net


@pytest.fixture(scope="module")
def outputs(gen):
    return gen(*_inputs())


def test_generator_outputs_images_in_tanh_range_and_scores_per_stage(outputs):
    out0, out1, ens, scores = outputs
    for o in (out0, out1, ens):
        assert o.shape == (2, 3, 32, 32)
        # tanh: |y| <= 1 (up to the float32 rounding of the CPU kernel)
        assert np.abs(o.asnumpy()).max() <= 1.0 + 1e-5
    assert len(scores) == 2 * tg.NUM_STAGES   # one score map per stage and modality
    sides = tg.stage_sizes(32)
    assert [tuple(s.shape) for s in scores] == [(2, side * side) for side in sides for _ in range(2)]
    assert all(((s.asnumpy() >= 0) & (s.asnumpy() <= 1)).all() for s in scores)


def test_ensemble_is_softmax_alpha_of_the_two_outputs(gen, outputs):
    out0, out1, ens, _ = outputs
    w = np.exp(gen.alpha.asnumpy()) / np.exp(gen.alpha.asnumpy()).sum()
    np.testing.assert_allclose(ens.asnumpy(), w[0] * out0.asnumpy() + w[1] * out1.asnumpy(), atol=1e-6)


def test_fusion_only_in_the_last_block_of_each_encoder_stage(gen):
    enc = gen.encoder
    predictors = [c for _, c in gen.cells_and_names() if isinstance(c, tf.ScorePredictor)]
    assert len(predictors) == tg.NUM_STAGES
    for stage, depth in zip(enc.blocks, DEPTHS):
        kinds = [type(b) for b in stage]
        assert len(kinds) == depth
        assert kinds[-1] is tf.TokenFusionBlock and all(k is tg.ParallelBlock for k in kinds[:-1])
    for stage in gen.blocks:   # the decoder never fuses
        assert all(type(b) is tg.ParallelBlock for b in stage)
    assert gen.score_layout == [(i, d - 1, m) for i, d in enumerate(DEPTHS) for m in tg.MODALITIES]


def test_loss_reaches_every_stage_predictor_through_soft_pruning(gen):
    """No loss term on the scores: the gradient reaches each predictor only through the
    score-weighted attention update of its stage's fused block."""
    x0, x1 = _inputs(seed=1)
    params = [p for p in gen.trainable_params() if "score_predictor" in p.name]

    def loss_fn(a, b):
        out0, out1, _, _ = gen(a, b)
        return (out0 ** 2).mean() + (out1 ** 2).mean()

    grads = ms.grad(loss_fn, grad_position=None, weights=params)(x0, x1)
    per_stage = {}
    for p, g in zip(params, grads):
        stage = int(p.name.split("score_predictor.")[1].split(".")[0])
        per_stage[stage] = per_stage.get(stage, 0.0) + float(np.abs(g.asnumpy()).sum())
    assert sorted(per_stage) == list(range(tg.NUM_STAGES))
    assert all(v > 0 for v in per_stage.values()), per_stage


def _block_params(d, sr):
    shared = (d * d + d) + (2 * d * d + 2 * d) + (d * d + d)            # q, kv, proj
    shared += (sr * sr * d * d + d) if sr > 1 else 0                    # sr conv
    shared += (4 * d * d + 4 * d) + (9 * 4 * d + 4 * d) + (4 * d * d + d)  # fc1, dwconv, fc2
    norms = 2 * d + 2 * d + (2 * d if sr > 1 else 0)                   # norm1, norm2, sr norm (one copy)
    return shared, norms


def _predictor(d):
    return 2 * d + (d * d + d) + (d * (d // 2) + d // 2) + ((d // 2) * (d // 4) + d // 4) + (d // 4 * 2 + 2)


def test_shared_weights_counted_once(gen):
    shared, norms, cin = 0, 0, 3
    for d, n, sr in zip(DIMS, DEPTHS, SRS):                 # encoder
        shared += 9 * cin * d + d                           # 3x3/s2 patch conv
        norms += 2 * d + 2 * d                              # patch norm, stage norm
        s, m = _block_params(d, sr)
        shared, norms, cin = shared + n * s, norms + n * m, d
    for i in range(tg.NUM_STAGES - 1, 0, -1):              # decoder
        d = DIMS[i - 1]
        shared += (DIMS[i] // 4) * d + d                    # PixelShuffle(2) + 1x1 conv
        s, m = _block_params(d, SRS[i - 1])
        shared, norms = shared + DEPTHS[i - 1] * s, norms + DEPTHS[i - 1] * m + 2 * d
    shared += (DIMS[0] // 4) * DIMS[0] + DIMS[0] + DIMS[0] * 3 + 3   # final upsample, projection
    predictors = 2 * sum(_predictor(d) for d in DIMS)
    # one copy of every conv/linear, two of every LayerNorm, two predictors per stage, alpha
    assert count_params(gen) == shared + 2 * norms + predictors + 2


def test_discriminator_gives_one_patch_map_per_modality():
    dis = mindcv_ext.create_model("tokenfusion_dis_tiny")
    dis.set_train(False)
    x0, x1 = _inputs()
    y0, y1 = _inputs(seed=2)
    d0, d1 = dis(x0, x1, y0, y1)
    assert d0.shape == d1.shape == (2, 1, 1, 1)
    np.testing.assert_allclose(d0.asnumpy(), ops.sigmoid(dis.logits(x0, x1, y0, y1)[0]).asnumpy(), atol=1e-6)
    assert not any(isinstance(c, tf.ScorePredictor) for _, c in dis.cells_and_names())
    assert dis.encoder.patch_embed[0].proj.in_channels == 6   # concat(input, image)


def test_bad_inputs_are_refused(gen):
    x0, _ = _inputs(size=32)
    with pytest.raises(ValueError, match="same shape"):
        gen(x0, _inputs(size=64)[0])
    with pytest.raises(ValueError, match="multiples of 32"):
        gen(*_inputs(size=48))
    with pytest.raises(ValueError, match="5 stages"):
        mindcv_ext.create_model("tokenfusion_gen_tiny", depths=(1, 1, 1, 1))
