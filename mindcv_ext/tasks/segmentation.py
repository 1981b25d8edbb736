"""The ``segmentation`` task: RGB-D semantic segmentation with TokenFusion (Wang et al., CVPR 2022,
arXiv 2204.08721), following the official recipe (yikaiw/TokenFusion ``semantic_segmentation/main.py``,
``utils/optimizer.py``; the ensemble weights trained as in huawei-noah/noah-research/TokenFusion).

Datasets have the columns ``(rgb, depth, mask)``: ``nyudv2`` (the official list-file layout, depth
/ 5000, 40 classes, ignore 255, random scale / pad / mirror / crop for training) and
``rgbd_scenes`` (generated scenes in which each modality alone is ambiguous, with corrupted
regions; ``mindcv_ext.seg.scenes``).

Training: NLL on every output (RGB, depth, ensemble) summed, plus ``seg.lamda`` x the sum of all
scores; AdamW in three groups (encoder non-norm, encoder norm without decay, decoder + ``alpha``
at ``seg.decoder_lr_mult`` x LR) with linear warm-up then poly decay per step. Evaluation: pixel
accuracy, mean accuracy and mIoU of each branch and of the ensemble, and the fraction of exchanged
tokens (score < ``seg.threshold``) per stage and modality; ``best.ckpt`` by ``val_ensemble_miou``.

``seg.inputs`` trains the baselines with the same model and recipe: ``rgb`` (or ``depth``) feeds
that modality to both branches with the exchange switched off (a plain SegFormer run twice with
shared weights), ``rgb_depth`` both modalities; ``seg.threshold: 0`` is TokenFusion without exchange.

``infer`` takes RGB files and finds the depth beside each one: the path with its last ``rgb``
replaced by ``depth`` (``rgb/000003.png`` -> ``depth/000003.png``, ``scene_rgb.png`` ->
``scene_depth.png``), or an explicit ``RGB,DEPTH`` pair. It writes the coloured ensemble
prediction to ``<train.output_dir>/infer/<name>_seg.png``. Depth PNGs are read as stored
(16 bit) and divided by ``data.depth_divisor`` (5000 for NYUDv2; the generated scenes store
millimetres, so 10000 gives their metres / 10).
"""
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import mindspore as ms
from mindspore import nn

from ..data.datasets import ColumnSource
from ..data.loader import Loader
from ..data.registry import DatasetError, register_dataset
from ..engine.loop import set_seed
from ..engine.optim import create_optimizer
from ..engine.step import TrainStep, compiled
from ..models.tokenfusion import MODALITIES, set_threshold, token_grids
from ..seg import nyudv2, scenes
from ..seg.exchange import exchanged_fraction
from ..seg.loss import TokenFusionLoss
from ..seg.metrics import SegMeter, logits_to_labels
from ..seg.optim import param_groups, poly_warmup_lr
from ..seg.palette import write_segmentation_png
from .base import Task, TaskError
from .registry import register_task

SEG_KEYS = {
    "lamda": ((float,), 1e-6),            # weight of the score L1 sum (README: 1e-6 for mit_b3)
    "threshold": ((float,), 0.02),        # exchange threshold; 0 = no exchange
    "inputs": ((str,), "rgb_depth"),      # rgb_depth | rgb | depth (single-modality baselines)
    "decoder_lr_mult": ((float,), 10.0),  # decoder (and alpha) LR multiplier
    "warmup_iter": ((int,), 1500),        # linear warm-up steps from 1e-6 x LR
    "max_iter": ((int,), 40000),          # poly decay length in steps
    "power": ((float,), 1.0),
    "ignore_index": ((int,), 255),
}
DATA_KEYS = {
    "train_list": ((str,), "train.txt"),   # nyudv2: list files, relative to data.root
    "val_list": ((str,), "val.txt"),
    "crop_size": ((int,), 500),
    "shorter_side": ((int,), 350),
    "scale_range": ((list,), [0.5, 2.0]),
    "depth_divisor": ((float,), 5000.0),   # depth PNG value / divisor (nyudv2 and infer)
    "n_train": ((int,), 256),              # rgbd_scenes: generated scene counts
    "n_val": ((int,), 64),
    "corrupt_prob": ((float,), 0.5),
}


# ------------------------------------------------------------------------------------ datasets
@register_dataset("nyudv2", columns=("rgb", "depth", "mask"), image_transforms=False)
def nyudv2_dataset(data_cfg, split, seed):
    if not data_cfg.root:
        raise DatasetError("dataset 'nyudv2' needs data.root (the folder holding the list files)")
    train = split == "train"
    try:
        return nyudv2.NYUDv2Dataset(data_cfg.root, data_cfg.train_list if train else data_cfg.val_list, train=train,
                                    crop_size=data_cfg.crop_size, shorter_side=data_cfg.shorter_side,
                                    scale_range=tuple(data_cfg.scale_range), depth_scale=1.0 / data_cfg.depth_divisor,
                                    seed=seed)
    except nyudv2.NYUDv2Error as err:
        raise DatasetError(str(err)) from err


@register_dataset("rgbd_scenes", columns=("rgb", "depth", "mask"), image_transforms=False)
def rgbd_scenes_dataset(data_cfg, split, seed):
    train = split == "train"
    # Disjoint draws: the validation scenes use another seed stream than the training ones.
    try:
        arrays = scenes.render_scenes(data_cfg.n_train if train else data_cfg.n_val, size=data_cfg.image_size,
                                      seed=seed * 2 + (0 if train else 1), corrupt_prob=data_cfg.corrupt_prob)
    except scenes.SceneConfigError as err:
        raise DatasetError(str(err)) from err
    return ColumnSource(arrays, ("rgb", "depth", "mask"), scenes.NUM_CLASSES)


# ------------------------------------------------------------------------------------ cells
class InputRouting(nn.Cell):
    """``(rgb, depth) -> net(a, b)``: both modalities, or one of them fed to both branches."""

    def __init__(self, net: nn.Cell, inputs: str):
        super().__init__(auto_prefix=False)
        self.net, self.inputs = net, inputs

    def construct(self, rgb, depth):
        if self.inputs == "rgb":
            return self.net(rgb, rgb)
        if self.inputs == "depth":
            return self.net(depth, depth)
        return self.net(rgb, depth)


class SegLoss(nn.Cell):
    """``(rgb, depth, mask) -> loss`` (every output's NLL + lamda x sum of scores)."""

    def __init__(self, routed: nn.Cell, lamda: float, ignore_index: int):
        super().__init__(auto_prefix=False)
        self.routed = routed
        self.loss = TokenFusionLoss(lamda, ignore_index)

    def construct(self, rgb, depth, mask):
        return self.loss(self.routed(rgb, depth), mask)


class SegPredict(nn.Cell):
    """The exported Cell: ``(rgb, depth) -> (logits_rgb, logits_depth, logits_ensemble)``."""

    def __init__(self, routed: nn.Cell):
        super().__init__(auto_prefix=False)
        self.routed = routed

    def construct(self, rgb, depth):
        l0, l1, ens, _ = self.routed(rgb, depth)
        return l0, l1, ens


# ------------------------------------------------------------------------------------ task
@register_task
class SegmentationTask(Task):
    name = "segmentation"
    export_inputs = 2
    sections = {"seg": SEG_KEYS}
    data_keys = DATA_KEYS
    choices = {("seg", "inputs"): ("rgb_depth", "rgb", "depth")}
    ranges = {("seg", "lamda"): (lambda v: v >= 0, "0 or more"),
              ("seg", "threshold"): (lambda v: 0 <= v < 1, "in [0, 1)"),
              ("seg", "warmup_iter"): (lambda v: v >= 0, "0 or more"),
              ("seg", "max_iter"): (lambda v: v >= 1, "at least 1"),
              ("seg", "decoder_lr_mult"): (lambda v: v > 0, "positive"),
              ("data", "depth_divisor"): (lambda v: v > 0, "positive"),
              ("data", "corrupt_prob"): (lambda v: 0 <= v <= 1, "in [0, 1]")}
    default_monitor = "val_ensemble_miou:max"

    @property
    def threshold(self) -> float:
        """The exchange threshold in effect (off for the single-modality baselines)."""
        return 0.0 if self.cfg.seg.inputs != "rgb_depth" else self.cfg.seg.threshold

    def build_model(self) -> nn.Cell:
        net = super().build_model()
        if not hasattr(net, "score_layout"):
            raise TaskError(f"task 'segmentation' needs a two-modality TokenFusion model (tokenfusion_*), "
                            f"not '{self.cfg.model.name}'")
        set_threshold(net, self.threshold)
        self.routed = InputRouting(net, self.cfg.seg.inputs)
        return net

    def build_loaders(self) -> None:
        cfg = self.cfg
        self.train_loader = Loader(cfg.data, "train", cfg.train.seed, self.rank, self.world)
        self.ensure_val_loader()

    def ensure_val_loader(self) -> None:
        if self.val_loader is None:
            # Full NYUDv2 test images differ in size: one image per evaluation batch there.
            batch = 1 if self.cfg.data.dataset == "nyudv2" else None
            self.val_loader = Loader(self.cfg.data, "val", self.cfg.train.seed, batch_size=batch)

    def loss_cell(self) -> nn.Cell:
        return SegLoss(self.routed, self.cfg.seg.lamda, self.cfg.seg.ignore_index)

    def build(self) -> "SegmentationTask":
        cfg, s = self.cfg, self.cfg.seg
        set_seed(cfg.train.seed)
        self.build_loaders()
        self.net = self.build_model()
        total = cfg.train.epochs * self.steps_per_epoch
        self.lrs = [float(v) for v in poly_warmup_lr(cfg.optim.lr, total, s.warmup_iter, s.max_iter, power=s.power)]
        groups = param_groups(self.net, cfg.optim.lr, cfg.optim.weight_decay, s.decoder_lr_mult)
        mults = (1.0, 1.0, s.decoder_lr_mult)
        for g, m in zip(groups, mults):
            g["lr"] = [v * m for v in self.lrs]
        groups = [g for g in groups if g["params"]]
        opt = create_optimizer("adamw", groups, self.lrs, eps=cfg.optim.eps,
                               betas=tuple(cfg.optim.betas))
        self.optimizers = {"optim": opt}
        self.step_cell = TrainStep(self.loss_cell(), opt, cfg.train.clip_grad)
        self._step = compiled(self.step_cell, cfg.train.jit)
        return self

    def describe(self) -> str:
        return (super().describe() + f"; inputs {self.cfg.seg.inputs}, threshold {self.threshold}, "
                f"lamda {self.cfg.seg.lamda}")

    # -------------------------------------------------------------------------- evaluation
    def evaluate_outputs(self, keep_scores: bool = False) -> Dict:
        """Metrics over the validation split; with ``keep_scores`` also every batch's scores."""
        net = self.net
        was = net.training
        net.set_train(False)
        num_classes = self.cfg.model.num_classes
        meter = SegMeter(num_classes, ignore_index=self.cfg.seg.ignore_index)
        frac_sum: Dict[str, float] = {}
        n, kept = 0, []
        for rgb, depth, mask in self.val_loader.epoch(0):
            l0, l1, ens, scores = self.routed(rgb, depth)
            meter.update([l0.asnumpy(), l1.asnumpy(), ens.asnumpy()], mask.asnumpy())
            sc = [s.asnumpy() for s in scores]
            b = sc[0].shape[0]
            for k, v in exchanged_fraction(sc, net.score_layout, self.threshold).items():
                frac_sum[k] = frac_sum.get(k, 0.0) + v * b
            n += b
            if keep_scores:
                kept.append(sc)
        net.set_train(was)
        out = {f"val_{k}": v for k, v in meter.scores().items()}
        for k, v in frac_sum.items():
            out["val_exchanged_" + k.replace("/", "_")] = v / max(n, 1)
        if keep_scores:
            out["scores"] = [np.concatenate(parts) for parts in zip(*kept)]
        return out

    def evaluate(self) -> Dict[str, float]:
        return self.evaluate_outputs()

    # -------------------------------------------------------------------------- export / predict
    def load_for_inference(self, ckpt: Optional[str], use_ema: bool = False) -> "SegmentationTask":
        super().load_for_inference(ckpt, use_ema)
        return self

    def export_cell(self) -> nn.Cell:
        return SegPredict(self.routed)

    def model_inputs(self, batch) -> tuple:
        return tuple(batch[:2])

    def predict(self, inputs: Sequence[np.ndarray]):
        out = self.routed(*[ms.Tensor(np.asarray(x, np.float32)) for x in inputs[:2]])
        return tuple(o.asnumpy() for o in out[:3])

    def read_pair(self, rgb_path: str, depth_path: str):
        """(rgb (1,3,H,W), depth (1,3,H,W)) preprocessed as the config's dataset is."""
        try:
            rgb, depth = nyudv2.read_input(rgb_path), nyudv2.read_input(depth_path)
        except nyudv2.NYUDv2Error as err:
            raise OSError(str(err)) from err
        if rgb.shape[:2] != depth.shape[:2]:
            raise OSError(f"rgb {rgb.shape[:2]} and depth {depth.shape[:2]} sizes differ")
        depth = depth / self.cfg.data.depth_divisor
        if self.cfg.data.dataset == "nyudv2":
            rgb = (rgb * nyudv2.IMG_SCALE - nyudv2.IMG_MEAN) / nyudv2.IMG_STD
        else:
            rgb = rgb * nyudv2.IMG_SCALE
        h, w = rgb.shape[:2]
        if h % 32 or w % 32:
            raise OSError(f"image size {h}x{w} is not a multiple of 32")
        return tuple(np.ascontiguousarray(a.transpose(2, 0, 1)[None], np.float32) for a in (rgb, depth))

    @staticmethod
    def depth_path_for(rgb_path: str) -> str:
        """The depth file beside an RGB file (see the module docstring)."""
        head, sep, tail = rgb_path.rpartition("rgb")
        if not sep:
            raise OSError("cannot find the depth file: the path holds no 'rgb' (give RGB,DEPTH)")
        return head + "depth" + tail

    def infer_files(self, paths: Sequence[str], topk: int = 5) -> List[dict]:
        out_dir = os.path.join(self.out_dir, "infer")
        results = []
        for path in paths:
            try:
                rgb_path, _, depth_path = path.partition(",")
                depth_path = depth_path or self.depth_path_for(rgb_path)
                rgb, depth = self.read_pair(rgb_path, depth_path)
                ens = self.predict((rgb, depth))[2][0]
                labels = logits_to_labels(ens, rgb.shape[2:])
                name = os.path.splitext(os.path.basename(rgb_path))[0]
                png = write_segmentation_png(os.path.join(out_dir, f"{name}_seg.png"), labels)
                counts = np.bincount(labels.ravel(), minlength=ens.shape[0]) / labels.size
                order = np.argsort(-counts)[:topk]
                results.append({"file": rgb_path, "depth": depth_path, "png": png,
                                "top": [(int(i), float(counts[i])) for i in order]})
            except OSError as err:
                results.append({"file": path, "error": str(err)})
        return results


__all__ = ["SegmentationTask", "InputRouting", "SegLoss", "SegPredict", "MODALITIES", "token_grids"]
