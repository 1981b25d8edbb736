"""``task: nas_search`` -- the DropNAS one-level search (Hong et al., IJCAI 2020; official code
wiljohnhong/DropNAS ``search.py``) through the one engine.

Each epoch: the cosine weight learning rate is set at the epoch start (the official scheduler steps
before the epoch), the mask generator is reseeded from ``(train.seed, epoch)`` so a resumed run draws
the same masks, every batch runs one :class:`~mindcv_ext.nas.SearchStep` (both optimizers step twice),
then ``genotype.json``, ``genotype.png`` and ``alpha_share.png`` are written. Both optimizers are in
``self.optimizers`` (``optim`` for the weights, ``arch_optim`` for the alphas); the alphas are
parameters of the supernet, so ``last.ckpt`` holds all of it. ``nas.r_p = nas.r_np = 0`` is plain
one-level DARTS. Retrain the result with ``task: classification`` and
``model.kwargs: {genotype: <run>/genotype.json}``.
"""
import json
import os
from typing import Dict, Optional

import numpy as np
import mindspore as ms

from ..config import _between
from ..data.loader import Loader
from ..engine.logging import atomic_json, atomic_picture
from ..models.darts import genotype_to_dict
from ..nas import (SPACES, SearchNetwork, SearchStep, derive_genotype, plot_alpha_shares, plot_genotype,
                   plot_share_comparison, search_lr, shares)
from ..utils.checkpoint import read_checkpoint, read_meta
from .base import Task
from .registry import register_task

NoneType = type(None)
EVAL_BATCH = 256


@register_task
class NASSearchTask(Task):
    name = "nas_search"
    sections = {"nas": {
        "space": ((str,), "original"),          # original | 1-skip | 3-skip
        "r_p": ((float,), 3e-5),                # drop rate of the parametric group (0: DARTS)
        "r_np": ((float, NoneType), None),      # non-parametric group; null = r_p
        "exponent_sizes": ((list, NoneType), None),  # [4, 4] = the official code's hard-coded sizes
        "channels": ((int,), 16),
        "layers": ((int,), 14),
        "nodes": ((int,), 4),
        "lr_min": ((float,), 0.0015),
        "grad_clip": ((float,), 3.0),
        "alpha_lr": ((float,), 3e-4),
        "alpha_beta1": ((float,), 0.5),
        "alpha_beta2": ((float,), 0.999),
        "alpha_weight_decay": ((float,), 1e-3),
        "warmup_epochs": ((int,), 0),
        "rule": ((str,), "alpha"),              # alpha (DropNAS) | softmax (DARTS)
    }}
    choices = {("nas", "space"): tuple(SPACES), ("nas", "rule"): ("alpha", "softmax")}
    ranges = {("nas", "r_p"): _between(0, 1, hi_open=True), ("nas", "channels"): _between(1),
              ("nas", "layers"): _between(3), ("nas", "nodes"): _between(1)}
    default_monitor = "val_top1:max"

    def build_model(self):
        n, m = self.cfg.nas, self.cfg.model
        return SearchNetwork(m.num_classes, m.in_channels, n.channels, n.layers, n.nodes, space=n.space,
                             seed=self.cfg.train.seed)

    def build_loaders(self) -> None:
        super().build_loaders()
        # the supernet runs op by op (PyNative): validate in a few large batches, not many small ones
        val_cfg = type(self.cfg.data)(self.cfg.data)
        val_cfg["batch_size"] = max(self.cfg.data.batch_size, EVAL_BATCH)
        self.val_loader = Loader(val_cfg, "val", self.cfg.train.seed)

    def build(self) -> "NASSearchTask":
        from ..engine.loop import set_seed
        cfg, n = self.cfg, self.cfg.nas
        set_seed(cfg.train.seed)
        self.build_loaders()
        self.net = self.build_model()
        self.search = SearchStep(self.net, n.r_p, n.r_np, n.exponent_sizes, w_lr=cfg.optim.lr, w_lr_min=n.lr_min,
                                 w_momentum=cfg.optim.momentum, w_weight_decay=cfg.optim.weight_decay,
                                 w_grad_clip=n.grad_clip, alpha_lr=n.alpha_lr,
                                 alpha_betas=(n.alpha_beta1, n.alpha_beta2), alpha_weight_decay=n.alpha_weight_decay,
                                 warmup_epochs=n.warmup_epochs, seed=cfg.train.seed)
        self.optimizers = {"optim": self.search.w_opt, "arch_optim": self.search.a_opt}
        # the cosine horizon is fixed when the run is built: a run stopped early (or killed) and resumed
        # with the same config follows the same schedule as one that never stopped
        self.schedule_epochs = cfg.train.epochs
        self.share_history = []
        return self

    def lr_at(self, epoch: int) -> float:
        return search_lr(epoch, self.schedule_epochs, self.cfg.optim.lr, self.cfg.nas.lr_min)

    def describe(self) -> str:
        n = self.cfg.nas
        return (f"nas_search: {n.space} space, {n.layers} cells, C={n.channels}, r_p={n.r_p}, "
                f"r_np={n.r_p if n.r_np is None else n.r_np} on {self.cfg.data.dataset}, "
                f"{self.steps_per_epoch} steps/epoch")

    def train_step(self, images, labels):
        return ms.Tensor(self.search(images, labels), ms.float32)

    def fit(self, resume: Optional[str] = None) -> Dict[str, float]:
        if resume:  # the share history of the epochs already run (for the picture)
            path = os.path.join(self.out_dir, "last.ckpt") if resume == "auto" else resume
            meta = read_meta(read_checkpoint(path)) or {}
            self.share_history = [{"normal": r["share_normal"], "reduce": r["share_reduce"]}
                                  for r in meta.get("history", []) if "share_normal" in r]
        return super().fit(resume)

    def genotype(self):
        a_n, a_r = self.net.alpha_values()
        return derive_genotype(a_n, a_r, self.cfg.nas.space, self.cfg.nas.rule)

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        from ..engine.loop import run_epoch
        self.search.set_epoch(epoch, self.schedule_epochs)
        self.search.sampler.rng.seed(self.cfg.train.seed * 1000 + epoch)
        record = run_epoch(self, epoch)
        a_n, a_r = self.net.alpha_values()
        s = shares(a_n, a_r, self.cfg.nas.space)
        self.share_history.append(s)
        record.update(share_normal=s["normal"], share_reduce=s["reduce"],
                      param_share=(s["normal"] + s["reduce"]) / 2.0)
        if self.is_main:
            g = self.genotype()
            atomic_json(genotype_to_dict(g), os.path.join(self.out_dir, "genotype.json"))
            atomic_picture(plot_genotype, os.path.join(self.out_dir, "genotype.png"), g)
            atomic_picture(plot_alpha_shares, os.path.join(self.out_dir, "alpha_share.png"), self.share_history)
        return record

    def evaluate(self) -> Dict[str, float]:
        net = self.net
        net.set_train(False)
        correct, total, loss = 0, 0, 0.0
        for images, labels in self.val_loader.epoch(0):
            logits = net(images)
            y = labels.asnumpy()
            loss += float(self.search.loss_fn(logits, labels).asnumpy()) * len(y)
            correct += int((logits.asnumpy().argmax(-1) == y).sum())
            total += len(y)
        net.set_train(True)
        return {"val_loss": loss / max(total, 1), "val_top1": correct / max(total, 1)}

    def run(self, resume: Optional[str] = None, as_json: bool = False) -> Dict:
        if self.net is None:
            self.build()
        record = self.fit(resume)
        record["genotype"] = genotype_to_dict(self.genotype())
        if as_json:
            print(json.dumps({k: v for k, v in record.items() if isinstance(v, (int, float, dict))}), flush=True)
        return record


# ------------------------------------------------------------------------------------------- demo
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEARCH_CONFIG = os.path.join(ROOT, "configs", "dropnas", "dropnas_search_digits.yaml")
RETRAIN_CONFIG = os.path.join(ROOT, "configs", "dropnas", "dropnas_retrain_digits.yaml")
QUICK_SEARCH = ["train.epochs=2", "train.max_steps_per_epoch=10"]
QUICK_RETRAIN = ["train.epochs=1", "train.max_steps_per_epoch=20"]


def compare_searches(out_dir: str, overrides=()) -> Dict[str, "NASSearchTask"]:
    """The same search (config, seed, data order, initial alphas) with DropNAS and with r = 0
    (one-level DARTS); writes ``share_comparison.png``."""
    from .registry import load_config
    runs = {}
    for key, rates in (("dropnas", []), ("darts", ["nas.r_p=0.0", "nas.r_np=0.0"])):
        print(f"== search: {key}", flush=True)
        cfg = load_config(SEARCH_CONFIG, list(overrides) + rates + [f"train.output_dir={os.path.join(out_dir, key)}"])
        task = NASSearchTask(cfg).build()
        task.fit()
        runs[key] = task
    atomic_picture(plot_share_comparison, os.path.join(out_dir, "share_comparison.png"),
                   {"DropNAS": runs["dropnas"].share_history, "DARTS (r = 0)": runs["darts"].share_history})
    return runs


def _register_demo():
    from .demos import register_demo

    @register_demo("dropnas", "DropNAS vs one-level DARTS (r = 0) searched from the same seed on digits, the "
                              "parametric alpha share of both, then a short retrain of the DropNAS genotype")
    def dropnas_demo(out_dir: str, quick: bool = False) -> Dict:
        from .demo_runs import train_config
        runs = compare_searches(out_dir, QUICK_SEARCH if quick else ())
        genotype = os.path.join(out_dir, "dropnas", "genotype.json")
        print("== retrain the DropNAS genotype", flush=True)
        retrain = train_config(RETRAIN_CONFIG, os.path.join(out_dir, "retrain"),
                               [f"model.kwargs.genotype={genotype}"] + (QUICK_RETRAIN if quick else []))
        share = {k: t.history[-1]["param_share"] for k, t in runs.items()}
        print(f"parametric alpha share after search: DropNAS {share['dropnas']:.4f}, DARTS {share['darts']:.4f}; "
              f"picture: {os.path.join(out_dir, 'share_comparison.png')}", flush=True)
        return {"param_share_dropnas": share["dropnas"], "param_share_darts": share["darts"],
                "genotype": genotype_to_dict(runs["dropnas"].genotype()),
                "retrain_top1": retrain.history[-1]["val_top1"]}


_register_demo()
