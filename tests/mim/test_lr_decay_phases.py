"""Layer-wise lr decay ids (ViT / Swin rules of the official lr_decay.py) and FastMIM-P phases."""
import math

import numpy as np
import pytest

import mindcv_ext
from mindcv_ext.mim.lr_decay import (LayerDecayError, layer_decay_param_groups, layer_decay_scales,
                                     model_layer_decay_scales, swin_layer_id, vit_layer_id)
from mindcv_ext.mim.phases import (PhaseError, make_phases, phase_for_epoch, pretrain_lr_per_step,
                                   warmup_cosine_lr)


def test_vit_ids_and_scales():
    assert [vit_layer_id(n, 12) for n in ("cls_token", "pos_embed", "patch_embed.proj.weight",
                                          "blocks.0.attn.qkv.weight", "blocks.11.mlp.fc2.bias",
                                          "fc_norm.gamma", "norm.beta", "head.weight")] == [0, 0, 0, 1, 12, 13, 13, 13]
    net = mindcv_ext.create_model("vit_pico_patch8_56", global_pool="avg")  # depth 4 -> 5 layers
    scales = model_layer_decay_scales(net, 0.7)
    assert math.isclose(scales["cls_token"], 0.7 ** 5) and math.isclose(scales["pos_embed"], 0.7 ** 5)
    assert math.isclose(scales["blocks.0.norm1.gamma"], 0.7 ** 4)
    assert math.isclose(scales["blocks.3.attn.proj.weight"], 0.7)
    assert scales["head.weight"] == scales["fc_norm.gamma"] == 1.0
    assert len(scales) == len(net.trainable_params())


def test_swin_b_ids():
    depths = (2, 2, 18, 2)  # 1 + 24 blocks = 25 layers
    cases = {"patch_embed.proj.weight": 0, "layers.0.blocks.0.attn.qkv.weight": 1, "layers.0.blocks.1.norm1.gamma": 2,
             "layers.0.downsample.reduction.weight": 2, "layers.1.blocks.0.mlp.fc1.weight": 3,
             "layers.1.downsample.norm.gamma": 4, "layers.2.blocks.17.attn.proj.bias": 22,
             "layers.2.downsample.reduction.weight": 22, "layers.3.blocks.1.norm2.beta": 24,
             "norm.gamma": 25, "head.weight": 25}
    for name, want in cases.items():
        assert swin_layer_id(name, depths) == want, name
    scales = layer_decay_scales(["backbone.layers.2.downsample.norm.beta"], "swin", 0.8, depths=depths,
                                prefix="backbone.")
    assert math.isclose(scales["backbone.layers.2.downsample.norm.beta"], 0.8 ** 3)
    with pytest.raises(LayerDecayError, match="needs depths"):
        layer_decay_scales(["norm.gamma"], "swin", 0.8)


def test_param_groups_scale_lr_and_skip_decay_on_1d():
    net = mindcv_ext.create_model("vit_pico_patch8_56")
    scales = model_layer_decay_scales(net, 0.5)
    groups = layer_decay_param_groups(net.trainable_params(), scales, 0.05, [1.0, 2.0])
    assert sum(len(g["params"]) for g in groups) == len(net.trainable_params())
    for g in groups:
        assert g["lr"] == [g["lr_scale"], 2 * g["lr_scale"]]
        names = [p.name for p in g["params"]]
        if any(p.name == "cls_token" or len(p.shape) == 1 for p in g["params"]):
            assert g["weight_decay"] == 0.0, names
        else:
            assert g["weight_decay"] == 0.05, names


PHASES = [(0, 128, 512), (300, 160, 384, 1), (600, 224, 256, 2)]


@pytest.mark.parametrize("epoch,index", [(0, 0), (299, 0), (300, 1), (599, 1), (600, 2), (799, 2)])
def test_phase_for_epoch(epoch, index):
    s = phase_for_epoch(PHASES, epoch, blr=1.5e-4, world_size=8)
    res, batch, accum = PHASES[index][1:3] + ((PHASES[index][3],) if len(PHASES[index]) > 3 else (1,))
    assert (s["index"], s["resolution"], s["batch"], s["accum"]) == (index, res, batch, accum)
    assert math.isclose(s["lr"], 1.5e-4 * batch * accum * 8 / 256)  # 2.4e-3 at 512 x 8 (the ViT-B recipe)


def test_phase_errors():
    with pytest.raises(PhaseError, match="start at epoch 0"):
        make_phases([(10, 128, 64)])
    with pytest.raises(PhaseError, match="strictly increasing"):
        make_phases([(0, 128, 64), (5, 160, 32), (5, 192, 32)])
    with pytest.raises(PhaseError, match="at least one"):
        make_phases([])


def test_lr_schedule_follows_global_epoch_and_phase_peak():
    phases = [(0, 32, 64), (3, 48, 32)]
    lrs = pretrain_lr_per_step(phases, epochs=6, steps_per_epoch=lambda b: 512 // b, blr=1e-3, warmup_epochs=1)
    assert [len(e) for e in lrs] == [8, 8, 8, 16, 16, 16]
    assert lrs[0][0] == 0.0 and math.isclose(lrs[0][4], 0.25 * 1e-3 * 0.5)  # warm-up from 0 to 2.5e-4
    peak1, peak2 = 1e-3 * 64 / 256, 1e-3 * 32 / 256
    for epoch, peak in ((2, peak1), (3, peak2), (5, peak2)):
        for i in (0, 3):
            e = epoch + i / len(lrs[epoch])
            want = 0.5 * peak * (1 + math.cos(math.pi * (e - 1) / 5))
            assert math.isclose(lrs[epoch][i], want), (epoch, i)
    assert math.isclose(warmup_cosine_lr(6.0, 1.0, 0.1, 1, 6), 0.1)
