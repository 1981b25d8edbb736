"""AdaBin vs the plain sign BNN: the same ResNet-20, data and schedule, only the quantizers differ.

Trains ``configs/adabin/adabin_resnet20_digits.yaml`` and ``configs/adabin/sign_resnet20_digits.yaml``
with the common trainer (the AdaBin run with its progressive EDE schedule), then prints one table:
parameters, binary/float MACs, model size (binary weights 1 bit, the rest 32), final and best
validation top-1, training time. Also checks that the trained AdaBin model, converted to bit-packed
inference, predicts the same class for every validation image.

    python bench/adabin_vs_sign.py [--epochs N] [--out runs/adabin_vs_sign] [--set data.image_size=8 ...]
"""
import argparse
import os
import sys
import time
from typing import Dict, Optional, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import mindspore as ms  # noqa: E402

from mindcv_ext.config import load_config  # noqa: E402
from mindcv_ext.data.loader import Loader  # noqa: E402
from mindcv_ext.engine.trainer import Trainer, build_model  # noqa: E402
from mindcv_ext.models import adabin  # noqa: E402
from mindcv_ext.quant.binary import model_size_summary  # noqa: E402
from mindcv_ext.quant.inference import to_inference  # noqa: E402
from mindcv_ext.utils.summary import summarize  # noqa: E402

CONFIGS = {"adabin": os.path.join(ROOT, "configs", "adabin", "adabin_resnet20_digits.yaml"),
           "sign": os.path.join(ROOT, "configs", "adabin", "sign_resnet20_digits.yaml")}


def train_one(path: str, output_dir: str, epochs: Optional[int] = None, quiet: bool = False,
              overrides: Sequence[str] = ()) -> Dict:
    overrides = list(overrides) + [f"train.output_dir={output_dir}"]
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    if quiet:
        overrides.append("train.progress=false")
    cfg = load_config(path, overrides)
    callbacks = adabin.train_callbacks(cfg) if cfg.model.name.startswith("adabin_") else []
    start = time.time()
    trainer = Trainer(cfg, callbacks=callbacks)
    for cb in callbacks:
        cb.begin(trainer.net, trainer.start_epoch)
    record = trainer.fit()
    elapsed = time.time() - start
    size = cfg.data.image_size
    info = summarize(trainer.net, (1, cfg.model.in_channels, size, size))
    return {"model": cfg.model.name, "cfg": cfg, "net": trainer.net, "epochs": cfg.train.epochs,
            "val_top1": record["val_top1"], "best_top1": trainer.best_top1, "time_s": elapsed,
            "params": info["params"], "macs": info["macs_by_kind"], "size": model_size_summary(trainer.net)}


def compare(epochs: Optional[int] = None, output_root: str = "runs/adabin_vs_sign", quiet: bool = False,
            keep_nets: bool = False, overrides: Sequence[str] = ()) -> Dict[str, Dict]:
    """Train both digits configs (same seed and schedule, the same ``overrides`` applied to both);
    returns ``{"adabin": row, "sign": row}``."""
    results = {}
    for key, path in CONFIGS.items():
        row = train_one(path, os.path.join(output_root, key), epochs, quiet, overrides)
        if not keep_nets:
            row.pop("net")
        results[key] = row
    return results


def packed_agreement(net, cfg) -> Dict:
    """Predictions of ``net`` (eval) vs its bit-packed conversion on every validation image."""
    twin = build_model(cfg)
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


def format_table(results: Dict[str, Dict]) -> str:
    head = f"{'quantizer':<10} {'model':<16} {'epochs':>6} {'params':>9} {'binary MACs':>12} {'float MACs':>11} " \
           f"{'size KiB':>9} {'val top-1':>9} {'best':>7} {'time s':>7}"
    lines = [head, "-" * len(head)]
    for key, r in results.items():
        lines.append(f"{key:<10} {r['model']:<16} {r['epochs']:>6} {r['params']:>9,} {r['macs'].get('binary', 0):>12,} "
                     f"{r['macs'].get('float', 0):>11,} {r['size']['bytes'] / 1024:>9.1f} {100 * r['val_top1']:>8.2f}% "
                     f"{100 * r['best_top1']:>6.2f}% {r['time_s']:>7.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs of both configs")
    parser.add_argument("--out", default="runs/adabin_vs_sign", help="run folders go under this path")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides applied to both runs, e.g. data.image_size=8")
    parser.add_argument("--no-packed-check", action="store_true", help="skip the packed-inference agreement check")
    args = parser.parse_args(argv)
    results = compare(args.epochs, args.out, quiet=True, keep_nets=True, overrides=args.set)
    print(format_table(results))
    if not args.no_packed_check:
        agree = packed_agreement(results["adabin"]["net"], results["adabin"]["cfg"])
        print(f"bit-packed AdaBin vs training model: {agree['agree']}/{agree['n']} validation predictions agree, "
              f"max |logit difference| {agree['max_abs_logit_diff']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
