"""A task written outside engine/ and cli.py: two image inputs and a model that returns its own
loss (the shape masked-image pre-training and two-modality segmentation take)."""
import numpy as np
from mindspore import nn, ops

from mindcv_ext.data.registry import register_dataset
from mindcv_ext.models.registry import register_model
from mindcv_ext.tasks import Task, register_task


class PairSource:
    """``(a, b, target)``: ``target`` is a fixed linear map of the two inputs plus noise."""

    def __init__(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        self.a = rng.standard_normal((n, 2, 4, 4)).astype(np.float32)
        self.b = rng.standard_normal((n, 1, 4, 4)).astype(np.float32)
        w = (np.linspace(-1, 1, 48) / 4).astype(np.float32)  # target variance about 1
        flat = np.concatenate([self.a.reshape(n, -1), self.b.reshape(n, -1)], 1)
        self.t = (flat @ w)[:, None].astype(np.float32)

    def __len__(self):
        return len(self.t)

    def __getitem__(self, i):
        return self.a[i], self.b[i], self.t[i]


@register_dataset("pair_test", columns=("a", "b", "target"), image_transforms=False)
def pair_dataset(data_cfg, split, seed):
    return PairSource(96 if split == "train" else 32, seed + (0 if split == "train" else 1))


class PairRegressor(nn.Cell):
    """Loss-only model: ``construct(a, b, target) -> mse``; ``predict(a, b)`` the two outputs."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.fa, self.fb = nn.Dense(32, hidden), nn.Dense(16, hidden)
        self.head = nn.Dense(hidden, 1)

    def predict(self, a, b):
        h = ops.relu(self.fa(a.reshape(a.shape[0], -1)) + self.fb(b.reshape(b.shape[0], -1)))
        out = self.head(h)
        return out, h

    def construct(self, a, b, target):
        out, _ = self.predict(a, b)
        return ((out - target) ** 2).mean()


class PredictCell(nn.Cell):
    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, a, b):
        return self.net.predict(a, b)


@register_model
def pair_regressor_test(num_classes=1, in_channels=3, hidden=16):
    return PairRegressor(hidden)


@register_task
class PairTask(Task):
    name = "pair_test"
    sections = {"pair": {"report_every": ((int,), 1)}}

    def export_cell(self):
        return PredictCell(self.net)

    def model_inputs(self, batch):
        return tuple(batch[:2])
