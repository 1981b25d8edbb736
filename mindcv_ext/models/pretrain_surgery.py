"""Checkpoint surgery for fine-tuning from a FastMIM pre-training checkpoint (ggjy/FastMIM.pytorch
``main_finetune.py`` + ``util/pos_embed.py``), used by ``model.pretrained_mode: backbone``.

- the ``encoder.`` prefix of the official Swin checkpoints and the ``backbone.`` prefix of this
  package's ``MIMModel`` are stripped; decoder and mask token are left out;
- a ViT position embedding of another grid is resized bicubically (8x8 -> 14x14 for 128 -> 224 px);
  a ViT pre-trained with the fixed sin-cos embedding (no parameter in the checkpoint) starts its
  learned embedding from that sin-cos table at the new grid, which is what interpolating the fixed
  table would give;
- Swin relative-position-bias tables are remapped to the fine-tuning window (7x7 -> 13x13 for
  window 4 -> 7, the geometric "simmim" mode); ``relative_position_index`` buffers are dropped.
"""
from typing import Dict

import numpy as np
import mindspore as ms

PREFIXES = ("encoder.", "backbone.")


def _value(v) -> np.ndarray:
    return v.asnumpy() if hasattr(v, "asnumpy") else np.asarray(v)


def adapt_pretrain_state(net, params: Dict[str, object]) -> Dict[str, object]:
    """``params`` renamed and resized to fit ``net`` where a FastMIM rule applies; the rest as is."""
    from ..layers.pos_embed import resize_pos_embed_np, resize_rel_pos_bias_table

    own = net.parameters_dict()
    from_mim = any(n == "mask_token" or n.endswith(".mask_token") for n in params)
    out = {}
    for name, value in params.items():
        short = name
        if name not in own:
            for prefix in PREFIXES:
                if name.startswith(prefix) and name[len(prefix):] in own:
                    short = name[len(prefix):]
                    break
        if short.endswith("relative_position_index"):
            continue
        target = own.get(short)
        if target is not None and tuple(value.shape) != tuple(target.shape):
            arr = _value(value)
            if short.endswith("pos_embed") and arr.ndim == 3:
                grid = int(round((target.shape[1] - 1) ** 0.5))
                value = ms.Tensor(resize_pos_embed_np(arr, (grid, grid), num_prefix_tokens=1))
            elif short.endswith("relative_position_bias_table"):
                window = (int(round(target.shape[0] ** 0.5)) + 1) // 2
                value = ms.Tensor(resize_rel_pos_bias_table(arr, window).astype(np.float32))
        out[short] = value
    if from_mim and "pos_embed" in own and "pos_embed" not in out and hasattr(net, "grid"):
        from ..models.vit import sincos_table
        out["pos_embed"] = ms.Tensor(sincos_table(own["pos_embed"].shape[-1], net.grid)[None])
    return out
