"""Adaptation steps: frozen classifier in a compiled CDD step, BN lr multiplier, the inv schedule,
and an end-to-end mini SFDA-DE run on the digits shift against source-only."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

import mindcv_ext
from mindcv_ext import da
from mindcv_ext.da.optim import AdaptationOptimError


def test_inv_schedule():
    assert da.inv_lr(0.01, 0) == pytest.approx(0.01)
    assert da.inv_lr(0.01, 1000, alpha=1e-3, beta=0.75) == pytest.approx(0.01 * 2 ** -0.75)
    assert da.inv_lr(1e-4, 2000, alpha=5e-4, beta=2.25) == pytest.approx(1e-4 * 2 ** -2.25)
    lrs = da.inv_lr_schedule(0.1, 50)
    assert len(lrs) == 50 and all(a > b for a, b in zip(lrs, lrs[1:]))
    with pytest.raises(AdaptationOptimError):
        da.inv_lr_schedule(0.1, 0)


def _adapt_step(net, lr, classes_per_batch, samples_per_class, num_classes, bn_lr_mult=10.0):
    groups = da.adaptation_param_groups(net, lr, bn_lr_mult=bn_lr_mult)
    opt = nn.SGD(groups, learning_rate=groups[0]["lr"], momentum=0.9)
    loss = da.SFDALoss(net, da.CDD(num_classes, classes_per_batch, samples_per_class))
    return nn.TrainOneStepCell(loss, opt), groups


def test_classifier_is_frozen_and_bn_gets_its_multiplier_in_a_compiled_step():
    ms.set_seed(0)
    net = mindcv_ext.create_model("shot_mlp", num_classes=4, in_features=12, hidden=(16,), bottleneck_dim=8)
    step, groups = _adapt_step(net, 0.05, 2, 3, 4)
    bn_names = {p.name for p in groups[1]["params"]}
    assert groups[1]["lr"] == pytest.approx(0.5) and bn_names and all(".bn." in n for n in bn_names)
    assert not any("classifier" in p.name for g in groups for p in g["params"])
    before = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    ms.set_context(mode=ms.GRAPH_MODE)
    rng = np.random.default_rng(0)
    net.set_train(True)
    for _ in range(3):
        step(ms.Tensor(rng.standard_normal((6, 12)).astype(np.float32)),
             ms.Tensor(rng.standard_normal((6, 8)).astype(np.float32)), ms.Tensor(np.ones(2, np.float32)))
    ms.set_context(mode=ms.PYNATIVE_MODE)
    after = {p.name: p.asnumpy() for p in net.get_parameters()}
    for name in before:
        if "classifier" in name:
            np.testing.assert_array_equal(after[name], before[name])
    assert not np.allclose(after[net.bottleneck.fc.weight.name], before[net.bottleneck.fc.weight.name])
    with pytest.raises(AdaptationOptimError, match="no sub-cell 'head'"):
        da.freeze(net, ["head"])


# Digits shift (rotation +-20 deg, blur 0.6, noise 0.1; no inversion, see make_digits_shift), seed 0,
# shot_mlp 64-64-32; source 10 epochs; SFDA-DE 5 loops x 10 iterations, 5 classes x 8 samples.
# Measured: source-only 0.361, adapted 0.762 (the same loop with CDD weight 0, i.e. only the BN
# statistics following the target batches: 0.739).
SOURCE_ONLY_MARGIN = 0.2


def test_mini_adaptation_on_digits_beats_source_only(source_trainer):
    data = da.make_digits_shift(seed=0)
    ms.set_seed(0)
    net = mindcv_ext.create_model("shot_mlp", num_classes=10, in_channels=1, hidden=(64,), bottleneck_dim=32)
    source_trainer(net, data.source_x, data.source_y, epochs=10, lr=0.05, batch_size=64)
    feats, logits = da.extract_features(net, data.target_x)
    source_only = da.accuracy(logits.argmax(1), data.target_y)
    anchors = net.classifier_weights()
    loops, iters, c, s = 5, 10, 5, 8
    step, _ = _adapt_step(net, da.inv_lr_schedule(0.01, loops * iters), c, s, 10)
    history = []
    ms.set_context(mode=ms.GRAPH_MODE)
    for loop in range(loops):
        feats, logits = da.extract_features(net, data.target_x)
        state = da.refresh(feats, anchors, c, s, threshold=1.0, min_samples=5, seed=0, loop=loop)
        history.append({"target_acc": da.accuracy(logits.argmax(1), data.target_y),
                        "pseudo_label_acc": da.pseudo_label_accuracy(state.selection.labels, data.target_y,
                                                                     state.selection.usable_mask),
                        "kept_ratio": state.selection.kept_ratio})
        net.set_train(True)
        for idx, cls, mask, rng in state.sampler.iterate(iters):
            step(ms.Tensor(data.target_x[idx]), ms.Tensor(state.gaussians.sample(cls, s, rng)), ms.Tensor(mask))
    ms.set_context(mode=ms.PYNATIVE_MODE)
    _, logits = da.extract_features(net, data.target_x)
    adapted = da.accuracy(logits.argmax(1), data.target_y)
    print(f"digits shift: source-only {source_only:.3f}, adapted {adapted:.3f}, "
          f"pseudo-label acc {history[0]['pseudo_label_acc']:.3f} -> {history[-1]['pseudo_label_acc']:.3f}")
    assert adapted > source_only + SOURCE_ONLY_MARGIN
    np.testing.assert_allclose(net.classifier_weights(), anchors, rtol=0, atol=0)
