"""The loss-only MIM model on ViT, Swin and GhostNetV2: shapes, gradients, and a falling loss."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

import mindcv_ext
from mindcv_ext.mim import RECIPES, MIMModel, block_mask, create_mim_model
from mindcv_ext.models.swin import SwinTransformer


def _shapes_images(n, size, seed=0):
    """Discs and bars on a noisy background (edges to predict), ImageNet-normalised-like scale."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        img = 0.1 * rng.standard_normal((3, size, size))
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        r = rng.uniform(0.15, 0.3) * size
        shape = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) if i % 2 else (np.abs(yy - cy) < r / 2)
        img += shape[None] * rng.uniform(0.5, 1.5, (3, 1, 1))
        out[i] = img
    return out


def _grad_norms(net, images, mask):
    grad_fn = ms.value_and_grad(net, None, net.trainable_params())
    loss, grads = grad_fn(images, mask)
    return float(loss.asnumpy()), {p.name: float(np.abs(g.asnumpy()).sum()) for p, g in zip(net.trainable_params(), grads)}


def test_vit_recipe_shapes_and_six_head_quirk():
    net = create_mim_model("vit_pico_patch8_56")
    assert net.backbone.blocks[0].attn.num_heads == 2  # pre-training heads (fine-tuning model: 4)
    assert net.backbone.pos_embed_type == "sincos" and net.target_dim == 108  # patch 8 / cell 4 = 2
    assert RECIPES["vit_base_patch16_224"]["backbone"]["num_heads"] == 6
    x = ms.Tensor(_shapes_images(2, 32))
    pred, target, tmask = net.forward_pred(x, ms.Tensor(block_mask(2, (4, 4), 0.75)))
    assert pred.shape == target.shape == (2, 16, 108) and tmask.asnumpy().sum(1).tolist() == [12, 12]
    # resolution-agnostic: the same model at 48 px (FastMIM-P switches resolution)
    pred, _, _ = net.forward_pred(ms.Tensor(_shapes_images(2, 48)), ms.Tensor(block_mask(2, (6, 6), 0.75)))
    assert pred.shape == (2, 36, 108)


def test_gradients_reach_backbone_decoder_and_mask_token():
    net = create_mim_model("vit_pico_patch8_56")
    loss, grads = _grad_norms(net, ms.Tensor(_shapes_images(2, 32)), ms.Tensor(block_mask(2, (4, 4), 0.75)))
    assert np.isfinite(loss)
    for name in ("mask_token", "backbone.patch_embed.proj.weight", "backbone.blocks.3.mlp.fc2.weight",
                 "decoder.decoder_pred.weight"):
        assert grads[name] > 0, name


def test_tiny_pretraining_loss_falls_at_32px():
    """A compiled (graph-mode) AdamW(0.9, 0.95) step on 16 images: fresh masks each step."""
    ms.set_seed(0)
    net = create_mim_model("vit_pico_patch8_56")
    images = ms.Tensor(_shapes_images(16, 32, seed=1))
    rng = np.random.default_rng(1)
    opt = nn.AdamWeightDecay(net.trainable_params(), learning_rate=2e-3, beta1=0.9, beta2=0.95, weight_decay=0.05)
    step = nn.TrainOneStepCell(net, opt)
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        losses = [float(step(images, ms.Tensor(block_mask(16, (4, 4), 0.75, rng))).asnumpy()) for _ in range(20)]
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


def test_swin_backbone_window_4_at_128px():
    swin = SwinTransformer(16, (2, 2, 2, 2), (1, 2, 2, 4), window_size=4, num_classes=0)
    net = MIMModel(swin, decoder_dim=32, decoder_depth=1, decoder_norm_eps=1e-5)
    assert net.stride == 32 and net.target_dim == 432
    x = ms.Tensor(_shapes_images(1, 128))
    mask = ms.Tensor(block_mask(1, (4, 4), 0.75))
    pred, target, tmask = net.forward_pred(x, mask)
    assert pred.shape == target.shape == (1, 16, 432) and tmask.asnumpy().sum() == 12


def test_own_backbone_ghostnetv2():
    """SimMIM-style masking needs no token dropping, so a CNN pre-trains the same way."""
    backbone = mindcv_ext.create_model("ghostnetv2_100", num_classes=0, kernels="composite")
    net = MIMModel(backbone, stride=32, decoder_dim=64, decoder_depth=1)
    loss, grads = _grad_norms(net, ms.Tensor(_shapes_images(2, 64)), ms.Tensor(block_mask(2, (2, 2), 0.75)))
    assert np.isfinite(loss) and loss > 0
    assert grads["backbone.conv_stem.weight"] > 0 and grads["mask_token"] > 0


def test_ghostnetv2_pretraining_checkpoint_fine_tunes(tmp_path):
    """The backbone of a MIM checkpoint lands in a plain classifier (``pretrained_mode: backbone``)."""
    from mindcv_ext.models.pretrain_surgery import adapt_pretrain_state
    from mindcv_ext.utils.checkpoint import load_weights
    ms.set_seed(3)
    net = MIMModel(mindcv_ext.create_model("ghostnetv2_100", num_classes=0, kernels="composite"),
                   stride=32, decoder_dim=64, decoder_depth=1)
    path = str(tmp_path / "pretrain.ckpt")
    ms.save_checkpoint(net, path)
    ms.set_seed(4)
    clf = mindcv_ext.create_model("ghostnetv2_100", num_classes=10, kernels="composite")
    report = load_weights(clf, path, mode="backbone", adapt=adapt_pretrain_state)
    src = {p.name: p.asnumpy() for p in net.get_parameters()}
    own = clf.parameters_dict()
    assert report["loaded"] and all(n.startswith(("decoder", "mask_token")) or n.startswith("backbone.")
                                    for n in report["skipped"])
    for name in report["loaded"]:
        np.testing.assert_array_equal(own[name].asnumpy(), src["backbone." + name], err_msg=name)
    assert set(report["not_in_checkpoint"]) <= {p.name for p in clf.get_parameters() if "classifier" in p.name}
