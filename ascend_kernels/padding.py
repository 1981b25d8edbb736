"""Constant zero padding whose gradient is a plain crop.

``ops.pad`` differentiates to ``PadV3`` with negative paddings. On the MindSpore 2.8 CPU backend
that kernel can spin forever inside compiled (graph-mode / ``jit``) programs after a few calls,
which hung compiled training steps of the adder networks. :class:`ZeroPad` pads with ``ops.pad``
and returns ``ops.slice`` of the incoming gradient instead.
"""
import mindspore.nn as nn
import mindspore.ops as ops

__all__ = ["ZeroPad", "zero_pad", "pad_end"]


def _check(pads):
    if len(pads) % 2 or any((not isinstance(p, int)) or p < 0 for p in pads):
        raise ValueError(f"ZeroPad: pads must be an even-length tuple of ints >= 0, got {pads!r}")
    return tuple(pads)


class ZeroPad(nn.Cell):
    """``ops.pad(x, pads)`` with zeros; ``pads`` as in ``ops.pad`` (pairs from the last dim)."""

    def __init__(self, pads):
        super().__init__()
        self.pads = _check(pads)
        self.npairs = len(self.pads) // 2

    def _prim(self, nd):
        # ops.Pad wants one (before, after) pair per dim, first dim first
        pairs = [(0, 0)] * nd
        for i in range(self.npairs):
            pairs[nd - 1 - i] = (self.pads[2 * i], self.pads[2 * i + 1])
        return ops.Pad(tuple(pairs))

    def construct(self, x):
        return self._prim(x.ndim)(x)

    def bprop(self, x, out, dout):
        nd = x.ndim
        begin = [0] * nd
        for i in range(len(self.pads) // 2):
            begin[nd - 1 - i] = self.pads[2 * i]
        return (ops.slice(dout, tuple(begin), x.shape),)


_CACHE = {}


def zero_pad(x, pads):
    """Functional form for eager code; in a Cell's ``construct`` keep a :class:`ZeroPad` member."""
    key = _check(tuple(pads))
    if key not in _CACHE:
        _CACHE[key] = ZeroPad(key)
    return _CACHE[key](x)


def pad_end(x, right, bottom):
    """Zero-pad ``right`` columns and ``bottom`` rows onto an NCHW map inside ``construct`` when the
    amounts depend on the input shape. Built from ``ops.concat`` with zeros, whose gradient is a
    split, so compiled training never meets the pad-gradient kernel."""
    n, c, h, w = x.shape
    if right > 0:
        x = ops.concat((x, ops.zeros((n, c, h, right), x.dtype)), 3)
    if bottom > 0:
        x = ops.concat((x, ops.zeros((n, c, bottom, w + right), x.dtype)), 2)
    return x
