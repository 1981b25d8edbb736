"""Exponential moving average of model weights (trainable and BN statistics)."""
from typing import Dict

import mindspore as ms
from mindspore import nn, ops


class ModelEMA:
    """``shadow = decay * shadow + (1 - decay) * weight`` after each step; ``swap`` for eval."""

    def __init__(self, net: nn.Cell, decay: float = 0.9998):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.params = list(net.get_parameters())
        self.shadow = ms.ParameterTuple([ms.Parameter(p.data.copy(), name="ema." + p.name, requires_grad=False)
                                         for p in self.params])
        self._update = ms.jit(self._update_fn)

    def _update_fn(self, decay):
        for s, p in zip(self.shadow, self.params):
            ops.assign(s, s * decay + p * (1.0 - decay))
        return decay

    def update(self) -> None:
        self._update(ms.Tensor(self.decay, ms.float32))

    def state(self) -> Dict[str, ms.Parameter]:
        return {s.name[len("ema."):]: s for s in self.shadow}

    def load(self, params: Dict[str, ms.Parameter]) -> None:
        for s in self.shadow:
            key = s.name[len("ema."):]
            if key not in params:
                raise KeyError(f"EMA state lacks '{key}'")
            ops.assign(s, ms.Tensor(params[key].asnumpy()))

    def swap(self) -> None:
        """Exchange live and averaged weights (call twice to restore)."""
        # in-place copies: compiled steps keep pointing at the same parameter storage
        for s, p in zip(self.shadow, self.params):
            live = ms.Tensor(p.asnumpy())
            ops.assign(p, s)
            ops.assign(s, live)
