"""AdderNet post-training quantization: calibrate, quantize, re-estimate BN, evaluate, report.

Entry point of ``mindcv-ext quantize``: :func:`run_quantize`. Steps (compression spec 2.2, 2.4):

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
   AdderNet (45 nm figures of spec 8), as Markdown, JSON and a PNG chart.

Stem convolution, classifier and BatchNorms stay float, as in the official code.
"""
import json
import math
import os
import time
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import mindspore as ms
from mindspore import nn

from . import adder_config  # noqa: F401  (declares the quant: config section)
from .adder_qlayer import QuantAdderConv2d
from .adder_quantizers import abs_quantile, check_bits, plan_redistribute, plan_shared

__all__ = ["METHODS", "find_adder_layers", "calibrate_activations", "quantize_adder_model", "recalibrate_bn",
           "count_ops", "energy_per_image", "ENERGY_PJ", "int_add_energy", "run_quantize"]

METHODS = ("shared", "redistribute")

# 45 nm energy per operation in pJ (Horowitz, ISSCC 2014, as cited by the AdderNet papers; spec 8)
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
    "batches": n}`` from a float forward in eval mode (spec 2.2 step 1)."""
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
    step (spec 0.2 / 2.2 step 6). Returns the number of batches run."""
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


# --------------------------------------------------------------------------------------- report
def _markdown(model: str, dataset: str, n_val: int, float_top1: float, results: List[Dict], counts: Dict,
              energy: Dict[str, float], bits: Sequence[int], settings: Dict,
              float_recalib_top1: Optional[float] = None) -> str:
    recal = "" if float_recalib_top1 is None else \
        f" Float model after the same BN re-estimation as the quantized ones: {100 * float_recalib_top1:.2f}%."
    lines = [f"# AdderNet post-training quantization: {model} on {dataset}", "",
             f"Validation images: {n_val}. Float model top-1: {100 * float_top1:.2f}%.{recal}",
             f"Settings: {', '.join(f'{k}={v}' for k, v in settings.items())}.", "",
             "| bits | method | top-1 (%) | top-1 change (points) |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['bits']} | {r['method']} | {100 * r['top1']:.2f} | "
                     f"{100 * (r['top1'] - float_top1):+.2f} |")
    lines += ["", f"Operations per image: {counts['adder_ops'] / 1e6:.2f} M adder pairs (= multiply-accumulates of "
              f"the same network as a CNN), {counts['float_macs'] / 1e6:.3f} M float MACs (stem, classifier).", "",
              "| model | energy per image (uJ) | vs float CNN |", "|---|---|---|"]
    base = energy["float_cnn"]
    names = {"float_cnn": "float CNN (32-bit float mul+add)", "float_adder": "float AdderNet (32-bit float adds)"}
    for key, value in energy.items():
        label = names.get(key, f"AdderNet {key[len('adder_int'):]}-bit integer")
        lines.append(f"| {label} | {value:.3f} | {value / base:.3f} |")
    lines += ["", "Energy model: 45 nm per-operation energies (Horowitz, ISSCC 2014): float32 mul 3.7 pJ, add "
              "0.9 pJ; int32 add 0.1 pJ; int8 add 0.03 pJ, scaled linearly with the bit width below 8 bits. "
              "An adder pair costs a subtraction, an absolute value and an accumulation; in the quantized "
              "network the first two run at the weight/activation width and the accumulation in int32. "
              "Stem convolution and classifier stay float in every AdderNet variant. BN, ReLU, pooling and "
              "rescaling are not counted."]
    return "\n".join(lines) + "\n"


def _plot(path: str, float_top1: float, results: List[Dict], energy: Dict[str, float], title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    methods = sorted({r["method"] for r in results}, key=METHODS.index)
    all_bits = sorted({r["bits"] for r in results}, reverse=True)
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(all_bits))
    for i, m in enumerate(methods):
        vals = [next((100 * r["top1"] for r in results if r["method"] == m and r["bits"] == b), np.nan)
                for b in all_bits]
        ax1.bar(x + (i - (len(methods) - 1) / 2) * width, vals, width, label=m)
    ax1.axhline(100 * float_top1, color="k", ls="--", lw=1, label="float")
    ax1.set_xticks(x, [f"{b}-bit" for b in all_bits])
    ax1.set_ylabel("top-1 (%)")
    low = min([100 * r["top1"] for r in results] + [100 * float_top1])
    ax1.set_ylim(max(0.0, low - 10), 100)
    ax1.set_title("accuracy")
    ax1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(methods) + 1, fontsize=8)
    labels = [{"float_cnn": "float\nCNN", "float_adder": "float\nAdderNet"}.get(k, f"int{k[9:]}\nAdderNet")
              for k in energy]
    bars = ax2.bar(range(len(energy)), list(energy.values()), color=["#888"] + ["#4a7"] + ["#37c"] * (len(energy) - 2))
    for bar, v in zip(bars, energy.values()):
        ax2.text(bar.get_x() + bar.get_width() / 2, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    ax2.set_xticks(range(len(energy)), labels, fontsize=8)
    ax2.set_ylabel("energy per image (\u00b5J, 45 nm)")
    ax2.set_title("energy")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _check_args(bits, methods):
    if not bits:
        raise ValueError("give at least one bit width (e.g. --bits 8 6 5 4)")
    bits = [check_bits(b) for b in bits]
    if any(b > 8 for b in bits):
        raise ValueError(f"bit widths above 8 are not reported (energy figures exist up to 8 bits), got {bits}")
    if not methods:
        raise ValueError(f"give at least one method ({', '.join(METHODS)})")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown quantization method(s) {bad} (choose from {', '.join(METHODS)})")
    return list(dict.fromkeys(bits)), list(dict.fromkeys(methods))


def run_quantize(cfg, ckpt: str, bits: List[int], methods: List[str], as_json: bool = False,
                 out_dir: Optional[str] = None) -> Dict:
    """Quantize the adder model of ``cfg`` loaded from ``ckpt`` with every method at every bit width.

    Writes ``adder_ptq.md``, ``adder_ptq.json`` and ``adder_ptq.png`` to ``out_dir`` (default
    ``<train.output_dir>/quant``). Returns ``{"float_top1", "float_top5", "float_bn_recalib_top1",
    "results": [{"method", "bits", "top1", "top5", "loss"}], "energy_uj", "ops", "files", ...}``; with
    ``as_json`` the last printed line is ``{"float_top1": .., "results": [{"method": .., "bits": ..,
    "top1": ..}, ...]}``. ``bits``: widths in 2..8; ``methods``: ``shared`` and/or ``redistribute``;
    the other settings come from the ``quant:`` config section.
    """
    from ..data.loader import Loader
    from ..engine.checkpoint import load_weights
    from ..engine.loss import create_loss
    from ..engine.metrics import evaluate
    from ..engine.trainer import build_model, set_seed

    bits, methods = _check_args(bits, methods)
    if not ckpt or not os.path.isfile(ckpt):
        raise FileNotFoundError(f"checkpoint '{ckpt}' does not exist")
    q = cfg.quant
    if q.groups < 1:
        raise ValueError(f"quant.groups must be >= 1, got {q.groups}")
    if q.calib_batches < 1:
        raise ValueError(f"quant.calib_batches must be >= 1, got {q.calib_batches}")
    if q.bn_recalib_batches < 0:
        raise ValueError(f"quant.bn_recalib_batches must be >= 0, got {q.bn_recalib_batches}")
    prev_mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    out_dir = out_dir or os.path.join(cfg.train.output_dir, "quant")
    os.makedirs(out_dir, exist_ok=True)
    log = lambda *a: print(*a, flush=True)  # noqa: E731

    def fresh():
        net = build_model(cfg)
        load_weights(net, ckpt)
        net.set_train(False)
        return net

    try:
        set_seed(cfg.train.seed)
        loss_fn = create_loss("ce")
        val = Loader(cfg.data, "val", cfg.train.seed)
        calib = Loader(cfg.data, "train", cfg.train.seed)
        net = fresh()
        if not find_adder_layers(net):
            raise ValueError(f"model '{cfg.model.name}' has no adder layers to quantize")
        t0 = time.time()
        float_m = evaluate(net, val, loss_fn)
        log(f"float {cfg.model.name}: top1 {float_m['top1']:.4f} ({float_m['n']} val images)")
        stats = calibrate_activations(net, calib, q.calib_batches, q.act_quantile)
        shape = [1, cfg.model.in_channels, cfg.data.image_size, cfg.data.image_size]
        # counted on a full batch (the kernels already compiled for it), reported per image
        batch = cfg.data.batch_size
        counts = {k: v // batch for k, v in count_ops(net, [batch] + shape[1:]).items()}
        log(f"calibrated {len(stats)} adder layers on {q.calib_batches} batches ({time.time() - t0:.0f} s)")
        # the float model with the same BN re-estimation the quantized ones get (spec 2.5: separates the
        # effect of re-estimating BN from the effect of quantization)
        float_re = None
        if q.bn_recalib_batches > 0:
            set_seed(cfg.train.seed)
            recalibrate_bn(net, calib, q.bn_recalib_batches)
            float_re = evaluate(net, val, loss_fn)
            log(f"float {cfg.model.name} after BN re-estimation: top1 {float_re['top1']:.4f}")
        results, qnet = [], None
        for method in methods:
            for b in bits:
                t1 = time.time()
                qnet = fresh()
                set_seed(cfg.train.seed)
                quantize_adder_model(qnet, stats, method, b, q.groups, q.act_range, q.small_group_scale, q.seed,
                                     q.integer)
                recalibrate_bn(qnet, calib, q.bn_recalib_batches)
                m = evaluate(qnet, val, loss_fn)
                results.append({"method": method, "bits": b, "top1": m["top1"], "top5": m["top5"], "loss": m["loss"]})
                log(f"{method:>12} {b}-bit: top1 {m['top1']:.4f} (float {float_m['top1']:.4f}) "
                    f"[{time.time() - t1:.0f} s]")
        energy = energy_per_image(counts["float_macs"], counts["adder_ops"], bits)
        settings = {"groups": q.groups, "calib_batches": q.calib_batches, "bn_recalib_batches": q.bn_recalib_batches,
                    "act_range": q.act_range, "act_quantile": q.act_quantile,
                    "small_group_scale": q.small_group_scale, "seed": q.seed,
                    "path": "integer" if q.integer else "fake-quant", "batch_size": cfg.data.batch_size}
        files = {"markdown": os.path.join(out_dir, "adder_ptq.md"), "json": os.path.join(out_dir, "adder_ptq.json"),
                 "png": os.path.join(out_dir, "adder_ptq.png")}
        report = {"model": cfg.model.name, "dataset": cfg.data.dataset, "checkpoint": ckpt,
                  "n_val": float_m["n"], "float_top1": float_m["top1"], "float_top5": float_m["top5"],
                  "float_bn_recalib_top1": None if float_re is None else float_re["top1"],
                  "results": results, "ops": counts, "energy_uj": energy, "energy_pj_per_op": ENERGY_PJ,
                  "settings": settings, "files": files}
        if q.export and qnet is not None:
            from ..export import export_and_verify
            last = results[-1]
            base = os.path.join(out_dir, f"{cfg.model.name}_{last['method']}_w{last['bits']}")
            report["export"] = export_and_verify(qnet, shape, base, "MINDIR")
            files["mindir"] = report["export"]["file"]
            log(f"exported {report['export']['file']} (max |diff| {report['export']['max_abs_err']:.2e})")
        text = _markdown(cfg.model.name, cfg.data.dataset, float_m["n"], float_m["top1"], results, counts, energy,
                         bits, settings, None if float_re is None else float_re["top1"])
        with open(files["markdown"], "w", encoding="utf-8") as fh:
            fh.write(text)
        with open(files["json"], "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
        _plot(files["png"], float_m["top1"], results, energy, f"{cfg.model.name} on {cfg.data.dataset}")
        log(text)
        if as_json:
            print(json.dumps({"float_top1": float_m["top1"],
                              "results": [{"method": r["method"], "bits": r["bits"], "top1": r["top1"]}
                                          for r in results]}), flush=True)
        return report
    finally:
        ms.set_context(mode=prev_mode)
