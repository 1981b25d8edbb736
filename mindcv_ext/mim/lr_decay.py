"""Layer-wise learning-rate decay for fine-tuning (BEiT rule, ggjy/FastMIM.pytorch ``util/lr_decay.py``).

Each parameter gets a layer id; its lr scale is ``decay ** (num_layers - id)``.
- ViT (``num_layers = depth + 1``): ``cls_token``, ``pos_embed``, ``patch_embed.*`` -> 0; ``blocks.i.*`` -> i + 1;
  everything else (``norm``, ``fc_norm``, ``head``) -> num_layers.
- Swin (``num_layers = 1 + sum(depths)``): ``patch_embed.*`` -> 0; ``layers.s.blocks.j.*`` -> (blocks before
  stage s) + j + 1; ``layers.s.downsample.*`` -> blocks up to and including stage s (the id of the last
  block of its own stage); everything else -> num_layers.
Parameter names are the MindSpore names of this package's ViT / Swin (an optional ``prefix`` such as
``backbone.`` is stripped first).
"""
from typing import Dict, Iterable, List, Sequence

VIT_NO_DECAY = ("pos_embed", "cls_token")  # official no_weight_decay() of the ViT
SWIN_NO_DECAY = ("absolute_pos_embed",)   # official Swin no_weight_decay(); rel-pos tables are decayed


class LayerDecayError(ValueError):
    """Bad arguments to the layer-decay helpers."""


def vit_layer_id(name: str, depth: int) -> int:
    num_layers = depth + 1
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_layers


def swin_layer_id(name: str, depths: Sequence[int]) -> int:
    num_layers = 1 + sum(depths)
    before = [sum(depths[:s]) for s in range(len(depths) + 1)]
    if name.startswith("patch_embed"):
        return 0
    if name.startswith("layers."):
        parts = name.split(".")
        stage = int(parts[1])
        if parts[2] == "downsample":
            return before[stage + 1]
        return before[stage] + int(parts[3]) + 1
    return num_layers


def layer_decay_scales(names: Iterable[str], kind: str, decay: float, depth: int = None,
                       depths: Sequence[int] = None, prefix: str = "") -> Dict[str, float]:
    """``{name: lr scale}`` for ``kind='vit'`` (give ``depth``) or ``'swin'`` (give ``depths``)."""
    if not 0.0 < decay <= 1.0:
        raise LayerDecayError(f"layer decay must be in (0, 1], got {decay}")
    if kind == "vit":
        if depth is None:
            raise LayerDecayError("layer_decay_scales: kind='vit' needs depth")
        num_layers, layer_id = depth + 1, lambda n: vit_layer_id(n, depth)
    elif kind == "swin":
        if depths is None:
            raise LayerDecayError("layer_decay_scales: kind='swin' needs depths")
        num_layers, layer_id = 1 + sum(depths), lambda n: swin_layer_id(n, depths)
    else:
        raise LayerDecayError(f"layer_decay_scales: kind must be 'vit' or 'swin', got {kind!r}")
    out = {}
    for name in names:
        short = name[len(prefix):] if prefix and name.startswith(prefix) else name
        out[name] = decay ** (num_layers - layer_id(short))
    return out


def model_layer_decay_scales(net, decay: float, prefix: str = "") -> Dict[str, float]:
    """Scales for every trainable parameter of a ViT or Swin of this package (kind from the model)."""
    from mindcv_ext.models.swin import SwinTransformer
    from mindcv_ext.models.vit import VisionTransformer

    inner = net
    for attr in filter(None, prefix.rstrip(".").split(".")):
        inner = getattr(inner, attr)
    names = [p.name for p in net.trainable_params()]
    if isinstance(inner, VisionTransformer):
        return layer_decay_scales(names, "vit", decay, depth=len(inner.blocks), prefix=prefix)
    if isinstance(inner, SwinTransformer):
        return layer_decay_scales(names, "swin", decay, depths=inner.depths, prefix=prefix)
    raise LayerDecayError(f"layer decay rules exist for ViT and Swin, not {type(inner).__name__}")


def layer_decay_param_groups(params, scales: Dict[str, float], weight_decay: float, lr,
                             no_decay_names: Sequence[str] = VIT_NO_DECAY) -> List[dict]:
    """Optimizer groups (one per (scale, decay?) pair), ``lr`` a float or a per-step list, scaled.

    No weight decay on 1-D parameters and on names ending with one of ``no_decay_names``
    (the official ``param_groups_lrd``).
    """
    groups: Dict[tuple, dict] = {}
    for p in params:
        if p.name not in scales:
            raise LayerDecayError(f"no lr scale for parameter '{p.name}'")
        short = p.name.split(".")[-1]
        decay = not (len(p.shape) <= 1 or short in no_decay_names or p.name in no_decay_names)
        key = (scales[p.name], decay)
        if key not in groups:
            scale = scales[p.name]
            group_lr = [v * scale for v in lr] if isinstance(lr, (list, tuple)) else lr * scale
            groups[key] = {"params": [], "weight_decay": weight_decay if decay else 0.0, "lr": group_lr,
                           "lr_scale": scale}
        groups[key]["params"].append(p)
    return list(groups.values())
