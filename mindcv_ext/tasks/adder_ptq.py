"""The ``adder_ptq`` task: an AdderNet trained as a classifier (``mindcv-ext train``), then
post-training quantized with the shared and the redistributed (grouped) scales at every bit width
(``mindcv-ext run`` / ``mindcv-ext quantize``), evaluated and reported with energy per image.

The ``quant:`` section holds every setting of a PTQ run (checkpoint, bit widths, methods,
calibration); defaults follow the official AdderQuant code (Chen et al., AdderNet quantization):
4 kernel groups, 202 calibration batches of augmented training images, a 0.9997 quantile of |x|
for the activation range, 202 BN re-estimation batches.
"""
import json
import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import mindspore as ms

from ..data.loader import Loader
from ..engine.loop import set_seed
from ..engine.loss import create_loss
from ..engine.metrics import evaluate
from ..export import export_and_verify
from ..models.registry import build_model
from ..quant.adder_ptq import (ENERGY_PJ, METHODS, calibrate_activations, count_ops, energy_per_image,
                               find_adder_layers, quantize_adder_model, recalibrate_bn)
from ..quant.adder_quantizers import check_bits
from ..utils.checkpoint import load_weights
from .classification import ClassificationTask
from .registry import register_task

QUANT_KEYS = {
    "ckpt": ((str, type(None)), None),      # trained float checkpoint (last.ckpt or best.ckpt of the run)
    "bits": ((list,), [8, 6, 5, 4]),        # bit widths to report (2..8)
    "methods": ((list,), ["shared", "redistribute"]),
    "out_dir": ((str, type(None)), None),   # report folder (default <train.output_dir>/quant)
    "groups": ((int,), 4),                  # kernel clusters per adder layer (redistribute)
    "calib_batches": ((int,), 202),         # training batches (data.batch_size each) for activation ranges
    "bn_recalib_batches": ((int,), 202),    # training batches run in train mode to refresh BN; 0 = off
    "act_quantile": ((float,), 0.9997),     # quantile of |x| per calibration batch (act_range: quantile)
    "act_range": ((str,), "quantile"),      # quantile | max: how the activation range a_r is measured
    "small_group_scale": ((str,), "weight"),  # weight (official) | act_range: scale of groups with max|W| <= a_r
    "seed": ((int,), 0),                    # k-means seed
    "integer": ((bool,), True),             # integer-code forward (True) or fake-quant float forward (False)
    "export": ((bool,), False),             # export the last quantized model to MindIR and verify it
}


@register_task
class AdderPTQTask(ClassificationTask):
    """Classification training of the float AdderNet; ``run`` quantizes a trained checkpoint."""
    name = "adder_ptq"
    sections = {"quant": QUANT_KEYS}
    choices = {("quant", "act_range"): ("quantile", "max"), ("quant", "small_group_scale"): ("weight", "act_range")}
    ranges = {("quant", "groups"): (lambda v: v >= 1, "at least 1"),
              ("quant", "calib_batches"): (lambda v: v >= 1, "at least 1"),
              ("quant", "bn_recalib_batches"): (lambda v: v >= 0, "0 or more"),
              ("quant", "act_quantile"): (lambda v: 0 < v <= 1, "in (0, 1]")}

    def run(self, resume: Optional[str] = None, as_json: bool = False) -> Dict:
        q = self.cfg.quant
        if not q.ckpt:
            raise ValueError("quant.ckpt is not set: the trained float checkpoint to quantize "
                             "(e.g. --set quant.ckpt=runs/<run>/last.ckpt, or quantize --ckpt)")
        return run_quantize(self.cfg, q.ckpt, q.bits, q.methods, as_json=as_json, out_dir=q.out_dir)


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
        net = build_model(cfg.model)
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
        # the float model with the same BN re-estimation the quantized ones get (as the paper's BN re-estimation study: separates the
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
            last = results[-1]
            base = os.path.join(out_dir, f"{cfg.model.name}_{last['method']}_w{last['bits']}")
            report["export"] = export_and_verify(qnet, [np.random.default_rng(0).standard_normal(
                [2] + shape[1:]).astype(np.float32)], base, "MINDIR")
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
