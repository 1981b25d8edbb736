"""The ``translation`` task: multimodal image-to-image translation with TokenFusion (Wang et al.,
CVPR 2022, arXiv 2204.08721), following the official recipe (yikaiw/TokenFusion
``image2image_translation/main.py``).

Datasets have the columns ``(shade, texture, rgb)``, all (3, H, W) in [-1, 1]:
``translation_views`` (generated views, :mod:`mindcv_ext.seg.views`) and ``taskonomy`` (the
official layout: list files of ``{domain}/point_..._domain_{domain}.png`` lines under
``data.root``; ``data.domains`` names the two inputs and the target, ``reshading edge_texture rgb``
by default; edge maps min-max scaled by the official maxima, grey replicated to 3 channels; for
training a bilinear resize to ``data.resize_scale``, a random ``data.crop_size`` crop and a random
horizontal flip, for validation a resize to ``data.image_size``).

Training, per batch (the official order): a discriminator step on
``sum_m 0.5 (BCE(D(x_m, y), 1) + BCE(D(x_m, G_m), 0))``, then a generator step on
``sum_m BCE(D(x_m, G_m), 1) + trans.l1_weight * sum_{out in (G_0, G_1, G_ens)} mean|out - y| +
trans.lamda * sum |scores|``; two Adam optimizers (``optim.lr``, ``optim.betas``; the official
run uses 2e-4 x batch and (0.5, 0.999)), both stored in ``last.ckpt`` (``optim`` and
``dis_optim``), so a resumed run continues exactly. ``trans.gan: false`` trains with the L1 terms
only (no discriminator step).

Evaluation on the validation views: L1 (on [-1, 1], as the official script reports it), PSNR and
SSIM (on [0, 1]) of each branch and of the ensemble, and the fraction of exchanged tokens per stage
and modality; ``best.ckpt`` by ``val_ensemble_psnr``; ``samples.png`` in the run folder shows
inputs, target and outputs of the first validation views.

``trans.inputs`` trains the single-input baselines with the same model and recipe: ``shade`` (or
``texture``) feeds that input to both branches with the exchange switched off.
"""
import os
from typing import Dict, Optional, Sequence

import cv2
import numpy as np
import mindspore as ms
from mindspore import nn, ops

from ..data.datasets import ColumnSource
from ..data.loader import Loader
from ..data.registry import DatasetError, register_dataset
from ..engine.loop import run_epoch, set_seed
from ..engine.optim import create_optimizer
from ..engine.step import TrainStep, compiled
from ..models.registry import build_model
from ..models.tokenfusion import set_threshold
from ..models.tokenfusion_gen import MODALITIES, discriminator_for
from ..seg import image_metrics, views
from ..seg.exchange import exchanged_fraction
from ..seg.loss import score_l1
from .base import Task, TaskError
from .registry import register_task

TRANS_KEYS = {
    "lamda": ((float,), 1e-3),            # weight of the score L1 sum (official 1e-3)
    "l1_weight": ((float,), 100.0),       # official gama
    "threshold": ((float,), 0.02),        # exchange threshold; 0 = no exchange
    "inputs": ((str,), "shade_texture"),  # shade_texture | shade | texture
    "gan": ((bool,), True),               # False: L1 terms only, no discriminator
    "d_lr_mult": ((float,), 1.0),         # discriminator LR = d_lr_mult x optim.lr (official: equal)
    "samples": ((int,), 4),               # validation views shown in samples.png (0: none)
}
DATA_KEYS = {
    "n_train": ((int,), 256),             # translation_views: generated view counts
    "n_val": ((int,), 64),
    "train_list": ((str,), "train_domain.txt"),   # taskonomy: list files under data.root
    "val_list": ((str,), "val_domain.txt"),
    "domains": ((list,), ["reshading", "edge_texture", "rgb"]),
    "resize_scale": ((int,), 286),
    "crop_size": ((int,), 256),
}
EDGE_MAX = {"edge_texture": 11355.0, "edge_occlusion": 11584.0}   # official utils/dataset.py
DEPTH_MAX = 11.1


# ------------------------------------------------------------------------------------ datasets
@register_dataset("translation_views", columns=("shade", "texture", "rgb"), image_transforms=False)
def translation_views_dataset(data_cfg, split, seed):
    train = split == "train"
    # Disjoint draws: the validation views use another seed stream than the training ones.
    try:
        arrays = views.render_views(data_cfg.n_train if train else data_cfg.n_val, size=data_cfg.image_size,
                                    seed=seed * 2 + (0 if train else 1))
    except views.ViewConfigError as err:
        raise DatasetError(str(err)) from err
    return ColumnSource(arrays, ("shade", "texture", "rgb"))


def read_domain(path: str, domain: str) -> np.ndarray:
    """One Taskonomy image as (H, W, 3) float in [0, 255], scaled as the official reader does."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"taskonomy: cannot read '{path}'")
    img = img.astype(np.float64)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    else:
        img = img[..., 2::-1]   # BGR(A) -> RGB
    if "depth" in domain:
        img = np.log1p(img) * 255.0 / DEPTH_MAX
    elif domain in EDGE_MAX:
        img = img * 255.0 / EDGE_MAX[domain]
    return np.clip(img, 0, 255).astype(np.uint8).astype(np.float64)


class TaskonomySource:
    """The official list-file layout (see the module docstring)."""

    def __init__(self, root: str, list_file: str, domains: Sequence[str], train: bool, size: int,
                 resize_scale: int, crop_size: int, hflip: float):
        path = os.path.join(root, list_file)
        if not os.path.isfile(path):
            raise DatasetError(f"dataset 'taskonomy' needs the list file '{path}' (lines like "
                               "'{domain}/point_407_view_2_domain_{domain}.png', as in the official "
                               "image2image_translation/data/*.txt) and the Taskonomy sample-model images under "
                               f"data.root='{root}'")
        with open(path) as f:
            self.items = [os.path.join(root, line.strip()) for line in f if line.strip()]
        if len(domains) != 3:
            raise DatasetError(f"data.domains must name two inputs and the target, got {domains}")
        self.domains, self.train, self.size = list(domains), train, size
        self.resize_scale, self.crop_size, self.hflip = resize_scale, crop_size, hflip

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        imgs = [read_domain(self.items[i].replace("{domain}", d), d) for d in self.domains]
        if self.train:
            s, c = self.resize_scale, self.crop_size
            imgs = [cv2.resize(m, (s, s), interpolation=cv2.INTER_LINEAR) for m in imgs]
            top, left = np.random.randint(0, s - c + 1), np.random.randint(0, s - c + 1)
            imgs = [m[top:top + c, left:left + c] for m in imgs]
            if np.random.random() < self.hflip:
                imgs = [m[:, ::-1] for m in imgs]
        imgs = [cv2.resize(np.ascontiguousarray(m), (self.size, self.size), interpolation=cv2.INTER_LINEAR)
                for m in imgs]
        return tuple(np.ascontiguousarray((m / 127.5 - 1.0).transpose(2, 0, 1), np.float32) for m in imgs)


@register_dataset("taskonomy", columns=("shade", "texture", "rgb"), image_transforms=False)
def taskonomy_dataset(data_cfg, split, seed):
    if not data_cfg.root or not os.path.isdir(data_cfg.root):
        raise DatasetError(f"dataset 'taskonomy' needs data.root, the folder of the Taskonomy sample-model images "
                           f"and the official list files {data_cfg.train_list} / {data_cfg.val_list} "
                           f"(got data.root={data_cfg.root!r})")
    train = split == "train"
    return TaskonomySource(data_cfg.root, data_cfg.train_list if train else data_cfg.val_list, data_cfg.domains,
                           train, data_cfg.image_size, data_cfg.resize_scale, data_cfg.crop_size, data_cfg.hflip)


# ------------------------------------------------------------------------------------ cells
class TranslationPair(nn.Cell):
    """Generator and discriminator in one Cell, so checkpoints hold both."""

    def __init__(self, gen: nn.Cell, dis: Optional[nn.Cell]):
        super().__init__()
        self.gen = gen
        self.has_dis = dis is not None
        if self.has_dis:
            self.dis = dis
        self.score_layout = gen.score_layout


def _route(inputs: str, shade, texture):
    if inputs == "shade":
        return shade, shade
    if inputs == "texture":
        return texture, texture
    return shade, texture


def bce_logits(z, target: float):
    """Mean BCE of ``sigmoid(z)`` against a constant target, computed from the logits
    (``max(z, 0) - z t + log(1 + exp(-|z|))``): the official ``BCELoss(sigmoid(.))`` without its
    saturation (a float32 sigmoid of a large logit is exactly 0 or 1)."""
    return (ops.relu(z) - z * target + ops.log1p(ops.exp(-ops.abs(z)))).mean()


class DisLoss(nn.Cell):
    """``(shade, texture, rgb) -> sum_m 0.5 (BCE(D(x_m, y), 1) + BCE(D(x_m, G_m), 0))``."""

    def __init__(self, pair: TranslationPair, inputs: str):
        super().__init__(auto_prefix=False)
        self.pair, self.inputs = pair, inputs

    def construct(self, shade, texture, rgb):
        x0, x1 = _route(self.inputs, shade, texture)
        g0, g1, _, _ = self.pair.gen(x0, x1)
        g0, g1 = ops.stop_gradient(g0), ops.stop_gradient(g1)
        r0, r1 = self.pair.dis.logits(x0, x1, rgb, rgb)
        f0, f1 = self.pair.dis.logits(x0, x1, g0, g1)
        return 0.5 * (bce_logits(r0, 1.0) + bce_logits(f0, 0.0)) + 0.5 * (bce_logits(r1, 1.0) + bce_logits(f1, 0.0))


class GenLoss(nn.Cell):
    """``(shade, texture, rgb) -> (loss, l1)``: GAN + l1_weight x L1 of every output + lamda x sum |s|."""

    def __init__(self, pair: TranslationPair, inputs: str, l1_weight: float, lamda: float, gan: bool):
        super().__init__(auto_prefix=False)
        self.pair, self.inputs = pair, inputs
        self.l1_weight, self.lamda, self.gan = float(l1_weight), float(lamda), bool(gan)

    def construct(self, shade, texture, rgb):
        x0, x1 = _route(self.inputs, shade, texture)
        g0, g1, ens, scores = self.pair.gen(x0, x1)
        l1 = ops.abs(g0 - rgb).mean() + ops.abs(g1 - rgb).mean() + ops.abs(ens - rgb).mean()
        loss = self.l1_weight * l1
        if self.gan:
            d0, d1 = self.pair.dis.logits(x0, x1, g0, g1)
            loss = loss + bce_logits(d0, 1.0) + bce_logits(d1, 1.0)
        if self.lamda > 0:
            loss = loss + self.lamda * score_l1(scores)
        return loss, l1


class PairStep(nn.TrainOneStepCell):
    """One optimizer step of a network returning ``(loss, aux)``; gradients of ``loss`` only."""

    def construct(self, *inputs):
        loss, aux = self.network(*inputs)
        grads = self.grad(self.network, self.weights)(*inputs, (ops.ones_like(loss), ops.zeros_like(aux)))
        self.optimizer(grads)
        return loss, aux


class TranslationPredict(nn.Cell):
    """The exported Cell: ``(shade, texture) -> (out_0, out_1, out_ensemble)``."""

    def __init__(self, gen: nn.Cell, inputs: str):
        super().__init__(auto_prefix=False)
        self.gen, self.inputs = gen, inputs

    def construct(self, shade, texture):
        x0, x1 = _route(self.inputs, shade, texture)
        g0, g1, ens, _ = self.gen(x0, x1)
        return g0, g1, ens


class _WithScores(nn.Cell):
    def __init__(self, gen: nn.Cell, inputs: str):
        super().__init__(auto_prefix=False)
        self.gen, self.inputs = gen, inputs

    def construct(self, shade, texture):
        return self.gen(*_route(self.inputs, shade, texture))


# ------------------------------------------------------------------------------------ task
BRANCHES = (MODALITIES[0], MODALITIES[1], "ensemble")


@register_task
class TranslationTask(Task):
    name = "translation"
    export_inputs = 2
    sections = {"trans": TRANS_KEYS}
    data_keys = DATA_KEYS
    choices = {("trans", "inputs"): ("shade_texture", "shade", "texture")}
    ranges = {("trans", "lamda"): (lambda v: v >= 0, "0 or more"),
              ("trans", "l1_weight"): (lambda v: v >= 0, "0 or more"),
              ("trans", "threshold"): (lambda v: 0 <= v < 1, "in [0, 1)"),
              ("trans", "d_lr_mult"): (lambda v: v > 0, "positive"),
              ("trans", "samples"): (lambda v: v >= 0, "0 or more"),
              ("data", "n_train"): (lambda v: v >= 1, "at least 1"),
              ("data", "n_val"): (lambda v: v >= 1, "at least 1")}
    default_monitor = "val_ensemble_psnr:max"

    @property
    def threshold(self) -> float:
        """The exchange threshold in effect (off for the single-input baselines)."""
        return 0.0 if self.cfg.trans.inputs != "shade_texture" else self.cfg.trans.threshold

    def build_model(self) -> nn.Cell:
        name = self.cfg.model.name or ""
        if not name.startswith("tokenfusion_gen_"):
            raise TaskError(f"task 'translation' needs a TokenFusion generator (tokenfusion_gen_*), not '{name}'")
        gen = build_model(self.cfg.model)
        set_threshold(gen, self.threshold)
        dis = None
        if self.cfg.trans.gan:
            dis = _build_dis(self.cfg.model, discriminator_for(name))
        return TranslationPair(gen, dis)

    def build_loaders(self) -> None:
        cfg = self.cfg
        self.train_loader = Loader(cfg.data, "train", cfg.train.seed, self.rank, self.world)
        self.ensure_val_loader()

    def ensure_val_loader(self) -> None:
        if self.val_loader is None:
            self.val_loader = Loader(self.cfg.data, "val", self.cfg.train.seed)

    def build(self) -> "TranslationTask":
        cfg, t = self.cfg, self.cfg.trans
        set_seed(cfg.train.seed)
        self.build_loaders()
        self.net = self.build_model()
        self.lrs = [float(cfg.optim.lr)] * max(cfg.train.epochs * self.steps_per_epoch, 1)  # constant, as upstream
        betas = tuple(cfg.optim.betas)
        opt_g = create_optimizer("adam", [{"params": self.net.gen.trainable_params()}], float(cfg.optim.lr), eps=cfg.optim.eps,
                                 betas=betas)
        self.optimizers = {"optim": opt_g}
        self._g_step = compiled(PairStep(GenLoss(self.net, t.inputs, t.l1_weight, t.lamda, t.gan), opt_g),
                                cfg.train.jit)
        self._d_step = None
        if t.gan:
            opt_d = create_optimizer("adam", [{"params": self.net.dis.trainable_params()}], float(cfg.optim.lr) * t.d_lr_mult,
                                     eps=cfg.optim.eps, betas=betas)
            self.optimizers["dis_optim"] = opt_d
            self._d_step = compiled(TrainStep(DisLoss(self.net, t.inputs), opt_d), cfg.train.jit)
        return self

    def describe(self) -> str:
        t = self.cfg.trans
        return (super().describe() + f"; inputs {t.inputs}, threshold {self.threshold}, lamda {t.lamda}, "
                f"L1 x {t.l1_weight}, GAN {'on' if t.gan else 'off'}")

    # -------------------------------------------------------------------------- training
    def train_step(self, shade, texture, rgb):
        if self._d_step is not None:
            self._parts["d_loss"].append(float(self._d_step(shade, texture, rgb).asnumpy()))
        loss, l1 = self._g_step(shade, texture, rgb)
        self._parts["l1"].append(float(l1.asnumpy()) / 3.0)   # mean over the three outputs
        return loss

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        self._parts = {"d_loss": [], "l1": []}
        record = run_epoch(self, epoch)
        record["train_l1"] = float(np.mean(self._parts["l1"])) if self._parts["l1"] else float("nan")
        if self._parts["d_loss"]:
            record["train_d_loss"] = float(np.mean(self._parts["d_loss"]))
        return record

    # -------------------------------------------------------------------------- evaluation
    def _forward(self):
        if getattr(self, "_fwd", None) is None:
            self._fwd = compiled(_WithScores(self.net.gen, self.cfg.trans.inputs), self.cfg.train.jit)
        return self._fwd

    def evaluate(self) -> Dict[str, float]:
        net = self.net
        was = net.training
        net.set_train(False)
        sums = {f"{b}_{m}": 0.0 for b in BRANCHES for m in ("l1", "psnr", "ssim")}
        frac: Dict[str, float] = {}
        n, shown = 0, []
        fwd = self._forward()
        for shade, texture, rgb in self.val_loader.epoch(0):
            g0, g1, ens, scores = fwd(shade, texture)
            target = rgb.asnumpy()
            outs = [o.asnumpy() for o in (g0, g1, ens)]
            for b, out in zip(BRANCHES, outs):
                for i in range(len(target)):
                    sums[f"{b}_l1"] += image_metrics.l1(out[i], target[i])
                    x, y = (out[i] + 1) / 2, (target[i] + 1) / 2
                    sums[f"{b}_psnr"] += image_metrics.psnr(np.clip(x, 0, 1), y)
                    sums[f"{b}_ssim"] += image_metrics.ssim(np.clip(x, 0, 1), y)
            bsz = len(target)
            for k, v in exchanged_fraction([s.asnumpy() for s in scores], net.score_layout, self.threshold).items():
                frac[k] = frac.get(k, 0.0) + v * bsz
            if len(shown) < self.cfg.trans.samples:
                shown.append([shade.asnumpy(), texture.asnumpy(), target] + outs)
            n += bsz
        net.set_train(was)
        out = {f"val_{k}": v / max(n, 1) for k, v in sums.items()}
        for k, v in frac.items():
            out["val_exchanged_" + k.replace("/", "_")] = v / max(n, 1)
        if shown and self.is_main:
            self.write_samples(os.path.join(self.out_dir, "samples.png"), shown)
        return out

    def write_samples(self, path: str, batches) -> str:
        """Rows of (shade, texture, target, out_0, out_1, ensemble) for the first validation views."""
        cols = [np.concatenate(parts) for parts in zip(*batches)]
        k = min(self.cfg.trans.samples, len(cols[0]))
        rows = [np.concatenate([c[i].transpose(1, 2, 0) for c in cols], axis=1) for i in range(k)]
        img = np.clip((np.concatenate(rows, axis=0) + 1) * 127.5, 0, 255).round().astype(np.uint8)
        scale = max(1, 128 // cols[0].shape[-1])   # small views are enlarged (nearest) to be seen
        if scale > 1:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = path + ".tmp.png"
        if not cv2.imwrite(tmp, np.ascontiguousarray(img[..., ::-1])):
            raise OSError(f"cannot write '{path}'")
        os.replace(tmp, path)
        return path

    # -------------------------------------------------------------------------- export / predict
    def export_cell(self) -> nn.Cell:
        return TranslationPredict(self.net.gen, self.cfg.trans.inputs)

    def model_inputs(self, batch) -> tuple:
        return tuple(batch[:2])

    def predict(self, inputs: Sequence[np.ndarray]):
        out = self.export_cell()(*[ms.Tensor(np.asarray(x, np.float32)) for x in inputs[:2]])
        return tuple(o.asnumpy() for o in out)


def _build_dis(model_cfg, name: str) -> nn.Cell:
    """The discriminator of the generator's variant (same dims, depths, heads, SR and kwargs)."""
    from ..models.registry import create_model
    kwargs = {k: v for k, v in dict(model_cfg.kwargs).items() if k != "threshold"}
    if model_cfg.drop_path_rate is not None:
        kwargs["drop_path_rate"] = model_cfg.drop_path_rate
    return create_model(name, in_channels=model_cfg.in_channels, **kwargs)


__all__ = ["TranslationTask", "TaskonomySource", "TranslationPair", "GenLoss", "DisLoss", "PairStep",
           "TranslationPredict", "bce_logits", "read_domain"]
