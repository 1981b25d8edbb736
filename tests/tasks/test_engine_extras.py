"""Engine pieces the coming methods need: several optimizers in one training checkpoint, partial
weight loading for fine-tuning, and a non-zero rank that writes nothing."""
import os

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

import mindcv_ext
from mindcv_ext.engine.checkpoint import load_training_state, save_training_state
from mindcv_ext.tasks import get_task
from mindcv_ext.utils.checkpoint import CheckpointError, load_weights, save_weights


def test_two_optimizers_round_trip_through_one_checkpoint(tmp_path):
    net = nn.SequentialCell([nn.Dense(3, 4), nn.Dense(4, 2)])
    arch = ms.Parameter(ms.Tensor(np.ones((2, 3), np.float32)), name="alphas")
    w_opt = nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9)
    a_opt = nn.Adam([arch], learning_rate=0.01)
    grads_w = tuple(ms.Tensor(np.full(p.shape, 0.5, np.float32)) for p in net.trainable_params())
    w_opt(grads_w)
    a_opt((ms.Tensor(np.full((2, 3), 0.2, np.float32)),))
    path = str(tmp_path / "state.ckpt")
    save_training_state(path, net, {"optim": w_opt, "arch_optim": a_opt}, meta={"epoch": 3})
    net2 = nn.SequentialCell([nn.Dense(3, 4), nn.Dense(4, 2)])
    arch2 = ms.Parameter(ms.Tensor(np.zeros((2, 3), np.float32)), name="alphas")
    w2, a2 = nn.Momentum(net2.trainable_params(), learning_rate=0.1, momentum=0.9), nn.Adam([arch2], learning_rate=0.01)
    meta = load_training_state(path, net2, {"optim": w2, "arch_optim": a2})
    assert meta["epoch"] == 3
    np.testing.assert_array_equal(arch2.asnumpy(), arch.asnumpy())
    for name in ("moment1.alphas", "moment2.alphas", "beta1_power"):
        np.testing.assert_array_equal(a2.parameters_dict()[name].asnumpy(), a_opt.parameters_dict()[name].asnumpy())
    moments = [n for n in w_opt.parameters_dict() if n.startswith("moments.")]
    assert moments and all(np.array_equal(w2.parameters_dict()[n].asnumpy(), w_opt.parameters_dict()[n].asnumpy())
                           for n in moments)
    # the model part of that file loads as weights: the optimizer entries are not taken for weights
    net3 = nn.SequentialCell([nn.Dense(3, 4), nn.Dense(4, 2)])
    load_weights(net3, path)
    with pytest.raises(CheckpointError, match="optimizer 'arch_optim'"):
        load_training_state(path, net3, {"optim": w2, "arch_optim": nn.Adam([ms.Parameter(
            ms.Tensor(np.zeros((5,), np.float32)), name="beta")], learning_rate=0.1)})


def test_partial_loading_modes(tmp_path, capsys):
    src = mindcv_ext.create_model("resnet20", num_classes=10)
    path = str(tmp_path / "r20.ckpt")
    save_weights(src, path)
    head_new = mindcv_ext.create_model("resnet20", num_classes=3)
    with pytest.raises(CheckpointError, match="shape mismatch.*fc.weight"):
        load_weights(head_new, path)
    report = load_weights(head_new, path, mode="skip_head")
    assert report["not_in_checkpoint"] == ["fc.bias", "fc.weight"] and report["skipped"] == ["fc.bias", "fc.weight"]
    np.testing.assert_array_equal(head_new.conv1.weight.asnumpy(), src.conv1.weight.asnumpy())
    deeper = mindcv_ext.create_model("resnet32", num_classes=10)
    with pytest.raises(CheckpointError, match="lacks body parameters"):
        load_weights(deeper, path, mode="skip_head")
    report = load_weights(deeper, path, mode="backbone")
    assert "layer1.3.conv1.weight" in report["not_in_checkpoint"] and not report["skipped"]
    # a pre-training checkpoint with an encoder. prefix
    from mindcv_ext.utils.checkpoint import save_param_dict
    prefixed = str(tmp_path / "enc.ckpt")
    save_param_dict({"encoder." + p.name: p.asnumpy() for p in src.get_parameters()}, prefixed)
    fresh = mindcv_ext.create_model("resnet20", num_classes=10)
    report = load_weights(fresh, prefixed, mode="key_map", key_map={"encoder.": ""})
    assert not report["not_in_checkpoint"]
    np.testing.assert_array_equal(fresh.fc.weight.asnumpy(), src.fc.weight.asnumpy())


def test_only_rank_zero_writes(tiny_cfg, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_cfg("data.max_samples=32", "train.epochs=1", "train.max_steps_per_epoch=1", "train.jit=false",
                   f"train.output_dir={out}")
    task = get_task("classification")(cfg, rank=1, world=2).build()
    task.fit()
    assert task.history and not os.path.exists(out)
