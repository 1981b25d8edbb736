"""The FastMIM demo: HOG-target pre-training of a tiny ViT on the digits at 32 px, then fine-tuning
at 56 px on a few labels from that checkpoint and from random initialisation (same seed, schedule
and labels).

    mindcv-ext demo fastmim --json
"""
import os
from typing import Dict

from .demos import register_demo
from .registry import get_task, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FASTMIM = os.path.join(ROOT, "configs", "fastmim")


def _run(path: str, out_dir: str, overrides):
    cfg = load_config(path, list(overrides) + [f"train.output_dir={out_dir}", "train.progress=false"])
    task = get_task(cfg.task)(cfg).build()
    record = task.fit()
    return task, record


def fastmim_demo(out_dir: str, quick: bool = False, labels: int = 100) -> Dict:
    """Numbers of the demo; ``quick`` shortens both stages."""
    pt_epochs, pt_steps, ft_epochs = (3, 10, 12) if quick else (8, None, 20)
    pt_dir = os.path.join(out_dir, "pretrain")
    pt_over = [f"train.epochs={pt_epochs}", f"train.val_interval={pt_epochs}"]
    if pt_steps:
        pt_over.append(f"train.max_steps_per_epoch={pt_steps}")
    task, _ = _run(os.path.join(FASTMIM, "fastmim_vit_pico_digits_pretrain.yaml"), pt_dir, pt_over)
    losses = [r["train_loss"] for r in task.history]
    ft = os.path.join(FASTMIM, "fastmim_vit_pico_digits_finetune.yaml")
    ft_over = [f"train.epochs={ft_epochs}", f"data.max_samples={labels}", "data.batch_size=20",
               f"train.val_interval={ft_epochs}"]
    _, pre = _run(ft, os.path.join(out_dir, "finetune_pretrained"),
                  ft_over + [f"model.pretrained_ckpt={os.path.join(pt_dir, 'last.ckpt')}"])
    _, scratch = _run(ft, os.path.join(out_dir, "finetune_scratch"), ft_over + ["model.pretrained_ckpt=null"])
    return {"pretrain_loss_first": losses[0], "pretrain_loss_last": losses[-1],
            "finetune_top1_pretrained": pre["val_top1"], "finetune_top1_scratch": scratch["val_top1"],
            "labels": labels, "reconstruction": os.path.join(pt_dir, "reconstruction.png")}


@register_demo("fastmim", "FastMIM: HOG-target pre-training of a tiny ViT at 32 px on digits, then fine-tuning "
                          "at 56 px on 100 labels, pre-trained vs random init (~10 min; --quick ~4 min)")
def fastmim(out_dir: str, quick: bool = False) -> Dict:
    return fastmim_demo(out_dir, quick)
