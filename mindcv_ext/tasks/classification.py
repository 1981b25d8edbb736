"""The ``classification`` task: image + label, cross entropy (label smoothing, mixup/cutmix soft
targets), top-1/top-5, ``best.ckpt`` by ``val_top1``, file inference."""
from typing import Dict, List, Sequence

import numpy as np
import mindspore as ms

from ..config import ConfigError
from ..data.datasets import DatasetError
from ..engine.loss import create_loss
from ..engine.metrics import evaluate
from ..engine.step import WithLoss
from .base import Task
from .registry import register_task


@register_task
class ClassificationTask(Task):
    name = "classification"
    default_monitor = "val_top1:max"

    def build_loaders(self) -> None:
        super().build_loaders()
        if self.train_loader.num_classes != self.cfg.model.num_classes:
            raise ConfigError(f"model.num_classes is {self.cfg.model.num_classes} but dataset "
                              f"'{self.cfg.data.dataset}' has {self.train_loader.num_classes} classes")

    def loss_cell(self):
        self.loss_fn = create_loss(self.cfg.loss.name, self.cfg.loss.label_smoothing)
        return WithLoss(self.net, self.loss_fn)

    def evaluate(self) -> Dict[str, float]:
        self.ensure_val_loader()
        with self.ema_weights():
            m = evaluate(self.net, self.val_loader, create_loss("ce"))
        return {"val_top1": m["top1"], "val_top5": m["top5"], "val_loss": m["loss"], "val_n": m["n"]}

    def model_inputs(self, batch) -> tuple:
        return tuple(batch[:1])

    def infer_files(self, paths: Sequence[str], topk: int = 5) -> List[dict]:
        """Top-k classes of each image file; unreadable files are reported, not fatal."""
        import cv2
        from ..data.transforms import create_transforms
        if topk < 1:
            raise ConfigError(f"--topk must be at least 1, got {topk}")
        d = self.cfg.data
        ops = create_transforms(d.image_size, False, d.mean, d.std, interpolation=d.interpolation,
                                crop_pct=d.crop_pct)
        results = []
        for path in paths:
            img = cv2.imread(path, cv2.IMREAD_COLOR)
            if img is None:
                results.append({"file": path, "error": f"cannot read image '{path}'"})
                continue
            x = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            for op in ops:
                x = op(x)
            logits = self.net(ms.Tensor(np.asarray(x, np.float32)[None])).asnumpy()[0]
            prob = np.exp(logits - logits.max())
            prob /= prob.sum()
            top = np.argsort(-prob)[:min(topk, len(prob))]
            results.append({"file": path, "top": [(int(i), float(prob[i])) for i in top]})
        return results


__all__ = ["ClassificationTask", "DatasetError"]
