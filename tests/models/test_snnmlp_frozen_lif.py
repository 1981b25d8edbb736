"""SNN-MLP with frozen tau / Vth (official --lif_fix_tau / --lif_fix_vth): buffers that still convert."""
import numpy as np
import pytest

import mindcv_ext
from mindcv_ext.convert import convert_state_dict
from mindcv_ext.engine.optim import param_groups
from mindcv_ext.models import snnmlp


pytestmark = pytest.mark.usefixtures("composite_kernels")


def _official_shapes(embed_dim=96, depths=(2, 2, 6, 2), num_classes=1000):
    """Key -> shape of the official snnmlp_t state dict (huawei-noah/Efficient-AI-Backbones snn_mlp.py)."""
    shapes = {"patch_embed.proj.weight": (embed_dim, 3, 4, 4), "patch_embed.proj.bias": (embed_dim,),
              "patch_embed.norm.weight": (embed_dim,), "patch_embed.norm.bias": (embed_dim,)}
    for s, depth in enumerate(depths):
        d = embed_dim * 2 ** s
        for b in range(depth):
            p = f"layers.{s}.blocks.{b}"
            for n in ("norm1", "norm2", "lif_module.norm1", "lif_module.norm2", "lif_module.norm3"):
                shapes[f"{p}.{n}.weight"] = shapes[f"{p}.{n}.bias"] = (d,)
            for c in ("conv1", "conv2_1", "conv2_2", "conv3"):
                shapes[f"{p}.lif_module.{c}.weight"], shapes[f"{p}.lif_module.{c}.bias"] = (d, d, 1, 1), (d,)
            shapes[f"{p}.lif_module.dw1.weight"], shapes[f"{p}.lif_module.dw1.bias"] = (d, 1, 3, 3), (d,)
            shapes[f"{p}.mlp.fc1.weight"], shapes[f"{p}.mlp.fc1.bias"] = (4 * d, d, 1, 1), (4 * d,)
            shapes[f"{p}.mlp.fc2.weight"], shapes[f"{p}.mlp.fc2.bias"] = (d, 4 * d, 1, 1), (d,)
        if s < len(depths) - 1:
            shapes[f"layers.{s}.downsample.norm.weight"] = shapes[f"layers.{s}.downsample.norm.bias"] = (4 * d,)
            shapes[f"layers.{s}.downsample.reduction.weight"] = (2 * d, 4 * d, 1, 1)
    final = embed_dim * 2 ** (len(depths) - 1)
    shapes.update({"norm.weight": (final,), "norm.bias": (final,), "head.weight": (num_classes, final),
                   "head.bias": (num_classes,)})
    return shapes


@pytest.fixture(scope="module")
def official_frozen():
    """An official snnmlp_t state dict as the fixed-LIF run writes it: no tau / Vth entries
    (the official LIFSpike keeps them as plain floats)."""
    return {k: np.full(shape, 0.01, np.float32) for k, shape in _official_shapes().items()}


def test_frozen_scalars_are_buffers():
    net = mindcv_ext.create_model("snnmlp_t", num_classes=4, kernels="composite", embed_dim=16, depths=(1, 1, 1, 1),
                                  lif_fix_tau=True, lif_fix_vth=True, lif_init_tau=0.3, lif_init_vth=0.2)
    trainable = {p.name for p in net.trainable_params()}
    every = set(net.parameters_dict())
    lif = {n for n in every if n.endswith((".tau", ".Vth"))}
    assert len(lif) == 16 and not lif & trainable  # 4 blocks x (lif1, lif2) x (tau, Vth)
    groups = param_groups(net.trainable_params(), 0.05, False, 1e-3, snnmlp.lif_param_filter)
    assert len(groups) == 1  # no LIF group left to optimise
    assert all(float(net.parameters_dict()[n].asnumpy()[0]) == pytest.approx(0.3 if n.endswith("tau") else 0.2)
               for n in lif)


def test_fixed_lif_checkpoint_converts_with_the_init_values(official_frozen):
    mapped = convert_state_dict("snnmlp_t", official_frozen, kernels="composite", lif_fix_tau=True,
                                lif_fix_vth=True, lif_init_tau=0.3, lif_init_vth=0.2)
    taus = [k for k in mapped if k.endswith(".tau")]
    vths = [k for k in mapped if k.endswith(".Vth")]
    assert len(taus) == len(vths) == 24  # 12 blocks x 2 LIF layers
    assert all(mapped[k].shape == (1,) and mapped[k][0] == np.float32(0.3) for k in taus)
    assert all(mapped[k][0] == np.float32(0.2) for k in vths)


def test_fixed_lif_checkpoint_converts_from_the_cli_defaults(official_frozen):
    """`mindcv-ext convert` passes no model options: a file without any tau / Vth is the official
    fixed option and gets the official training defaults (--lif_init_tau 0.25, --lif_init_vth 0.1)."""
    mapped = convert_state_dict("snnmlp_t", official_frozen, kernels="composite")
    assert mapped["layers.0.blocks.0.lif_module.lif1.tau"][0] == np.float32(0.25)
    assert mapped["layers.3.blocks.1.lif_module.lif2.Vth"][0] == np.float32(0.1)


def test_only_tau_frozen_keeps_the_learned_vth(official_frozen):
    sd = dict(official_frozen)
    sd.update({k: np.array([0.7], np.float32) for k in snnmlp.official_key_map("snnmlp_t") if k.endswith(".Vth")})
    mapped = convert_state_dict("snnmlp_t", sd, kernels="composite", lif_fix_tau=True)
    assert mapped["layers.2.blocks.3.lif_module.lif2.Vth"][0] == np.float32(0.7)
    assert mapped["layers.2.blocks.3.lif_module.lif2.tau"][0] == np.float32(0.25)
    # learnable tau but only part of them in the file: not filled in (convert_state_dict then
    # reports them as missing, see test_snnmlp.py::test_converter_names_bad_keys)
    partial = dict(sd)
    partial["layers.0.blocks.0.lif_module.lif1.tau"] = np.array([0.5], np.float32)
    mapped = snnmlp.convert_official_state_dict(partial, "snnmlp_t", model_kwargs={})
    assert mapped["layers.0.blocks.0.lif_module.lif1.tau"][0] == np.float32(0.5)
    assert "layers.0.blocks.1.lif_module.lif1.tau" not in mapped
