"""Constant zero padding whose gradient is a plain crop.

``ops.pad`` differentiates to ``PadV3`` with negative paddings. On the MindSpore 2.8 CPU backend
that kernel can spin forever inside compiled (graph-mode / ``jit``) programs after a few calls,
which hung compiled training steps of the adder networks. :class:`ZeroPad` returns ``ops.slice``
of the incoming gradient instead. Its forward concatenates zero blocks: on this CPU backend the
``Pad`` kernel took ~3 ms for an 8x64x16x16 map, the concatenation well under 1 ms.
"""
import mindspore.nn as nn
import mindspore.ops as ops

__all__ = ["ZeroPad", "zero_pad", "pad_zeros", "pad_end"]


def _check(pads):
    if len(pads) % 2 or any((not isinstance(p, int)) or p < 0 for p in pads):
        raise ValueError(f"ZeroPad: pads must be an even-length tuple of ints >= 0, got {pads!r}")
    return tuple(pads)


class ZeroPad(nn.Cell):
    """``ops.pad(x, pads)`` with zeros; ``pads`` as in ``ops.pad`` (pairs from the last dim)."""

    def __init__(self, pads):
        super().__init__()
        self.pads = _check(pads)
        if len(self.pads) > 6:
            raise ValueError(f"ZeroPad: at most 3 padded dims, got pads {pads!r}")
        self.p = self.pads + (0,) * (6 - len(self.pads))
        # which of the last three dims get padded (fixed here, so no branch depends on a value)
        self.pad_dim = tuple(self.p[2 * i] + self.p[2 * i + 1] > 0 for i in range(3))

    def construct(self, x):
        if self.pad_dim[0]:
            x = _concat_zeros(x, x.ndim - 1, self.p[0], self.p[1])
        if self.pad_dim[1]:
            x = _concat_zeros(x, x.ndim - 2, self.p[2], self.p[3])
        if self.pad_dim[2]:
            x = _concat_zeros(x, x.ndim - 3, self.p[4], self.p[5])
        return x

    def bprop(self, x, out, dout):
        nd = x.ndim
        begin = [0] * nd
        for i in range(len(self.pads) // 2):
            begin[nd - 1 - i] = self.pads[2 * i]
        return (ops.slice(dout, tuple(begin), x.shape),)


def _concat_zeros(x, axis, before, after):
    """``x`` with ``before`` / ``after`` zero slices concatenated along ``axis`` (a side may be 0:
    an empty block)."""
    shape = x.shape
    zb = ops.zeros(shape[:axis] + (before,) + shape[axis + 1:], x.dtype)
    za = ops.zeros(shape[:axis] + (after,) + shape[axis + 1:], x.dtype)
    return ops.concat((zb, x, za), axis)


_CACHE = {}


def zero_pad(x, pads):
    """Functional form for eager code; in a Cell's ``construct`` keep a :class:`ZeroPad` member."""
    key = _check(tuple(pads))
    if key not in _CACHE:
        _CACHE[key] = ZeroPad(key)
    return _CACHE[key](x)


def pad_zeros(x, pads):
    """Zero padding by concatenation, usable inside ``construct`` and bprops (``pads`` as in
    ``ops.pad``, up to 3 dims). Its gradient is a split: no pad-gradient kernel, no ``Pad`` kernel.
    Every listed dim is concatenated (a 0 amount adds an empty block) with no branch on the
    amounts: inside bprops they are computed from shapes, and a branching version failed graph
    compilation of a compiled adder ResNet train step ("func graph is empty")."""
    if len(pads) % 2 or len(pads) > 6:
        raise ValueError(f"pad_zeros: pads must be 2, 4 or 6 amounts, got {pads!r}")
    if len(pads) >= 2:
        x = _concat_zeros(x, x.ndim - 1, pads[0], pads[1])
    if len(pads) >= 4:
        x = _concat_zeros(x, x.ndim - 2, pads[2], pads[3])
    if len(pads) >= 6:
        x = _concat_zeros(x, x.ndim - 3, pads[4], pads[5])
    return x


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
