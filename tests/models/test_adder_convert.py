"""Official AdderNet checkpoints (huawei-noah/AdderNet naming) convert onto adder_resnet*."""
import numpy as np
import pytest

from mindcv_ext.convert import ConversionError, convert_checkpoint, convert_state_dict
from mindcv_ext.engine.checkpoint import load_weights
from mindcv_ext.models import create_model
from mindcv_ext.models.adder_resnet import convert_official_state_dict


def _bn(sd, prefix, c, rng):
    sd[f"{prefix}.weight"] = rng.standard_normal(c).astype(np.float32)
    sd[f"{prefix}.bias"] = rng.standard_normal(c).astype(np.float32)
    sd[f"{prefix}.running_mean"] = rng.standard_normal(c).astype(np.float32)
    sd[f"{prefix}.running_var"] = rng.random(c).astype(np.float32) + 0.5
    sd[f"{prefix}.num_batches_tracked"] = np.array(7, np.int64)


def official_resnet20_state_dict(num_classes=10, seed=0, prefix="module."):
    """The keys and shapes of huawei-noah/AdderNet resnet20.py, wrapped by DataParallel."""
    rng = np.random.default_rng(seed)
    sd = {"conv1.weight": rng.standard_normal((16, 3, 3, 3)).astype(np.float32)}
    _bn(sd, "bn1", 16, rng)
    inplanes = 16
    for stage, planes in enumerate((16, 32, 64), 1):
        for block in range(3):
            stride = 2 if (stage > 1 and block == 0) else 1
            base = f"layer{stage}.{block}"
            sd[f"{base}.conv1.adder"] = rng.standard_normal((planes, inplanes, 3, 3)).astype(np.float32)
            _bn(sd, f"{base}.bn1", planes, rng)
            sd[f"{base}.conv2.adder"] = rng.standard_normal((planes, planes, 3, 3)).astype(np.float32)
            _bn(sd, f"{base}.bn2", planes, rng)
            if stride != 1 or inplanes != planes:
                sd[f"{base}.downsample.0.adder"] = rng.standard_normal((planes, inplanes, 1, 1)).astype(np.float32)
                _bn(sd, f"{base}.downsample.1", planes, rng)
            inplanes = planes
    sd["fc.weight"] = rng.standard_normal((num_classes, 64, 1, 1)).astype(np.float32)
    _bn(sd, "bn2", num_classes, rng)
    return {prefix + k: v for k, v in sd.items()}


def test_official_resnet20_converts_and_loads(tmp_path):
    sd = official_resnet20_state_dict()
    mapped = convert_state_dict("adder_resnet20", sd, num_classes=10)
    net = create_model("adder_resnet20", num_classes=10)
    assert set(mapped) == set(net.parameters_dict())
    np.testing.assert_array_equal(mapped["layer2.0.downsample.0.weight"], sd["module.layer2.0.downsample.0.adder"])
    np.testing.assert_array_equal(mapped["layer3.2.conv2.weight"], sd["module.layer3.2.conv2.adder"])
    np.testing.assert_array_equal(mapped["fc.conv.weight"], sd["module.fc.weight"])
    np.testing.assert_array_equal(mapped["fc.bn.gamma"], sd["module.bn2.weight"])
    np.testing.assert_array_equal(mapped["fc.bn.moving_variance"], sd["module.bn2.running_var"])
    np.testing.assert_array_equal(mapped["layer1.0.bn2.beta"], sd["module.layer1.0.bn2.bias"])
    # the file route of `mindcv-ext convert --model adder_resnet20`
    src, out = tmp_path / "official.npz", tmp_path / "adder_resnet20.ckpt"
    np.savez(src, **sd)
    assert convert_checkpoint("adder_resnet20", str(src), str(out), num_classes=10) == len(mapped)
    load_weights(net, str(out))
    np.testing.assert_array_equal(net.fc.bn.moving_mean.asnumpy(), sd["module.bn2.running_mean"])
    np.testing.assert_array_equal(net.layer1[1].conv1.weight.asnumpy(), sd["module.layer1.1.conv1.adder"])


def test_classifier_bias_and_adder_bias_of_the_imagenet_files():
    sd = {"fc.weight": np.zeros((5, 8, 1, 1), np.float32), "fc.bias": np.ones(5, np.float32),
          "layer1.0.conv1.adder": np.zeros((2, 2, 1, 1), np.float32), "layer1.0.conv1.b": np.ones(2, np.float32)}
    mapped = convert_official_state_dict(sd, "adder_resnet50")
    assert set(mapped) == {"fc.conv.weight", "fc.conv.bias", "layer1.0.conv1.weight", "layer1.0.conv1.bias"}


def test_bad_official_files_are_named():
    sd = official_resnet20_state_dict(prefix="")
    with pytest.raises(ConversionError, match="layer1.0.attn.qkv"):
        convert_official_state_dict({**sd, "layer1.0.attn.qkv": np.zeros(3, np.float32)}, "adder_resnet20")
    with pytest.raises(ConversionError, match="only onto adder_resnet"):
        convert_official_state_dict(sd, "resnet20")
    wrong = dict(sd)
    del wrong["layer2.0.downsample.0.adder"]
    with pytest.raises(ConversionError, match="layer2.0.downsample.0.weight"):
        convert_state_dict("adder_resnet20", wrong, num_classes=10)
    with pytest.raises(ConversionError, match="shapes differ"):
        convert_state_dict("adder_resnet20", sd, num_classes=100)
