"""The ``Task`` base class: the seams a method overrides, over the one engine.

The defaults describe a model that returns its own loss from all of the dataset's columns
(``model(*batch) -> loss``), one optimizer from the ``optim``/``sched`` sections, evaluation as
the mean validation loss, and export of that model with a validation batch as example input.
:class:`~mindcv_ext.tasks.classification.ClassificationTask` overrides the loss, the metrics and
prediction; other methods override what differs (several optimizers, host-side steps between
compiled graphs, several outputs).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import mindspore as ms
from mindspore import nn

from ..data.loader import Loader
from ..engine.distributed import init_distributed
from ..engine.ema import ModelEMA
from ..engine.loop import fit, set_seed
from ..engine.optim import optimizer_from_config, param_group_ids
from ..engine.step import TrainStep, compiled
from ..models.registry import build_model, family_hooks
from ..utils.checkpoint import load_weights, save_weights


class TaskError(ValueError):
    """A request the chosen task cannot serve (named in the message)."""


class Task:
    """One method's training, evaluation, export and prediction. Subclasses set ``name`` and
    override the seams below; ``sections``/``data_keys`` declare their config keys
    (``{key: ((types...), default)}``), ``choices``/``ranges`` their allowed values."""

    name = ""
    sections: Dict[str, dict] = {}
    data_keys: Dict[str, tuple] = {}
    choices: Dict[tuple, tuple] = {}
    ranges: Dict[tuple, tuple] = {}
    default_monitor = "val_loss:min"
    export_inputs = 1   # how many arrays ``export_cell`` takes (random export inputs when no data)

    def __init__(self, cfg, rank: Optional[int] = None, world: Optional[int] = None):
        self.cfg = cfg
        if rank is None:
            rank, world = init_distributed(cfg.dist.enabled)
        self.rank, self.world = rank, world or 1
        self.is_main = self.rank == 0
        self.out_dir = cfg.train.output_dir
        self.net: Optional[nn.Cell] = None
        self.optimizers: Dict[str, nn.Optimizer] = {}
        self.ema: Optional[ModelEMA] = None
        self.callbacks: List = []
        self.lrs: Sequence[float] = ()
        self.best, self.history = None, []
        self.train_loader = self.val_loader = None

    # ------------------------------------------------------------------ seams: building
    def log(self, text: str) -> None:
        if self.is_main:
            print(text, flush=True)

    def build_model(self) -> nn.Cell:
        return build_model(self.cfg.model)

    def build_loaders(self) -> None:
        cfg = self.cfg
        self.train_loader = Loader(cfg.data, "train", cfg.train.seed, self.rank, self.world, cfg.loss.label_smoothing)
        self.val_loader = Loader(cfg.data, "val", cfg.train.seed)

    def loss_cell(self) -> nn.Cell:
        """The Cell whose output is the training loss given one batch's columns."""
        return self.net

    def build(self) -> "Task":
        """Models, loaders, optimizers and the train step (called once before training)."""
        set_seed(self.cfg.train.seed)
        self.build_loaders()
        self.net = self.build_model()
        if self.cfg.train.amp_level != "O0":
            ms.amp.auto_mixed_precision(self.net, self.cfg.train.amp_level)
        hooks = family_hooks(self.cfg.model.name)
        opt, self.lrs = optimizer_from_config(self.cfg, self.net.trainable_params(), self.steps_per_epoch,
                                              hooks.param_filters, net=self.net)
        self.optimizers = {"optim": opt}
        self.ema = ModelEMA(self.net, self.cfg.train.ema_decay) if self.cfg.train.ema else None
        if hooks.train_callbacks is not None:
            self.callbacks += list(hooks.train_callbacks(self.cfg))
        self.step_cell = TrainStep(self.loss_cell(), opt, self.cfg.train.clip_grad,
                                   self._group_clip(opt, hooks.param_filters))
        self._step = compiled(self.step_cell, self.cfg.train.jit)
        return self

    def _group_clip(self, opt, filters):
        """``optim.extra_group.clip_grad``: the extra group clipped on its own (SNN-MLP's official
        LIF optimizer), the rest by ``train.clip_grad``."""
        extra = self.cfg.optim.extra_group or {}
        if extra.get("clip_grad") is None:
            return None
        ids = param_group_ids(opt.parameters, [filters[extra["filter"]]])
        return ids, (self.cfg.train.clip_grad, float(extra["clip_grad"]))

    @property
    def steps_per_epoch(self) -> int:
        steps = self.train_loader.steps_per_epoch
        cap = self.cfg.train.max_steps_per_epoch
        return min(steps, cap) if cap else steps

    def lr_at(self, epoch: int) -> float:
        if not self.lrs:
            return float("nan")
        return float(self.lrs[min(epoch * self.steps_per_epoch, len(self.lrs) - 1)])

    def describe(self) -> str:
        return (f"{self.name}: {self.cfg.model.name} on {self.cfg.data.dataset}, {len(self.train_loader.sampler)} "
                f"samples/rank, {self.steps_per_epoch} steps/epoch, {self.world} worker(s)")

    # ------------------------------------------------------------------ seams: training
    def train_step(self, *batch):
        """One optimizer step on one batch; returns the loss Tensor."""
        return self._step(*batch)

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        from ..engine.loop import run_epoch
        return run_epoch(self, epoch)

    def evaluate(self) -> Dict[str, float]:
        """Validation metrics, keys prefixed ``val_`` (the monitor picks one)."""
        net = self.loss_cell()
        was = net.training
        net.set_train(False)
        total, n = 0.0, 0
        with self.ema_weights():
            for batch in self.val_loader.epoch(0):
                total += float(net(*batch).asnumpy()) * batch[0].shape[0]
                n += batch[0].shape[0]
        net.set_train(was)
        return {"val_loss": total / max(n, 1)}

    def ema_weights(self):
        """Context: the EMA weights in place of the live ones (no-op without EMA)."""
        import contextlib

        @contextlib.contextmanager
        def swap():
            if self.ema is not None:
                self.ema.swap()
            try:
                yield
            finally:
                if self.ema is not None:
                    self.ema.swap()
        return swap()

    def save_best(self, path: str) -> None:
        with self.ema_weights():
            save_weights(self.net, path)

    def fit(self, resume: Optional[str] = None) -> Dict[str, float]:
        return fit(self, resume)

    def run(self, resume: Optional[str] = None, as_json: bool = False) -> Dict:
        """What ``mindcv-ext run`` does (train, by default); a task without a training loop
        overrides this. ``as_json``: print the result as one JSON line last."""
        if self.net is None:
            self.build()
        record = self.fit(resume)
        if as_json:
            import json
            print(json.dumps({k: v for k, v in record.items() if isinstance(v, (int, float))}), flush=True)
        return record

    # ------------------------------------------------------------------ seams: eval/export/predict
    def load_for_inference(self, ckpt: Optional[str], use_ema: bool = False) -> "Task":
        """Build the model alone (and the val loader for evaluation) and load ``ckpt`` strictly."""
        self.net = self.build_model()
        if ckpt:
            load_weights(self.net, ckpt, use_ema=use_ema)
        self.net.set_train(False)
        return self

    def ensure_val_loader(self) -> None:
        if self.val_loader is None:
            self.val_loader = Loader(self.cfg.data, "val", self.cfg.train.seed)

    def export_cell(self) -> nn.Cell:
        return self.net

    def example_inputs(self, batch: int = 4) -> Tuple[np.ndarray, ...]:
        """Inputs of ``export_cell`` for export and its verification: a batch of real validation
        samples where the config's dataset can be read, else random arrays of
        ``export.input_shape`` (N, C, H, W), one per ``export_inputs``."""
        try:
            self.ensure_val_loader()
            first = next(iter(self.val_loader.epoch(0)))
            return tuple(np.asarray(t.asnumpy())[:batch] for t in self.model_inputs(first))
        except (ValueError, OSError, StopIteration) as err:  # no readable data: random inputs instead
            self.log(f"note: no validation data for export ({str(err).splitlines()[0] if str(err) else 'empty'}); "
                     "random inputs used")
        shape = self.cfg.export.input_shape or [batch, self.cfg.model.in_channels, self.cfg.data.image_size,
                                                self.cfg.data.image_size]
        rng = np.random.default_rng(0)
        return tuple(rng.standard_normal(tuple(shape)).astype(np.float32) for _ in range(self.export_inputs))

    def model_inputs(self, batch) -> tuple:
        """The columns of a batch that the exported Cell takes (all of them by default)."""
        return tuple(batch)

    def predict(self, inputs: Sequence[np.ndarray]):
        """Outputs of the model for one batch of inputs (numpy in, numpy out)."""
        out = self.net(*[ms.Tensor(x) for x in inputs])
        return tuple(o.asnumpy() for o in out) if isinstance(out, (tuple, list)) else out.asnumpy()

    def infer_files(self, paths: Sequence[str], topk: int = 5) -> List[dict]:
        raise TaskError(f"task '{self.name}' does not classify files; use eval or its demo")
