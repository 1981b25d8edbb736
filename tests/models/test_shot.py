"""SHOT-style source models: parameter counts, features vs logits, weight normalisation, the
frozen-able classifier sub-cell, the SHOT checkpoint converter, bad input."""
import numpy as np
import pytest
import mindspore as ms

import mindcv_ext
from mindcv_ext.convert import ConversionError
from mindcv_ext.models import model_family
from mindcv_ext.models.shot import convert_official_state_dict
from mindcv_ext.utils.summary import count_params

RESNET50_NO_FC = 25_557_032 - (2048 * 1000 + 1000)  # torchvision resnet50 without its fc


def _head_params(in_features, bottleneck, classes):
    # Linear(in, 256) + BN1d(256) affine + weight-normalised Linear (v, g per row, bias)
    return in_features * bottleneck + bottleneck + 2 * bottleneck + classes * bottleneck + 2 * classes


def test_shot_resnet50_parameter_count():
    net = mindcv_ext.create_model("shot_resnet50", num_classes=31)
    assert model_family("shot_resnet50") == "shot"
    assert count_params(net) == RESNET50_NO_FC + _head_params(2048, 256, 31)
    assert count_params(net.classifier) == 31 * 256 + 2 * 31


def _x(shape, seed=0):
    return ms.Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def test_features_logits_and_flag():
    net = mindcv_ext.create_model("shot_resnet20", num_classes=7, in_channels=1)
    net.set_train(False)
    x = _x((2, 1, 8, 8))
    feats = net.forward_features(x)
    assert feats.shape == (2, 64)
    logits = net(x)
    np.testing.assert_allclose(net.forward_head(feats).asnumpy(), logits.asnumpy(), rtol=1e-5, atol=1e-6)
    f2, l2 = net.features_and_logits(x)
    np.testing.assert_allclose(f2.asnumpy(), feats.asnumpy(), rtol=1e-6)
    flagged = mindcv_ext.create_model("shot_mlp", num_classes=3, in_features=10, return_features=True)
    flagged.set_train(False)
    f3, l3 = flagged(_x((4, 10)))
    assert f3.shape == (4, 32) and l3.shape == (4, 3)


def test_weight_normalised_classifier():
    net = mindcv_ext.create_model("shot_mlp", num_classes=5, in_features=6, bottleneck_dim=4)
    clf = net.classifier
    v, g, b = clf.weight_v.asnumpy(), clf.weight_g.asnumpy(), clf.bias.asnumpy()
    np.testing.assert_allclose(g[:, 0], np.linalg.norm(v, axis=1), rtol=1e-6)  # g starts at ||v||
    g2 = np.arange(1, 6, dtype=np.float32)[:, None]
    clf.weight_g.set_data(ms.Tensor(g2))
    clf.weight_v.set_data(ms.Tensor(v * 3.0))  # the scale of v does not matter
    w = g2 * v / np.linalg.norm(v, axis=1, keepdims=True)
    np.testing.assert_allclose(net.classifier_weights(), w, rtol=1e-5)
    f = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(clf(ms.Tensor(f)).asnumpy(), f @ w.T + b, rtol=1e-5, atol=1e-6)


def test_convert_shot_checkpoint():
    net = mindcv_ext.create_model("shot_resnet50", num_classes=12)
    ours = {p.name: p.shape for p in net.get_parameters()}
    to_torch = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}

    def shot_key(name):  # SHOT's netF / netB / netC names (torchvision ResNet + bottleneck + wn fc)
        for ms_prefix, prefix in (("backbone.", "netF."), ("bottleneck.fc.", "netB.bottleneck."),
                                  ("bottleneck.bn.", "netB.bn."), ("classifier.", "netC.fc.")):
            if name.startswith(ms_prefix):
                head, _, leaf = name[len(ms_prefix):].rpartition(".")
                return prefix + (head + "." if head else "") + to_torch.get(leaf, leaf)
        raise AssertionError(name)

    rng = np.random.default_rng(0)
    shot = {shot_key(n): rng.standard_normal(s).astype(np.float32) for n, s in ours.items()}
    shot["netF.bn1.num_batches_tracked"] = np.array(3)
    out = convert_official_state_dict(shot, "shot_resnet50")
    assert set(out) == set(ours)
    np.testing.assert_array_equal(out["classifier.weight_v"], shot["netC.fc.weight_v"])
    np.testing.assert_array_equal(out["backbone.layer1.0.downsample.1.moving_variance"],
                                  shot["netF.layer1.0.downsample.1.running_var"])
    np.testing.assert_array_equal(out["bottleneck.bn.gamma"], shot["netB.bn.weight"])
    with pytest.raises(ConversionError, match="SHOT source model"):
        convert_official_state_dict({"conv1.weight": np.zeros(1)}, "shot_resnet50")


def test_bad_input():
    net = mindcv_ext.create_model("shot_mlp", num_classes=3, in_features=10)
    with pytest.raises(ValueError, match="expects 10 input values"):
        net(_x((2, 12)))
    with pytest.raises(ValueError, match="expected input"):
        mindcv_ext.create_model("shot_resnet20", num_classes=3)(_x((2, 1, 8, 8)))
