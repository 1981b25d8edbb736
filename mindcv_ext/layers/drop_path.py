"""Stochastic depth: drop a residual branch for whole samples during training."""
from mindspore import nn, ops


class DropPath(nn.Cell):
    """Zero the input for a random subset of samples and rescale the rest by ``1 / (1 - p)``.

    One Bernoulli draw per sample (leading axis), shared by all other axes. Identity in eval mode
    and when ``drop_prob`` is 0.
    """

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        drop_prob = float(drop_prob)
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"DropPath: drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob
        self.keep_prob = 1.0 - drop_prob

    def construct(self, x):
        if not self.training or self.drop_prob == 0.0:
            return x
        mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = ops.floor(self.keep_prob + ops.rand(mask_shape, dtype=x.dtype))
        return x * mask / self.keep_prob

    def extend_repr(self):
        return f"drop_prob={self.drop_prob}"
