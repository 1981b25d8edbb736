"""The ``sfda`` task: source-free domain adaptation by source distribution estimation (SFDA-DE,
Ding et al., "Source-Free Domain Adaptation via Distribution Estimation", CVPR 2022).

No official code is public; the loop follows the paper's abstract and the third-party
implementation CvNoob/SFDA-DE (``solver/anchor_solver.py``, built on CAN's code base). One engine
epoch is one adaptation *loop*:

1. target features in eval mode with the deterministic transform (the third-party clustering
   loader reuses the random training transform; a fixed one gives stable pseudo-labels);
2. spherical k-means from the frozen classifier's weight rows (anchors), Hungarian re-ordering,
   distance filtering, minimum samples per class (``mindcv_ext.da.refresh``);
3. class-conditional source Gaussians estimated from the kept target features and the anchors;
4. ``da.iterations`` CDD steps on class-aware target batches against surrogate source features,
   updating only the feature extractor (classifier frozen, BatchNorm lr x ``da.bn_lr_mult``,
   the "inv" lr schedule over all steps).

So the pseudo-labels are refreshed every ``da.iterations`` steps, and ``train.epochs`` is the
number of loops. Checkpoints are written at loop boundaries; a loop's pseudo-labels, source
estimate and batches are a pure function of the weights, the seed and the loop index, so a
resumed run repeats the uninterrupted one exactly. Host-side results that only exist before
adaptation (source-only accuracy) travel in the history of the checkpoint.

Data: ``da.benchmark`` ``office31`` / ``office_home`` / ``visda2017`` read ImageFolder domains
``data.root/<domain>/<class>/`` (the source domain is never read: only ``da.source_ckpt``);
``digits_shift`` is scikit-learn's digits, half A as source and the shifted half B as target,
where a missing ``da.source_ckpt`` means "train the source model here first" (label-smoothed
cross-entropy, never touched by adaptation).
"""
import math
import os
import time
from typing import Dict, Optional

import numpy as np
import mindspore as ms
from mindspore import nn

import mindcv_ext.da as da
from ..config import ConfigError, _between
from ..data.registry import DatasetError
from ..engine.loss import create_loss
from ..engine.loop import TrainingDiverged
from ..engine.step import TrainStep, WithLoss, compiled
from ..utils.checkpoint import load_weights, save_weights
from .base import Task, TaskError
from .registry import register_task

BENCHMARKS = ("digits_shift",) + tuple(da.BENCHMARKS)


class ArrayDomain:
    """A domain held in memory as ready model inputs (N, C, H, W) float32."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes):
        self.images, self.labels, self.classes = images, np.asarray(labels, np.int64), list(classes)

    def __len__(self):
        return len(self.labels)

    def batch(self, indices, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        return self.images[np.asarray(indices)]


class FolderDomain:
    """An ImageFolder domain read on demand. Training batches (``rng`` given): resize to
    ``image_size / crop_pct`` (256 for 224), random ``image_size`` crop, horizontal flip; evaluation:
    the same resize and a centre crop (the third-party Office/VisDA transforms). Normalised CHW."""

    def __init__(self, root: str, benchmark: str, domain: str, data_cfg):
        try:
            da.check_benchmark_domain(root, benchmark, domain)
        except da.DomainFolderError as err:
            raise DatasetError(str(err)) from err
        from ..data.datasets import read_image_folder
        classes = sorted(da.BENCHMARKS[benchmark]["classes"])   # the order of an ImageFolder source run
        self.source = read_image_folder(os.path.join(root, domain), classes,
                                        skip_bad=bool(data_cfg.skip_bad_images))
        self.labels, self.classes = np.asarray(self.source.labels, np.int64), classes
        self.size = data_cfg.image_size
        self.resize = int(round(self.size / data_cfg.crop_pct))
        self.mean = np.asarray(data_cfg.mean, np.float32).reshape(3, 1, 1) * 255.0
        self.std = np.asarray(data_cfg.std, np.float32).reshape(3, 1, 1) * 255.0
        self.workers = max(1, int(data_cfg.num_workers))

    def __len__(self):
        return len(self.labels)

    def _one(self, index: int, crop) -> np.ndarray:
        import cv2
        img = cv2.resize(self.source[int(index)][0], (self.resize, self.resize), interpolation=cv2.INTER_LINEAR)
        top, left, flip = crop
        img = img[top:top + self.size, left:left + self.size]
        if flip:
            img = img[:, ::-1]
        return (img.transpose(2, 0, 1).astype(np.float32) - self.mean) / self.std

    def batch(self, indices, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        centre = (self.resize - self.size) // 2
        if rng is None:
            crops = [(centre, centre, False)] * len(indices)
        else:  # drawn in order before the parallel decode, so a batch depends on rng only
            crops = [(int(rng.integers(0, self.resize - self.size + 1)), int(rng.integers(0, self.resize - self.size + 1)),
                      bool(rng.random() < 0.5)) for _ in indices]
        if self.workers > 1 and len(indices) > 1:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(self.workers) as pool:  # cv2 decodes without the GIL
                images = list(pool.map(self._one, indices, crops))
        else:
            images = [self._one(i, c) for i, c in zip(indices, crops)]
        return np.stack(images).astype(np.float32)


def train_source_model(net: nn.Cell, x: np.ndarray, y: np.ndarray, epochs: int, lr: float, batch_size: int,
                       label_smoothing: float, seed: int, jit: bool = True, log=print) -> float:
    """Supervised source training of every parameter (SHOT's recipe: label-smoothed CE, SGD
    momentum 0.9, wd 5e-4); returns the last epoch's mean loss."""
    frozen = [p for p in net.get_parameters() if not p.requires_grad and "moving_" not in p.name]
    for p in frozen:
        p.requires_grad = True
    try:
        opt = nn.SGD(net.trainable_params(), learning_rate=lr, momentum=0.9, weight_decay=5e-4)
        step = compiled(TrainStep(WithLoss(net, create_loss("ce", label_smoothing)), opt), jit)
        rng, y32, mean = np.random.default_rng(seed), y.astype(np.int32), float("nan")
        net.set_train(True)
        for epoch in range(epochs):
            perm, losses = rng.permutation(len(x)), []
            for i in range(0, len(x) - batch_size + 1, batch_size):
                b = perm[i:i + batch_size]
                losses.append(float(step(ms.Tensor(x[b]), ms.Tensor(y32[b])).asnumpy()))
            mean = float(np.mean(losses))
            log(f"source epoch {epoch + 1}/{epochs} loss {mean:.4f}")
        net.set_train(False)
        return mean
    finally:
        for p in frozen:
            p.requires_grad = False


@register_task
class SFDATask(Task):
    name = "sfda"
    default_monitor = "val_top1:max"
    sections = {"da": {
        "benchmark": ((str,), "digits_shift"),
        "source_domain": ((str, type(None)), None),      # recorded for the run's name; never read
        "target_domain": ((str, type(None)), None),
        "source_ckpt": ((str, type(None)), None),
        "source_epochs": ((int,), 10),                  # digits_shift without source_ckpt
        "source_lr": ((float,), 0.05),
        "source_batch_size": ((int,), 64),
        "iterations": ((int,), 20),                     # CDD steps per loop = pseudo-label refresh interval
        "classes_per_batch": ((int,), 5),
        "samples_per_class": ((int,), 8),
        "threshold": ((float,), 1.0),                   # cosine distance to the centre; 1.0 keeps all
        "min_samples": ((int,), 5),
        "kmeans_eps": ((float,), 1e-3),
        "variance_mult": ((float,), 1.0),
        "covariance": ((str,), "diag"),
        "shrinkage": ((float, type(None)), None),       # full_shrunk: null = Ledoit-Wolf
        "kernel_num": ((list,), [5, 5]),
        "kernel_mul": ((list,), [2.0, 2.0]),
        "cdd_weight": ((float,), 1.0),
        "bn_lr_mult": ((float,), 10.0),
        "inv_alpha": ((float,), 1e-3),
        "inv_beta": ((float,), 0.75),
        "frozen": ((list,), ["classifier"]),
        "feature_batch_size": ((int,), 256),
        "shift_seed": ((int,), 0),                      # digits_shift: the split and the shift
        "shift_rotation": ((float,), 20.0),
        "shift_blur": ((float,), 0.6),
        "shift_noise": ((float,), 0.1),
        "shift_invert": ((bool,), False),
    }}
    choices = {("da", "benchmark"): BENCHMARKS, ("da", "covariance"): ("diag", "full_shrunk")}
    ranges = {**{("da", k): _between(1) for k in ("iterations", "classes_per_batch", "feature_batch_size",
                                                   "source_batch_size")},
              ("da", "samples_per_class"): _between(2), ("da", "min_samples"): _between(2),
              ("da", "source_epochs"): _between(0), ("da", "threshold"): _between(0, 1),
              ("da", "variance_mult"): _between(0, lo_open=True), ("da", "shrinkage"): _between(0, 1),
              ("da", "cdd_weight"): _between(0), ("da", "bn_lr_mult"): _between(0),
              ("da", "inv_alpha"): _between(0), ("da", "inv_beta"): _between(0),
              ("da", "source_lr"): _between(0, lo_open=True), ("da", "kmeans_eps"): _between(0, lo_open=True)}

    def __init__(self, cfg, rank=None, world=None):
        super().__init__(cfg, rank, world)
        self.target = self.source_data = None
        self.source_only: Optional[Dict] = None
        self.pseudo_labels: Optional[np.ndarray] = None
        self._cache = None          # (features, logits) of the current weights, from the last evaluation

    # ------------------------------------------------------------------ data and model
    def _check(self) -> None:
        d = self.cfg.da
        if len(d.kernel_num) != len(d.kernel_mul) or not d.kernel_num:
            raise ConfigError(f"da.kernel_num and da.kernel_mul need one entry per layer (features, "
                              f"probabilities), got {d.kernel_num} and {d.kernel_mul}")
        if d.classes_per_batch > self.cfg.model.num_classes:
            raise ConfigError(f"da.classes_per_batch ({d.classes_per_batch}) exceeds model.num_classes "
                              f"({self.cfg.model.num_classes})")
        if d.benchmark != "digits_shift":
            if not self.cfg.data.root:
                raise ConfigError(f"data.root must point at the {d.benchmark} folder (root/<domain>/<class>/)")
            if not d.target_domain:
                raise ConfigError(f"da.target_domain is needed for {d.benchmark} "
                                  f"(one of {', '.join(da.BENCHMARKS[d.benchmark]['domains'])})")
            if not d.source_ckpt:
                raise ConfigError(f"da.source_ckpt is needed for {d.benchmark}: train the source model first "
                                  "(configs/sfda/*_source.yaml) and point da.source_ckpt at its best.ckpt")

    def build_loaders(self) -> None:
        self._check()
        d = self.cfg.da
        if d.benchmark == "digits_shift":
            pair = da.make_digits_shift(d.shift_seed, d.shift_rotation, d.shift_blur, d.shift_invert, d.shift_noise,
                                        size=self.cfg.data.image_size)
            names = [str(i) for i in range(pair.num_classes)]
            self.source_data = ArrayDomain(pair.source_x, pair.source_y, names)
            self.target = ArrayDomain(pair.target_x, pair.target_y, names)
        else:
            self.target = FolderDomain(self.cfg.data.root, d.benchmark, d.target_domain, self.cfg.data)
        if len(self.target.classes) != self.cfg.model.num_classes:
            raise ConfigError(f"model.num_classes is {self.cfg.model.num_classes} but {d.benchmark} has "
                              f"{len(self.target.classes)} classes")

    def ensure_val_loader(self) -> None:
        if self.target is None:
            self.build_loaders()

    def build_model(self) -> nn.Cell:
        net = super().build_model()
        missing = [m for m in ("features_and_logits", "forward_head", "classifier_weights") if not hasattr(net, m)]
        if missing:
            raise TaskError(f"model '{self.cfg.model.name}' lacks {', '.join(missing)}: the sfda task needs a "
                            "feature extractor + classifier model such as shot_resnet50 / shot_resnet20 / shot_mlp")
        return net

    @property
    def steps_per_epoch(self) -> int:
        return self.cfg.da.iterations

    def describe(self) -> str:
        d = self.cfg.da
        where = "digits -> shifted digits" if d.benchmark == "digits_shift" else \
            f"{d.benchmark} {d.source_domain or '?'} -> {d.target_domain}"
        return (f"sfda: {self.cfg.model.name} on {where}, {len(self.target)} target samples, {self.cfg.train.epochs} "
                f"loops x {d.iterations} iterations ({d.classes_per_batch} classes x {d.samples_per_class} samples)")

    def build(self) -> "SFDATask":
        from ..engine.loop import set_seed
        cfg, d = self.cfg, self.cfg.da
        set_seed(cfg.train.seed)
        self.build_loaders()
        self.net = self.build_model()
        if d.source_ckpt:
            load_weights(self.net, d.source_ckpt)
        self.lrs = da.inv_lr_schedule(cfg.optim.lr, cfg.train.epochs * d.iterations, d.inv_alpha, d.inv_beta)
        try:
            groups = da.adaptation_param_groups(self.net, self.lrs, cfg.optim.weight_decay, d.bn_lr_mult, d.frozen)
        except da.optim.AdaptationOptimError as err:
            raise ConfigError(f"da.frozen: {err}") from err
        opt = nn.SGD(groups, learning_rate=groups[0]["lr"], momentum=cfg.optim.momentum, nesterov=cfg.optim.nesterov)
        self.optimizers = {"optim": opt}
        cdd = da.CDD(cfg.model.num_classes, d.classes_per_batch, d.samples_per_class, tuple(d.kernel_num),
                     tuple(float(m) for m in d.kernel_mul))
        self.step_cell = TrainStep(da.SFDALoss(self.net, cdd, d.cdd_weight), opt, cfg.train.clip_grad)
        self._step = compiled(self.step_cell, cfg.train.jit)
        return self

    # ------------------------------------------------------------------ source model
    def prepare_source(self) -> None:
        """Train the source model when there is no ``da.source_ckpt`` (digits only); write it as
        ``source.ckpt``; measure source-only accuracy and write ``confusion_before.png``."""
        d = self.cfg.da
        if not d.source_ckpt:
            src = self.source_data
            self.log(f"training the source model: {len(src)} source samples, {d.source_epochs} epochs")
            train_source_model(self.net, src.images, src.labels, d.source_epochs, d.source_lr,
                               d.source_batch_size, self.cfg.loss.label_smoothing, self.cfg.train.seed,
                               self.cfg.train.jit, self.log)
            if self.is_main:
                save_weights(self.net, os.path.join(self.out_dir, "source.ckpt"))
        metrics = self.evaluate()
        self.source_only = {"source_only_top1": metrics["val_top1"], "source_only_mean_class": metrics["val_mean_class"]}
        self.log(f"source-only on the target: top1 {metrics['val_top1']:.4f} mean-class {metrics['val_mean_class']:.4f}")
        if self.is_main:
            self._confusion("confusion_before.png", "source only")

    def _confusion(self, name: str, title: str) -> str:
        _, logits = self._features()
        pred = logits.argmax(1)
        cm = da.confusion_matrix(self.target.labels, pred, len(self.target.classes))
        return da.save_confusion_png(cm, os.path.join(self.out_dir, name), self.target.classes,
                                     f"{title}: accuracy {da.accuracy(pred, self.target.labels):.3f}")

    # ------------------------------------------------------------------ adaptation loop
    def _extract(self):
        n, bs = len(self.target), self.cfg.da.feature_batch_size
        feats, logits = [], []
        for start in range(0, n, bs):
            f, z = da.extract_features(self.net, self.target.batch(np.arange(start, min(start + bs, n))), batch_size=bs)
            feats.append(f)
            logits.append(z)
        return np.concatenate(feats), np.concatenate(logits)

    def _features(self):
        if self._cache is None:
            self._cache = self._extract()
        return self._cache

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        cfg, d = self.cfg, self.cfg.da
        feats, logits = self._features()
        self._cache = None
        anchors = self.net.classifier_weights()
        try:
            state = da.refresh(feats, anchors, d.classes_per_batch, d.samples_per_class, d.threshold, d.min_samples,
                               d.kmeans_eps, d.variance_mult, d.covariance, d.shrinkage, cfg.train.seed, epoch)
        except da.sampler.SamplerError as err:
            raise TaskError(f"loop {epoch + 1}: {err}") from err
        sel = state.selection
        self.pseudo_labels = sel.labels.copy()
        record = {"target_acc": da.accuracy(logits.argmax(1), self.target.labels),
                  "pseudo_label_acc": da.pseudo_label_accuracy(sel.labels, self.target.labels, sel.usable_mask),
                  "kept_ratio": sel.kept_ratio, "kept_classes": float(len(state.gaussians.classes)),
                  "kmeans_iterations": float(state.clustering.iterations)}
        if epoch == 0 and self.source_only:
            record.update(self.source_only)
        bar = None
        if self.is_main and cfg.train.progress:
            from tqdm import tqdm
            bar = tqdm(total=d.iterations, desc=f"loop {epoch + 1}/{cfg.train.epochs}", unit="step", leave=False,
                       dynamic_ncols=True)
        losses, start = [], time.time()
        self.net.set_train(True)
        try:
            for step, (idx, cls, mask, rng) in enumerate(state.sampler.iterate(d.iterations)):
                aug = np.random.default_rng((cfg.train.seed, epoch, step, 1))
                images = self.target.batch(idx, aug)
                surrogate = state.gaussians.sample(cls, d.samples_per_class, rng)
                loss = float(self.train_step(ms.Tensor(images), ms.Tensor(surrogate), ms.Tensor(mask)).asnumpy())
                if not math.isfinite(loss):
                    raise TrainingDiverged(f"CDD loss became {loss} in loop {epoch + 1}, step {step + 1}; lower "
                                           "optim.lr or set train.clip_grad (then --resume works)")
                losses.append(loss)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(cdd=f"{loss:.4f}")
        finally:
            if bar is not None:
                bar.close()
        self.net.set_train(False)
        if self.is_main:
            tmp = os.path.join(self.out_dir, ".pseudo_labels.tmp.npy")
            np.save(tmp, sel.labels)
            os.replace(tmp, os.path.join(self.out_dir, "pseudo_labels.npy"))
        record.update({"train_loss": float(np.mean(losses)), "time_s": time.time() - start})
        return record

    def evaluate(self) -> Dict[str, float]:
        self.ensure_val_loader()
        self._cache = self._extract()
        pred = self._cache[1].argmax(1)
        labels = self.target.labels
        return {"val_top1": da.accuracy(pred, labels),
                "val_mean_class": da.mean_class_accuracy(pred, labels, len(self.target.classes)),
                "val_n": float(len(labels))}

    def fit(self, resume: Optional[str] = None) -> Dict[str, float]:
        if self.is_main:
            os.makedirs(self.out_dir, exist_ok=True)
        if not resume:
            self.prepare_source()
        record = super().fit(resume)
        first = self.history[0] if self.history else {}
        if self.is_main and self.history:
            self._confusion("confusion_after.png", "adapted")
            # point j: the weights after j loops (j = 0: the source model), the pseudo-labels drawn from them
            rows = [{"target_acc": r.get("target_acc"), "pseudo_label_acc": r.get("pseudo_label_acc"),
                     "kept_ratio": r.get("kept_ratio")} for r in self.history]
            rows.append({"target_acc": record.get("val_top1")})
            da.save_loop_plot(rows, os.path.join(self.out_dir, "loops.png"))
        summary = {"source_only_top1": first.get("source_only_top1", float("nan")),
                   "adapted_top1": record.get("val_top1", float("nan")),
                   "adapted_mean_class": record.get("val_mean_class", float("nan")),
                   "pseudo_label_acc_first": first.get("pseudo_label_acc", float("nan")),
                   "pseudo_label_acc_last": self.history[-1].get("pseudo_label_acc", float("nan"))
                   if self.history else float("nan")}
        self.log(f"target accuracy: source-only {summary['source_only_top1']:.4f} -> adapted "
                 f"{summary['adapted_top1']:.4f} (pseudo-label accuracy {summary['pseudo_label_acc_first']:.4f} -> "
                 f"{summary['pseudo_label_acc_last']:.4f}); pictures confusion_before.png, confusion_after.png, "
                 f"loops.png in {self.out_dir}")
        self.summary = summary
        return dict(record, **summary)

    # ------------------------------------------------------------------ eval / export
    def example_inputs(self, batch: int = 4):
        self.ensure_val_loader()
        return (self.target.batch(np.arange(min(batch, len(self.target)))),)

    def predict(self, inputs):
        return self.net(ms.Tensor(inputs[0])).asnumpy()


def _config_path() -> str:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, "configs", "sfda", "shot_mlp_digits_shift.yaml")


def _register_demo():
    from .demos import register_demo

    @register_demo("sfda", "SFDA-DE: a source model trained on half of the digits, adapted without source data "
                           "to the rotated/blurred/noised other half (~1 min; --quick: 5 loops)")
    def sfda_demo(out_dir: str, quick: bool = False) -> Dict:
        from .registry import load_config
        overrides = [f"train.output_dir={out_dir}", "train.progress=false"]
        if quick:
            overrides += ["train.epochs=5", "da.iterations=10"]
        task = SFDATask(load_config(_config_path(), overrides)).build()
        task.fit()
        return {k: round(float(task.summary[k]), 4) for k in
                ("source_only_top1", "adapted_top1", "pseudo_label_acc_first", "pseudo_label_acc_last")}


_register_demo()
