"""Turn a trained binary model into an inference graph on the bit-packed binary convolution.

Every :class:`~mindcv_ext.quant.binary.BinaryConv2d` whose input and kernel quantizers are both
binary is replaced by a :class:`~mindcv_ext.layers.binary.PackedBinaryConv2d` holding the
packed kernel signs and the per-channel scale/offset (AdaBin: ``alpha_w`` = std, ``beta_w`` = mean;
sign: 1, 0) and the layer's activation set (AdaBin coded form ``alpha_a (s + beta_a)``; sign: +-1).
The packed layer's output equals the float convolution of the binarized, zero-padded tensors, i.e.
the training-time layer in eval mode (borders included). The one difference: the float model's
``sign(0)`` is 0 while the packed kernel maps an exact 0 to +1, so a value lying exactly on a
threshold can differ (:func:`threshold_ties` counts such values).
"""
from typing import Dict, List, Optional, Tuple

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from ..layers.binary import PackedBinaryConv2d
from .binary import AdaBinActivationQuantizer, AdaBinWeightQuantizer, BinaryConv2d, SignQuantizer

__all__ = ["to_inference", "packed_layer", "threshold_ties", "PackedWithBias"]


class PackedWithBias(nn.Cell):
    """A packed binary conv followed by the float bias of the original layer."""

    def __init__(self, packed: PackedBinaryConv2d, bias: np.ndarray):
        super().__init__()
        self.packed = packed
        self.bias = Tensor(np.asarray(bias, np.float32).reshape(1, -1, 1, 1))

    def construct(self, x):
        return self.packed(x) + self.bias


def _pair(v) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _padding(cell: nn.Conv2d) -> Tuple[int, int]:
    pad = cell.padding
    if isinstance(pad, int):
        return pad, pad
    pad = tuple(int(p) for p in pad)
    if len(pad) == 2:
        return pad
    top, bottom, left, right = pad
    if top != bottom or left != right:
        raise ValueError(f"packed inference needs symmetric padding, got {pad}")
    return top, left


def packed_layer(cell: BinaryConv2d, backend: Optional[str] = None) -> nn.Cell:
    """The packed equivalent of one trained ``BinaryConv2d`` (eval-mode semantics)."""
    iq, kq = cell.input_quantizer, cell.kernel_quantizer
    if cell.pad_mode != "pad":
        raise ValueError(f"packed inference needs pad_mode='pad', got {cell.pad_mode!r}")
    if cell.group != 1:
        raise ValueError(f"packed inference supports group=1 only, got group={cell.group}")
    stride, dilation = _pair(cell.stride), _pair(cell.dilation)
    if stride[0] != stride[1] or dilation[0] != dilation[1]:
        raise ValueError(f"packed inference needs equal stride/dilation in both axes, got {stride}, {dilation}")
    if isinstance(kq, AdaBinWeightQuantizer):
        weight_mode = "adabin"
    elif isinstance(kq, SignQuantizer):
        weight_mode = "sign"
    else:
        raise ValueError(f"packed inference needs an AdaBin or sign kernel quantizer, got {type(kq).__name__}")
    if isinstance(iq, AdaBinActivationQuantizer):
        if iq.form != "coded":
            raise ValueError("the packed kernel implements the coded activation form alpha*(s + beta); "
                             f"this layer uses form={iq.form!r}")
        act_alpha, act_beta = float(iq.alpha_a.asnumpy()), float(iq.beta_a.asnumpy())
        if act_alpha <= 0:
            raise ValueError(f"packed inference needs alpha_a > 0, got {act_alpha}")
    elif isinstance(iq, SignQuantizer):
        act_alpha = act_beta = None
    else:
        raise ValueError(f"packed inference needs an AdaBin or sign input quantizer, got {type(iq).__name__}")
    packed = PackedBinaryConv2d(cell.weight.asnumpy(), stride=stride[0], padding=_padding(cell),
                                dilation=dilation[0], weight_mode=weight_mode, act_alpha=act_alpha,
                                act_beta=act_beta, backend=backend)
    if cell.has_bias:
        return PackedWithBias(packed, cell.bias.asnumpy())
    return packed


def _parent(net: nn.Cell, name: str):
    parts = name.split(".")
    parent = net
    for part in parts[:-1]:
        parent = parent._cells[part]  # pylint: disable=protected-access
    return parent, parts[-1]


def _replace(parent: nn.Cell, key: str, new: nn.Cell) -> None:
    if isinstance(parent, nn.SequentialCell):
        parent[int(key)] = new
    else:
        setattr(parent, key, new)


def to_inference(net: nn.Cell, backend: Optional[str] = None) -> nn.Cell:
    """Replace, in place, every 1-bit ``BinaryConv2d`` of ``net`` by its packed equivalent; returns ``net``.

    ``backend``: ``custom`` (the packed C++ kernel), ``composite`` (float conv of the binarized
    tensors), or None for the global choice of :mod:`ascend_kernels`. Convs that are not 1-bit on
    both sides stay as they are. The result is in eval mode and cannot be trained further; keep a
    second instance (same weights) if the training model is still needed (Cells holding custom
    primitives cannot be deep-copied).
    """
    names = [name for name, cell in net.cells_and_names()
             if isinstance(cell, BinaryConv2d) and cell.mac_kind == "binary"]
    if not names:
        raise ValueError(f"{type(net).__name__} has no binary convolution to pack")
    for name in names:
        parent, key = _parent(net, name)
        old = parent._cells[key]  # pylint: disable=protected-access
        _replace(parent, key, packed_layer(old, backend))
    net.set_train(False)
    net.packed_layers = len(names)
    return net


def threshold_ties(net: nn.Cell, x: Tensor) -> Dict[str, int]:
    """Per binary conv of the *training* model: how many kernel weights and inputs of ``x``'s forward
    pass (eval mode) sit exactly on the quantizer threshold (float ``sign`` gives 0 there, the packed
    kernel +1)."""
    counts: Dict[str, int] = {}
    handles: List = []
    for name, cell in net.cells_and_names():
        if isinstance(cell, BinaryConv2d) and cell.mac_kind == "binary":
            def hook(c, inputs, _name=name):
                s, _, _ = c.input_quantizer.decompose(inputs[0])
                sw, _, _ = c.kernel_quantizer.decompose(c.weight)
                counts[_name] = int((s.asnumpy() == 0).sum()) + int((sw.asnumpy() == 0).sum())
            handles.append(cell.register_forward_pre_hook(hook))
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    was_training = net.training
    net.set_train(False)
    try:
        net(x)
    finally:
        for handle in handles:
            handle.remove()
        net.set_train(was_training)
        ms.set_context(mode=previous)
    return counts
