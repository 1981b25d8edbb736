"""The first two demos: AdderNet PTQ on the embedded digits, and AdaBin vs the plain sign BNN.

    mindcv-ext demo addernet_ptq   # train adder_resnet20 on digits, then PTQ shared vs redistribute
    mindcv-ext demo adabin         # adabin_resnet20 vs bnn_resnet20 (same schedule), bit-packed check
"""
import os
import time
from typing import Dict, Optional, Sequence

import numpy as np
import mindspore as ms

from ..data.loader import Loader
from ..quant.binary import model_size_summary
from ..quant.inference import to_inference
from ..utils.summary import summarize
from .demos import register_demo
from .registry import get_task, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(ROOT, "configs")


def train_config(path: str, output_dir: str, overrides: Sequence[str] = ()):
    """Train one config through its task; returns the trained task."""
    cfg = load_config(path, list(overrides) + [f"train.output_dir={output_dir}", "train.progress=false"])
    task = get_task(cfg.task)(cfg).build()
    task.fit()
    return task


@register_demo("addernet_ptq", "adder_resnet20 on digits (8x8), then post-training quantization: shared vs "
                               "redistributed scales at 8/6/5/4 bits, energy per image (~5 min)")
def addernet_ptq(out_dir: str, quick: bool = False) -> Dict:
    path = os.path.join(CONFIGS, "addernet", "adder_resnet20_digits.yaml")
    quant = ["quant.calib_batches=8", "quant.bn_recalib_batches=8", "quant.bits=[4]"] if quick else []
    task = train_config(path, out_dir, quant)
    cfg = load_config(path, quant + [f"train.output_dir={out_dir}", f"quant.ckpt={os.path.join(out_dir, 'last.ckpt')}",
                                     f"quant.out_dir={os.path.join(out_dir, 'quant')}"])
    report = get_task(cfg.task)(cfg).run()
    del task
    return {"float_top1": report["float_top1"],
            "results": [{"method": r["method"], "bits": r["bits"], "top1": r["top1"]} for r in report["results"]]}


def packed_agreement(task) -> Dict:
    """Predictions of the trained AdaBin model (eval) vs its bit-packed conversion on every
    validation image."""
    net, cfg = task.net, task.cfg
    twin = task.build_model()
    ms.load_param_into_net(twin, {p.name: ms.Parameter(ms.Tensor(p.asnumpy()), name=p.name)
                                  for p in net.get_parameters()}, strict_load=True)
    packed = to_inference(twin, backend="custom")
    net.set_train(False)
    n = agree = 0
    max_err = 0.0
    data_cfg = type(cfg.data)(cfg.data)
    data_cfg["batch_size"] = 512  # few large batches: eval here is bound by per-op overhead
    for images, _ in Loader(data_cfg, "val", cfg.train.seed).epoch(0):
        a, b = net(images).asnumpy(), packed(images).asnumpy()
        agree += int((a.argmax(1) == b.argmax(1)).sum())
        n += len(a)
        max_err = max(max_err, float(np.abs(a - b).max()))
    return {"n": n, "agree": agree, "max_abs_logit_diff": max_err}


def compare_binarizers(out_dir: str, epochs: Optional[int] = None, overrides: Sequence[str] = ()) -> Dict[str, Dict]:
    """Train the AdaBin and the sign digits configs with the same overrides; one row each."""
    rows = {}
    for key in ("adabin", "sign"):
        path = os.path.join(CONFIGS, "adabin", f"{key}_resnet20_digits.yaml")
        extra = list(overrides) + ([f"train.epochs={epochs}"] if epochs else [])
        start = time.time()
        task = train_config(path, os.path.join(out_dir, key), extra)
        size = task.cfg.data.image_size
        info = summarize(task.net, (1, task.cfg.model.in_channels, size, size))
        last = task.history[-1]
        rows[key] = {"model": task.cfg.model.name, "task": task, "epochs": task.cfg.train.epochs,
                     "val_top1": last["val_top1"], "best_top1": task.best, "time_s": time.time() - start,
                     "params": info["params"], "macs": info["macs_by_kind"], "size": model_size_summary(task.net)}
    return rows


def format_table(rows: Dict[str, Dict]) -> str:
    head = f"{'quantizer':<10} {'model':<16} {'epochs':>6} {'params':>9} {'binary MACs':>12} {'float MACs':>11} " \
           f"{'size KiB':>9} {'val top-1':>9} {'best':>7} {'time s':>7}"
    lines = [head, "-" * len(head)]
    for key, r in rows.items():
        lines.append(f"{key:<10} {r['model']:<16} {r['epochs']:>6} {r['params']:>9,} {r['macs'].get('binary', 0):>12,} "
                     f"{r['macs'].get('float', 0):>11,} {r['size']['bytes'] / 1024:>9.1f} {100 * r['val_top1']:>8.2f}% "
                     f"{100 * r['best_top1']:>6.2f}% {r['time_s']:>7.0f}")
    return "\n".join(lines)


@register_demo("adabin", "adabin_resnet20 vs bnn_resnet20 (sign) on digits with the same schedule, then the "
                         "bit-packed AdaBin model against the trained one (~4 min)")
def adabin(out_dir: str, quick: bool = False) -> Dict:
    overrides = ["data.image_size=8", "data.batch_size=64"]
    rows = compare_binarizers(out_dir, epochs=2 if quick else None, overrides=overrides)
    print(format_table(rows), flush=True)
    agree = packed_agreement(rows["adabin"]["task"])
    return {"adabin_top1": rows["adabin"]["val_top1"], "sign_top1": rows["sign"]["val_top1"],
            "packed_agreement": agree["agree"] / agree["n"]}
