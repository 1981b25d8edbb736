"""``instance_seg3d``: MaskGroup (Zhong et al., arXiv 2203.14662) 3D instance segmentation.

One training step (PointGroup's scheme, dvlab-research/PointGroup ``train.py``): for
``seg3d.prepare_epochs`` epochs only the semantic and offset losses train (no proposals: the
score and mask terms of :class:`~mindcv_ext.seg3d.losses.MaskGroupLoss` get all-zero masks);
afterwards every step first runs the backbone without gradient (a compiled graph), groups the
predicted shifted points on the host (``hierarchical_grouping``: scipy kd-tree + connected
components), packs the proposals into static ``(max_proposals, max_points)`` arrays with their
MaskScoreNet targets and then runs the compiled joint train step. One scene per step; the
points of every level are padded to a multiple of ``seg3d.pad_multiple`` so only a few graph
shapes compile. Evaluation: the ScanNet AP protocol (AP, AP50, AP25), ``val_ap50:max`` picks
``best.ckpt``. Host randomness (augmentation, proposal subsampling) is seeded per epoch, so a
resumed run repeats the uninterrupted one exactly.
"""
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import mindspore as ms

from ..config import ConfigError
from ..data.registry import DatasetError, create_dataset, register_dataset
from ..engine.step import TrainStep, compiled
from ..engine.loop import set_seed
from ..engine.optim import optimizer_from_config
from ..seg3d import (IGNORE_LABEL, MaskGroupLoss, Proposals, build_point_graph, evaluate_instances, finalize_instances,
                     hierarchical_grouping, offset_targets, pack_proposals, pad_graph, proposal_targets,
                     single_radius_grouping)
from ..seg3d.scannet import SCANNET_INSTANCE_CLASSES, SceneFileError, ScanNetV2Scenes, load_scene
from ..seg3d.scenes import ROOM_INSTANCE_CLASSES, RoomScenes
from ..seg3d.transforms import augment_scene
from .base import Task, TaskError
from .registry import register_task

SEG3D_KEYS = {
    "voxel_sizes": ((list,), [0.15, 0.45]),   # backbone levels 1.. (metres)
    "k": ((int,), 16),                        # neighbours per point in the backbone graph
    "pad_multiple": ((int,), 512),
    "prepare_epochs": ((int,), 1),            # epochs without proposals (PointGroup: prepare_epochs)
    "max_proposals": ((int,), 32),
    "max_points": ((int,), 256),              # points per packed proposal in training
    "grouping": ((str,), "hpg"),              # hpg | single_radius
    "radius": ((float,), 0.03),
    "levels": ((int,), 2),
    "growth": ((float,), 2.5),
    "adaptive_exponent": ((float,), 0.0),
    "dual_set": ((bool,), False),
    "group_min_points": ((int,), 50),
    "score_threshold": ((float,), 0.09),
    "nms_iou": ((float,), 0.3),
    "mask_threshold": ((float,), 0.5),
    "use_mask": ((bool,), True),
    "min_points": ((int,), 100),              # final instances and the evaluation's min region size
    "augment": ((bool,), True),
    "elastic": ((bool,), True),
    "loss_weights": ((list,), [1.0, 1.0, 1.0, 1.0, 1.0]),
}
DATA_KEYS = {
    "num_scenes": ((list,), [40, 10]),        # rooms3d: train and val scene counts
    "room": ((dict,), {}),                    # rooms3d: keyword arguments of make_room
    "test_area": ((int,), 5),                 # s3dis: the held-out area
}
S3DIS_CLASSES = ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
                 "bookcase", "board", "clutter")


# ---------------------------------------------------------------------------------------- datasets
class _SceneList:
    """Scenes as dicts (coords, colors, semantic, instance), with ``instance_classes``."""

    def __init__(self, scenes, instance_classes, num_classes):
        self.scenes, self.instance_classes, self.num_classes = scenes, tuple(instance_classes), num_classes

    def __len__(self):
        return len(self.scenes)

    def __getitem__(self, i):
        return self.scenes[i]


@register_dataset("rooms3d", columns=("scene",), image_transforms=False)
def rooms3d(data_cfg, split, seed):
    """Procedural rooms (``seg3d.scenes``): train scenes from seed ``seed``, val from ``seed + 10**6``."""
    counts = data_cfg.num_scenes
    room = dict(data_cfg.room or {})
    for key in ("room_size", "size_range", "num_objects"):
        if key in room:
            room[key] = tuple(room[key])
    try:
        scenes = RoomScenes(int(counts[0 if split == "train" else 1]), seed + (0 if split == "train" else 10 ** 6),
                            **room)
        scenes[0]
    except (TypeError, ValueError) as err:
        raise DatasetError(f"rooms3d: bad data.room or data.num_scenes ({err})") from None
    return _SceneList(scenes, ROOM_INSTANCE_CLASSES, 6)


@register_dataset("scannetv2", columns=("scene",), image_transforms=False)
def scannetv2(data_cfg, split, seed):
    """Preprocessed ScanNetV2 scenes ``<data.root>/{train,val}/*.npz`` (``seg3d.scannet``)."""
    if not data_cfg.root:
        raise DatasetError("scannetv2: data.root is not set (folder with train/ and val/ of .npz scenes)")
    try:
        return _SceneList(ScanNetV2Scenes(data_cfg.root, split), SCANNET_INSTANCE_CLASSES, 20)
    except SceneFileError as err:
        raise DatasetError(str(err)) from None


class S3DISScenes:
    """S3DIS rooms as ``<root>/Area_<a>/<room>.npz`` in the ScanNet file layout (13 classes,
    ``semantic_labels`` 0..12; every class but ceiling, floor and wall is an instance class)."""

    def __init__(self, root: str, areas: Sequence[int]):
        self.files = []
        for a in areas:
            folder = os.path.join(root, f"Area_{a}")
            if not os.path.isdir(folder):
                raise DatasetError(f"{folder}: S3DIS area folder does not exist")
            self.files += sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".npz"))
        if not self.files:
            raise DatasetError(f"{root}: no .npz rooms in areas {list(areas)}")

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        try:
            scene = load_scene(self.files[i])
        except SceneFileError as err:
            raise DatasetError(str(err)) from None
        if (scene["semantic"] >= len(S3DIS_CLASSES)).any():
            raise DatasetError(f"{self.files[i]}: field 'semantic_labels' has values above 12 (S3DIS has 13 classes)")
        return scene


@register_dataset("s3dis", columns=("scene",), image_transforms=False)
def s3dis(data_cfg, split, seed):
    """S3DIS: areas other than ``data.test_area`` train, ``data.test_area`` validates."""
    if not data_cfg.root:
        raise DatasetError("s3dis: data.root is not set (folder with Area_1 .. Area_6 of .npz rooms)")
    test = int(data_cfg.test_area)
    areas = [a for a in range(1, 7) if a != test] if split == "train" else [test]
    return _SceneList(S3DISScenes(data_cfg.root, areas), range(3, 13), 13)


# ---------------------------------------------------------------------------------------- the task
def _round_up(n: int, m: int) -> int:
    return int(-(-n // m) * m)


@register_task
class InstanceSeg3DTask(Task):
    """MaskGroup training, ScanNet-protocol evaluation and scene inference."""

    name = "instance_seg3d"
    sections = {"seg3d": SEG3D_KEYS}
    data_keys = DATA_KEYS
    choices = {("seg3d", "grouping"): ("hpg", "single_radius")}
    ranges = {("seg3d", "k"): (lambda v: v >= 1, "at least 1"),
              ("seg3d", "pad_multiple"): (lambda v: v >= 1, "at least 1"),
              ("seg3d", "max_proposals"): (lambda v: v >= 1, "at least 1"),
              ("seg3d", "max_points"): (lambda v: v >= 1, "at least 1"),
              ("seg3d", "radius"): (lambda v: v > 0, "positive"),
              ("seg3d", "prepare_epochs"): (lambda v: v >= 0, "0 or more")}
    default_monitor = "val_ap50:max"

    # ------------------------------------------------------------------ building
    @property
    def s(self):
        return self.cfg.seg3d

    def build_model(self):
        net = super().build_model()
        if not hasattr(net, "mask_score"):
            raise TaskError(f"task '{self.name}' needs a MaskGroup model (maskgroup_*), got '{self.cfg.model.name}'")
        if len(self.s.voxel_sizes) + 1 != net.points.num_levels:
            raise ConfigError(f"seg3d.voxel_sizes has {len(self.s.voxel_sizes)} entries; model "
                              f"{self.cfg.model.name} has {net.points.num_levels} levels (needs levels - 1)")
        return net

    def build_loaders(self):
        self.train_loader = create_dataset(self.cfg.data, "train", self.cfg.train.seed)
        self.val_loader = create_dataset(self.cfg.data, "val", self.cfg.train.seed)
        if self.cfg.data.batch_size != 1:
            self.log("note: instance_seg3d trains one scene per step; data.batch_size is ignored")

    def ensure_val_loader(self):
        if self.val_loader is None:
            self.val_loader = create_dataset(self.cfg.data, "val", self.cfg.train.seed)

    @property
    def steps_per_epoch(self) -> int:
        cap = self.cfg.train.max_steps_per_epoch
        return min(len(self.train_loader), cap) if cap else len(self.train_loader)

    def describe(self):
        return (f"{self.name}: {self.cfg.model.name} on {self.cfg.data.dataset}, {len(self.train_loader)} train / "
                f"{len(self.val_loader)} val scenes, {self.steps_per_epoch} steps/epoch, "
                f"proposals from epoch {self.s.prepare_epochs + 1}")

    def build(self):
        set_seed(self.cfg.train.seed)
        self.build_loaders()
        self.net = self.build_model()
        opt, self.lrs = optimizer_from_config(self.cfg, self.net.trainable_params(), self.steps_per_epoch)
        self.optimizers = {"optim": opt}
        if len(self.s.loss_weights) != 5:
            raise ConfigError(f"seg3d.loss_weights needs 5 values (sem, reg, dir, score, mask), got {self.s.loss_weights}")
        self.loss = MaskGroupLoss(self.net, self.s.loss_weights)
        self.step_cell = TrainStep(self.loss, opt, self.cfg.train.clip_grad)
        self._step = compiled(self.step_cell, self.cfg.train.jit)
        self._points = compiled(self.net.points, self.cfg.train.jit)
        self._cache = {}
        return self

    # ------------------------------------------------------------------ scene arrays
    def scene_arrays(self, scene, rng=None):
        """Padded graph, features, labels and offset targets of one scene (augmented with ``rng``)."""
        coords = scene["coords"]
        if rng is not None and self.s.augment:
            coords = augment_scene(coords, rng, elastic=self.s.elastic)
        coords = np.asarray(coords, np.float32)
        n = len(coords)
        graph = build_point_graph(coords, self.s.voxel_sizes, self.net.k)
        sizes = [_round_up(len(c), self.s.pad_multiple if lvl == 0 else max(self.s.pad_multiple // 4, 1))
                 for lvl, c in enumerate(graph.coords)]
        pg, rows = pad_graph(graph, sizes)
        real = np.arange(len(rows)) < n
        feats = np.concatenate([scene["colors"], coords - coords.mean(0)], 1)[rows].astype(np.float32)
        if feats.shape[1] != self.net.in_channels:
            raise ConfigError(f"model.in_channels is {self.net.in_channels}; scenes give RGB + xyz = 6 features")
        out = {"graph": pg, "feats": feats, "n": n, "coords": coords}
        if "semantic" in scene:
            out["sem"] = np.where(real, scene["semantic"][rows], IGNORE_LABEL).astype(np.int32)
            out["inst"] = np.where(real, scene["instance"][rows], IGNORE_LABEL)
        return out

    def _group(self, coords, offsets, sem_pred, instance_classes, min_points):
        fg = np.isin(sem_pred, list(instance_classes))
        s = self.s
        if s.grouping == "single_radius":
            return single_radius_grouping(coords, offsets, sem_pred, fg, s.radius, min_points)
        return hierarchical_grouping(coords, offsets, sem_pred, fg, s.radius, s.levels, s.growth, s.adaptive_exponent,
                                     min_points, dual_set=s.dual_set)

    def _forward_points(self, a):
        graph = [ms.Tensor(x) for x in a["graph"].inputs()]
        return self._points(ms.Tensor(a["feats"]), *graph)

    # ------------------------------------------------------------------ training
    def train_epoch(self, epoch: int) -> Dict[str, float]:
        import math
        import time
        from ..engine.loop import TrainingDiverged
        rng = np.random.default_rng([self.cfg.train.seed, epoch])
        order = rng.permutation(len(self.train_loader))[:self.steps_per_epoch]
        with_props = epoch >= self.s.prepare_epochs
        P, M = self.s.max_proposals, self.s.max_points
        classes = self.train_loader.instance_classes
        losses, n_props, start = [], [], time.time()
        for i, idx in enumerate(order):
            if self.s.augment:
                a = self.scene_arrays(self.train_loader[int(idx)], rng)
            else:   # the same arrays every epoch: built once
                if int(idx) not in self._cache:
                    self._cache[int(idx)] = self.scene_arrays(self.train_loader[int(idx)])
                a = self._cache[int(idx)]
            props = Proposals()
            if with_props:
                self.net.set_train(False)
                sem, off, _ = self._forward_points(a)
                self.net.set_train(True)
                real = np.arange(len(a["sem"])) < a["n"]
                pred = np.where(real, sem.asnumpy().argmax(1), -1)
                props = self._group(a["graph"].coords[0], off.asnumpy(), pred, classes,
                                    min(self.s.group_min_points, 10))
            packed = pack_proposals(props, P, M, rng)
            score_t, mask_t, mask_w = proposal_targets(packed, props, a["inst"])
            gt_off, off_valid = offset_targets(a["graph"].coords[0], a["inst"])
            batch = [a["feats"], *a["graph"].inputs(), packed.index, packed.valid, a["sem"], gt_off,
                     off_valid.astype(np.float32), score_t, packed.proposal_valid, mask_t, mask_w]
            loss = float(self._step(*[ms.Tensor(x) for x in batch]).asnumpy())
            if not math.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss} at epoch {epoch + 1}, step {i + 1}; lower optim.lr "
                                       "or set train.clip_grad (then --resume works from last.ckpt)")
            losses.append(loss)
            n_props.append(len(props))
            if self.is_main and (i + 1) % self.cfg.train.log_interval == 0:
                print(f"epoch {epoch + 1} step {i + 1}/{len(order)} loss {loss:.4f} proposals {len(props)}", flush=True)
        elapsed = time.time() - start
        return {"train_loss": float(np.mean(losses)), "proposals": float(np.mean(n_props)),
                "scenes_per_s": len(order) / max(elapsed, 1e-9), "time_s": elapsed}

    # ------------------------------------------------------------------ prediction and evaluation
    def predict_scene(self, scene, use_mask: Optional[bool] = None, grouping: Optional[str] = None):
        """Instances of one scene (list of ``Instance``) and the per-point semantic prediction."""
        a = self.scene_arrays(scene)
        was = self.net.training
        self.net.set_train(False)
        sem, off, feats = self._forward_points(a)
        n = a["n"]
        pred = sem.asnumpy().argmax(1)[:n]
        classes = getattr(self.val_loader, "instance_classes", None) or ROOM_INSTANCE_CLASSES
        keep_grouping = self.s.grouping
        if grouping:
            self.cfg.seg3d.grouping = grouping
        try:
            props = self._group(a["coords"], off.asnumpy()[:n], pred, classes, self.s.group_min_points)
        finally:
            self.cfg.seg3d.grouping = keep_grouping
        if len(props) == 0:
            self.net.set_train(was)
            return [], pred
        packed = pack_proposals(props, len(props))
        mask_logits, score_logits = self.net.mask_score(feats, ms.Tensor(a["graph"].coords[0]),
                                                        ms.Tensor(packed.index), ms.Tensor(packed.valid))
        self.net.set_train(was)
        mask_p = 1 / (1 + np.exp(-mask_logits.asnumpy()))
        score_p = 1 / (1 + np.exp(-score_logits.asnumpy()))
        use_mask = self.s.use_mask if use_mask is None else use_mask
        return finalize_instances(props, packed, score_p, mask_p if use_mask else None, self.s.mask_threshold,
                                  self.s.score_threshold, self.s.min_points, self.s.nms_iou, n), pred

    def evaluate(self, use_mask: Optional[bool] = None, grouping: Optional[str] = None) -> Dict[str, float]:
        self.ensure_val_loader()
        scenes, acc = [], []
        for i in range(len(self.val_loader)):
            scene = self.val_loader[i]
            inst, pred = self.predict_scene(scene, use_mask, grouping)
            acc.append(float((pred == scene["semantic"])[scene["semantic"] != IGNORE_LABEL].mean()))
            scenes.append((inst, scene["semantic"], scene["instance"]))
        res = evaluate_instances(scenes, self.val_loader.instance_classes, self.s.min_points)
        self.log(f"AP {_nan0(res['ap']):.3f}  AP50 {_nan0(res['ap50']):.3f}  AP25 {_nan0(res['ap25']):.3f} "
                 f"({len(scenes)} scenes)")
        return {"val_ap": _nan0(res["ap"]), "val_ap50": _nan0(res["ap50"]), "val_ap25": _nan0(res["ap25"]),
                "val_sem_acc": float(np.mean(acc))}

    def load_for_inference(self, ckpt, use_ema=False):
        super().load_for_inference(ckpt, use_ema)
        self._points = compiled(self.net.points, self.cfg.train.jit)
        return self

    def export_cell(self):
        return self.net

    def example_inputs(self, batch: int = 4):
        from ..models.maskgroup import example_inputs
        return tuple(t.asnumpy() for t in example_inputs(self.net))

    def infer_files(self, paths: Sequence[str], topk: int = 5) -> List[dict]:
        """Scene files (``.npz``, the ScanNet layout; labels optional) or ``room:SEED``: writes
        ``<name>_instances.png`` (top-down, predicted vs true instances) and ``<name>_pred.ply``
        next to ``train.output_dir``."""
        out = []
        os.makedirs(self.out_dir, exist_ok=True)
        for path in paths:
            try:
                if path.startswith("room:"):
                    from ..seg3d.scenes import make_room
                    room = dict(self.cfg.data.room or {})
                    room = {k: tuple(v) if isinstance(v, list) else v for k, v in room.items()}
                    scene = make_room(int(path[5:]), **room)
                    stem = f"room{int(path[5:])}"
                else:
                    try:
                        scene = load_scene(path)
                    except SceneFileError:
                        scene = load_scene(path, with_labels=False)
                    stem = os.path.splitext(os.path.basename(path))[0]
                inst, _ = self.predict_scene(scene)
            except (SceneFileError, ValueError) as err:
                out.append({"file": path, "error": str(err)})
                continue
            base = os.path.join(self.out_dir, stem)
            write_topdown_png(base + "_instances.png", scene, inst)
            write_ply(base + "_pred.ply", scene["coords"], inst)
            self.log(f"{path}: {len(inst)} instances -> {base}_instances.png, {base}_pred.ply")
            out.append({"file": path, "top": [(i.label, i.score) for i in inst[:topk]], "instances": len(inst),
                        "png": base + "_instances.png", "ply": base + "_pred.ply"})
        return out


def _nan0(v):
    return 0.0 if v is None or not np.isfinite(v) else float(v)


def instance_colours(num_points: int, groups: List[np.ndarray], seed: int = 0) -> np.ndarray:
    """(N, 3) uint8: grey for points of no group, a distinct colour per group."""
    rng = np.random.default_rng(seed)
    col = np.full((num_points, 3), 190, np.uint8)
    for g in groups:
        col[g] = rng.integers(30, 230, 3)
    return col


def write_topdown_png(path: str, scene, instances) -> None:
    """Top-down view (x, y) of predicted instances next to the true ones."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xyz = scene["coords"]
    order = np.argsort(xyz[:, 2])       # higher points drawn last
    panels = [("prediction", [i.indices for i in instances])]
    if "instance" in scene:
        ids = [k for k in np.unique(scene["instance"]) if k != IGNORE_LABEL]
        panels.append(("ground truth", [np.flatnonzero(scene["instance"] == k) for k in ids]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5))
    for ax, (title, groups) in zip(np.atleast_1d(axes), panels):
        col = instance_colours(len(xyz), groups)
        ax.scatter(xyz[order, 0], xyz[order, 1], c=col[order] / 255.0, s=2, linewidths=0)
        ax.set_title(f"{title} ({len(groups)} instances)")
        ax.set_aspect("equal")
        ax.axis("off")
    fig.savefig(path + ".tmp", dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    os.replace(path + ".tmp", path)


def write_ply(path: str, coords: np.ndarray, instances) -> None:
    """ASCII PLY: x y z, colour per predicted instance, ``instance`` id (-1 for none)."""
    col = instance_colours(len(coords), [i.indices for i in instances])
    ids = np.full(len(coords), -1, np.int64)
    for k, i in enumerate(instances):
        ids[i.indices] = k
    header = ("ply\nformat ascii 1.0\n"
              f"element vertex {len(coords)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty int instance\nend_header\n")
    with open(path + ".tmp", "w") as f:
        f.write(header)
        for p, c, k in zip(coords, col, ids):
            f.write(f"{p[0]:.4f} {p[1]:.4f} {p[2]:.4f} {c[0]} {c[1]} {c[2]} {k}\n")
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------------------------------- demo
def grouping_table(num_scenes: int = 6, noise: float = 0.12, seed: int = 0, room: Optional[dict] = None,
                   radius: float = 0.08, min_points: int = 20) -> Dict[str, float]:
    """AP50 of grouping alone on procedural rooms with true semantics: true offsets (oracle),
    true offsets + N(0, noise) per axis with HPG and with one-radius BFS. Each proposal is
    scored by its size fraction of its class's largest (no network)."""
    from ..seg3d.scenes import make_room
    from ..seg3d.inference import Instance, point_nms
    room = room or dict(DEMO_ROOM)
    rng = np.random.default_rng(seed)
    runs = {"oracle_ap50": (0.0, hierarchical_grouping), "noisy_ap50_hpg": (noise, hierarchical_grouping),
            "noisy_ap50_single_radius": (noise, single_radius_grouping)}
    scenes = [make_room(10 ** 5 + seed + i, **room) for i in range(num_scenes)]
    noises = [rng.normal(0, 1, (len(s["coords"]), 3)) for s in scenes]
    out = {}
    for key, (sigma, fn) in runs.items():
        evals = []
        for s, z in zip(scenes, noises):
            off, _ = offset_targets(s["coords"], s["instance"])
            fg = np.isin(s["semantic"], ROOM_INSTANCE_CLASSES)
            kw = dict(radius=radius, min_points=min_points)
            if fn is hierarchical_grouping:
                kw.update(levels=2, growth=2.0)
            props = fn(s["coords"], off + sigma * z, s["semantic"], fg, **kw)
            score = props.sizes / max(props.sizes.max(initial=1), 1)
            keep = point_nms(props.indices, score, 0.3, len(s["coords"]))
            evals.append(([Instance(props.indices[k], int(props.classes[k]), float(score[k])) for k in keep],
                          s["semantic"], s["instance"]))
        out[key] = _nan0(evaluate_instances(evals, ROOM_INSTANCE_CLASSES, min_points)["ap50"])
    return out


DEMO_ROOM = {"room_size": (3.0, 3.0, 2.0), "num_objects": (3, 6), "size_range": (0.25, 1.2), "spacing": 0.07,
             "background_spacing": 0.15}


def _demo(out_dir: str, quick: bool) -> Dict[str, float]:
    import json
    from .registry import load_config
    table = grouping_table(num_scenes=3 if quick else 8)
    print("grouping on true semantics (AP50): oracle offsets {oracle_ap50:.3f}; offsets + N(0, 12 cm): "
          "HPG {noisy_ap50_hpg:.3f} vs single-radius BFS {noisy_ap50_single_radius:.3f}".format(**table), flush=True)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cfg_path = os.path.join(here, "configs", "maskgroup", "maskgroup_rooms_cpu.yaml")
    sets = [f"train.output_dir={os.path.join(out_dir, 'maskgroup_rooms')}"]
    if quick:
        sets += ["data.num_scenes=[24,6]", "train.epochs=12", "seg3d.prepare_epochs=7", "train.val_interval=12"]
    task = InstanceSeg3DTask(load_config(cfg_path if os.path.isfile(cfg_path) else None, sets, "instance_seg3d"))
    task.build()
    record = task.fit()
    no_mask = task.evaluate(use_mask=False)
    single = task.evaluate(grouping="single_radius")
    rows = [("HPG + mask (learned)", record), ("HPG without mask", no_mask), ("single-radius + mask", single)]
    print("learned pipeline on procedural val rooms:", flush=True)
    for name, r in rows:
        print(f"  {name:24s} AP {r['val_ap']:.3f}  AP50 {r['val_ap50']:.3f}  AP25 {r['val_ap25']:.3f}", flush=True)
    scene = task.val_loader[0]
    inst, _ = task.predict_scene(scene)
    write_topdown_png(os.path.join(out_dir, "maskgroup_val0_instances.png"), scene, inst)
    write_ply(os.path.join(out_dir, "maskgroup_val0_pred.ply"), scene["coords"], inst)
    result = {"ap": record["val_ap"], "ap50": record["val_ap50"], "ap25": record["val_ap25"], **table,
              "ap_without_mask": no_mask["val_ap"], "ap50_without_mask": no_mask["val_ap50"],
              "ap50_single_radius_learned": single["val_ap50"]}
    return {k: round(float(v), 4) for k, v in result.items()}


def _register_demo():
    from .demos import register_demo
    register_demo("maskgroup", "MaskGroup: grouping table (oracle / noisy offsets, HPG vs single radius) and a "
                               "learned pipeline on procedural rooms (AP, AP50, AP25)")(_demo)


_register_demo()
