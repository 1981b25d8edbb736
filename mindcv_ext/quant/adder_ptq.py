"""AdderNet post-training quantization: calibrate, quantize, re-estimate BN, evaluate, report.

The maths of the ``adder_ptq`` task (``mindcv_ext.tasks.adder_ptq``, ``mindcv-ext quantize``). Steps
(AdderNet PTQ, Chen et al.; official AdderQuant code):

1. the float model is evaluated on the validation split;
2. calibration: float forward in eval mode over ``quant.calib_batches`` augmented training batches;
   per adder layer the activation range ``a_r`` is the maximum over batches of the
   ``quant.act_quantile`` quantile of ``|x|`` (``quant.act_range: max`` takes the plain maximum);
3. for every method and bit width: a fresh copy of the float model, each adder layer replaced by a
   :class:`~mindcv_ext.quant.adder_qlayer.QuantAdderConv2d` with its plan (``shared``: one scale per
   layer; ``redistribute``: ``quant.groups`` k-means kernel groups with their own scales, weight
   clamp, activation clamp), BN statistics refreshed over ``quant.bn_recalib_batches`` training
   batches (train mode, no optimizer), evaluation through :func:`mindcv_ext.engine.metrics.evaluate`;
4. report: accuracies, the energy per image of the float CNN, the float AdderNet and the quantized
   AdderNet (45 nm figures of Horowitz, ISSCC 2014), as Markdown, JSON and a PNG chart.

Stem convolution, classifier and BatchNorms stay float, as in the official code.
"""
import math
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import mindspore as ms
from mindspore import nn

from .adder_qlayer import QuantAdderConv2d
from .adder_quantizers import abs_quantile, check_bits, plan_redistribute, plan_shared

__all__ = ["METHODS", "find_adder_layers", "calibrate_activations", "quantize_adder_model", "recalibrate_bn",
           "count_ops", "energy_per_image", "ENERGY_PJ", "int_add_energy"]

METHODS = ("shared", "redistribute")

# 45 nm energy per operation in pJ (Horowitz, ISSCC 2014, as cited by the AdderNet papers)
ENERGY_PJ = {"fp32_mul": 3.7, "fp32_add": 0.9, "int32_mul": 3.1, "int32_add": 0.1, "int8_mul": 0.2, "int8_add": 0.03}


def _adder_class():
    from ..layers.adder_conv import AdderConv2d
    return AdderConv2d


def find_adder_layers(net: nn.Cell) -> List[tuple]:
    """``[(name, AdderConv2d), ...]`` in definition order."""
    cls = _adder_class()
    return [(name, cell) for name, cell in net.cells_and_names() if isinstance(cell, cls)]


def _batches(loader, n: int) -> Iterator:
    """``n`` batches of ``loader``, running through as many epochs as needed."""
    if n <= 0:
        return
    done, epoch = 0, 0
    while True:
        got = 0
        for images, labels in loader.epoch(epoch):
            yield images, labels
            got += 1
            done += 1
            if done >= n:
                return
        if got == 0:
            raise ValueError(f"the {loader.split} loader yields no batches")
        epoch += 1


def _require_pynative(what: str) -> None:
    if ms.get_context("mode") != ms.PYNATIVE_MODE:
        raise RuntimeError(f"{what} reads activations from forward hooks and needs PyNative mode "
                           "(ms.set_context(mode=ms.PYNATIVE_MODE))")


def calibrate_activations(net: nn.Cell, loader, batches: int, quantile: float = 0.9997) -> Dict[str, Dict]:
    """Per adder layer ``{"quantile": max over batches of the |x| quantile, "max": max |x|, "min": min x,
    "batches": n}`` from a float forward in eval mode (official AdderQuant code)."""
    _require_pynative("calibration")
    if batches <= 0:
        raise ValueError(f"quant.calib_batches must be positive, got {batches}")
    layers = find_adder_layers(net)
    if not layers:
        raise ValueError(f"{type(net).__name__} has no AdderConv2d layer to calibrate")
    stats = {name: {"quantile": 0.0, "max": 0.0, "min": math.inf, "batches": 0} for name, _ in layers}
    handles = []
    for name, cell in layers:
        def hook(_cell, inputs, _name=name):
            x = inputs[0].asnumpy()
            st = stats[_name]
            st["quantile"] = max(st["quantile"], abs_quantile(x, quantile))
            st["max"] = max(st["max"], float(np.abs(x).max()))
            st["min"] = min(st["min"], float(x.min()))
            st["batches"] += 1
        handles.append(cell.register_forward_pre_hook(hook))
    was_training = net.training
    net.set_train(False)
    try:
        for images, _ in _batches(loader, batches):
            net(images)
    finally:
        for h in handles:
            h.remove()
        net.set_train(was_training)
    for name, st in stats.items():
        if st["batches"] == 0:
            raise RuntimeError(f"adder layer '{name}' was never called during calibration")
    return stats


def _replace(net: nn.Cell, name: str, new: nn.Cell) -> None:
    parent = net
    parts = name.split(".")
    for p in parts[:-1]:
        parent = parent[int(p)] if isinstance(parent, (nn.SequentialCell, nn.CellList)) else getattr(parent, p)
    key = parts[-1]
    if isinstance(parent, (nn.SequentialCell, nn.CellList)):
        parent[int(key)] = new
    else:
        setattr(parent, key, new)


def quantize_adder_model(net: nn.Cell, stats: Dict[str, Dict], method: str, bits: int, groups: int = 4,
                         act_range: str = "quantile", small_group_scale: str = "weight", seed: int = 0,
                         integer: bool = True, backend: Optional[str] = None) -> Dict[str, object]:
    """Replace every adder layer of ``net`` (in place) by its quantized form; returns the plans by name.

    ``stats`` comes from :func:`calibrate_activations` on the same (float) network.
    """
    if method not in METHODS:
        raise ValueError(f"unknown quantization method '{method}' (choose from {', '.join(METHODS)})")
    if act_range not in ("quantile", "max"):
        raise ValueError(f"act_range must be 'quantile' or 'max', got {act_range!r}")
    check_bits(bits)
    layers = find_adder_layers(net)
    if not layers:
        raise ValueError(f"{type(net).__name__} has no AdderConv2d layer to quantize")
    missing = [name for name, _ in layers if name not in stats]
    if missing:
        raise ValueError(f"no calibration statistics for adder layer(s) {', '.join(missing[:5])}")
    plans = {}
    for name, cell in layers:
        st = stats[name]
        if st["min"] < 0:
            raise ValueError(f"adder layer '{name}' saw negative inputs (min {st['min']:.4g}) during calibration; "
                             "the activation quantizer is unsigned (inputs must follow a ReLU)")
        a_r = st[act_range]
        w = cell.weight.asnumpy()
        if method == "shared":
            plan = plan_shared(w, a_r)
        else:
            plan = plan_redistribute(w, a_r, groups, seed, small_group_scale)
        plans[name] = plan
        _replace(net, name, QuantAdderConv2d.from_layer(cell, plan, bits, integer=integer, backend=backend))
    return plans


def recalibrate_bn(net: nn.Cell, loader, batches: int) -> int:
    """Refresh BN moving statistics: forward ``batches`` training batches in train mode, no optimizer
    step (official AdderQuant code). Returns the number of batches run."""
    if batches <= 0:
        return 0
    was_training = net.training
    net.set_train(True)
    n = 0
    try:
        for images, _ in _batches(loader, batches):
            net(images)
            n += 1
    finally:
        net.set_train(was_training)
    return n


# --------------------------------------------------------------------------------------- energy
def count_ops(net: nn.Cell, input_shape: Sequence[int]) -> Dict[str, int]:
    """Per-forward counts: ``float_macs`` (nn.Conv2d / nn.Dense multiply-accumulates) and ``adder_ops``
    (weight-input pairs of adder layers, float or quantized)."""
    _require_pynative("operation counting")
    adder_cls = _adder_class()
    counts = {"float_macs": 0, "adder_ops": 0}
    handles = []

    def taps(cell):
        w = cell.weight if hasattr(cell, "weight") else None
        shape = tuple(w.shape) if w is not None else None
        return int(np.prod(shape[1:]))

    for _, cell in net.cells_and_names():
        if isinstance(cell, (adder_cls, QuantAdderConv2d)):
            def hook(c, _inputs, out):
                k = c.taps if isinstance(c, QuantAdderConv2d) else taps(c)
                counts["adder_ops"] += int(np.prod(out.shape)) * k
        elif isinstance(cell, nn.Conv2d):
            def hook(c, _inputs, out):
                counts["float_macs"] += int(np.prod(out.shape)) * int(np.prod(c.weight.shape[1:]))
        elif isinstance(cell, nn.Dense):
            def hook(c, _inputs, out):
                counts["float_macs"] += int(np.prod(out.shape)) * c.in_channels
        else:
            continue
        handles.append(cell.register_forward_hook(hook))
    was_training = net.training
    net.set_train(False)
    try:
        net(ms.Tensor(np.zeros(tuple(input_shape), np.float32)))
    finally:
        for h in handles:
            h.remove()
        net.set_train(was_training)
    return counts


def int_add_energy(bits: int) -> float:
    """Integer add energy in pJ: the 8-bit figure scaled linearly with the width below 8 bits, the
    32-bit figure at 32 bits, linear between the two figures otherwise."""
    if bits <= 8:
        return ENERGY_PJ["int8_add"] * bits / 8.0
    if bits >= 32:
        return ENERGY_PJ["int32_add"]
    return ENERGY_PJ["int8_add"] + (ENERGY_PJ["int32_add"] - ENERGY_PJ["int8_add"]) * (bits - 8) / 24.0


def energy_per_image(float_macs: int, adder_ops: int, bits: Sequence[int] = ()) -> Dict[str, float]:
    """Energy in microjoules per image.

    * float CNN: every layer a 32-bit float multiply plus add per MAC;
    * float AdderNet: stem/classifier as float MACs; adder layers 3 float adds per weight-input pair
      (subtraction, absolute value, accumulation);
    * quantized AdderNet at b bits: stem/classifier float; subtraction and absolute value at the b-bit
      integer add energy, accumulation at the 32-bit integer add energy (int32 accumulator).
    BN, ReLU, pooling and the per-output rescale are not counted (same in all variants but the CNN's
    BN-folding; small next to the layer arithmetic).
    """
    mac = ENERGY_PJ["fp32_mul"] + ENERGY_PJ["fp32_add"]
    out = {"float_cnn": (float_macs + adder_ops) * mac * 1e-6,
           "float_adder": (float_macs * mac + adder_ops * 3 * ENERGY_PJ["fp32_add"]) * 1e-6}
    for b in bits:
        per_pair = 2 * int_add_energy(b) + ENERGY_PJ["int32_add"]
        out[f"adder_int{b}"] = (float_macs * mac + adder_ops * per_pair) * 1e-6
    return out
