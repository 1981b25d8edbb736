"""``mindcv-ext`` / ``python -m mindcv_ext``: train, eval, export, infer, convert, summary, list, quantize, bench."""
import argparse
import importlib
import json
import os
import sys

# task name (config ``task:``) -> "module:function(cfg, args)" for method-specific loops
TASKS = {
    "classification": "mindcv_ext.engine.trainer:run_classification",
}


def _config_args(p):
    p.add_argument("-c", "--config", required=True, help="YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=0.05 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mindcv-ext", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a config")
    _config_args(p)
    p.add_argument("--resume", default=None, help="training checkpoint to continue from, or 'auto'")

    p = sub.add_parser("eval", help="evaluate a checkpoint on the config's validation split")
    _config_args(p)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--ema", action="store_true", help="use the EMA weights of a training checkpoint")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON line last")

    p = sub.add_parser("export", help="export to MindIR/ONNX and verify the file against the Cell")
    _config_args(p)
    p.add_argument("--ckpt", default=None)
    p.add_argument("--format", default=None, choices=["MINDIR", "ONNX", "mindir", "onnx"])
    p.add_argument("--out", default=None, help="output file name without extension")

    p = sub.add_parser("infer", help="classify image files")
    _config_args(p)
    p.add_argument("--ckpt", required=True)
    p.add_argument("images", nargs="+")
    p.add_argument("--topk", type=int, default=5)

    p = sub.add_parser("convert", help="convert an official PyTorch checkpoint")
    p.add_argument("--model", required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ema", action="store_true", help="take state_dict_ema when the file has one")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier size of the checkpoint")

    p = sub.add_parser("summary", help="parameters, MACs and a per-layer table")
    p.add_argument("--model", required=True)
    p.add_argument("--input-size", type=int, nargs="+", default=[224], help="H [W]")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*")

    p = sub.add_parser("quantize", help="AdderNet post-training quantization: shared vs redistribute")
    _config_args(p)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--bits", type=int, nargs="+", default=[8, 6, 5, 4], choices=[8, 6, 5, 4])
    p.add_argument("--method", nargs="+", default=["shared", "redistribute"], choices=["shared", "redistribute"])
    p.add_argument("--out", default=None, help="report folder (default <train.output_dir>/quant)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON line last")

    p = sub.add_parser("bench", help="custom operator benchmark (python -m ascend_kernels.bench)")
    p.add_argument("--json", action="store_true")
    return parser


def _load_cfg(args):
    from .config import load_config
    return load_config(args.config, args.overrides)


def cmd_train(args):
    cfg = _load_cfg(args)
    if cfg.task not in TASKS:
        raise SystemExit(f"error: unknown task '{cfg.task}' (known: {', '.join(sorted(TASKS))})")
    module, func = TASKS[cfg.task].split(":")
    return getattr(importlib.import_module(module), func)(cfg, args)


def _model_for(cfg, ckpt, use_ema=False):
    from .engine.checkpoint import load_weights
    from .engine.trainer import build_model
    net = build_model(cfg)
    if ckpt:
        load_weights(net, ckpt, use_ema=use_ema)
    net.set_train(False)
    return net


def cmd_eval(args):
    from .data.loader import Loader
    from .engine.loss import create_loss
    from .engine.metrics import evaluate
    cfg = _load_cfg(args)
    net = _model_for(cfg, args.ckpt, args.ema)
    metrics = evaluate(net, Loader(cfg.data, "val", cfg.train.seed), create_loss("ce"))
    print(f"{cfg.model.name} on {cfg.data.dataset} val ({metrics['n']} images): top1 {metrics['top1']:.4f} "
          f"top5 {metrics['top5']:.4f} loss {metrics['loss']:.4f}")
    if args.json:
        print(json.dumps({k: metrics[k] for k in ("top1", "top5", "loss")}))
    return metrics


def cmd_export(args):
    from .export import export_and_verify
    cfg = _load_cfg(args)
    net = _model_for(cfg, args.ckpt)
    fmt = (args.format or cfg.export.format).upper()
    shape = cfg.export.input_shape or [1, cfg.model.in_channels, cfg.data.image_size, cfg.data.image_size]
    out = args.out or cfg.export.file_name or os.path.join(cfg.train.output_dir, cfg.model.name)
    report = export_and_verify(net, shape, out, fmt)
    if report["verified"]:
        print(f"exported {report['file']} ({fmt}); reloaded: max |diff| {report['max_abs_err']:.2e}, "
              f"top-1 agreement {report['agreement']:.3f}")
    else:
        print(f"exported {report['file']} ({fmt}); not verified: {report['reason']}")
    return report


def cmd_infer(args):
    import numpy as np
    import mindspore as ms
    from .data.datasets import DatasetError
    from .data.transforms import create_transforms
    import cv2
    cfg = _load_cfg(args)
    net = _model_for(cfg, args.ckpt)
    d = cfg.data
    ops = create_transforms(d.image_size, False, d.mean, d.std, interpolation=d.interpolation, crop_pct=d.crop_pct)
    results = []
    for path in args.images:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"cannot read image '{path}'")
        x = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        for op in ops:
            x = op(x)
        logits = net(ms.Tensor(np.asarray(x, np.float32)[None])).asnumpy()[0]
        prob = np.exp(logits - logits.max())
        prob /= prob.sum()
        top = np.argsort(-prob)[:args.topk]
        results.append({"file": path, "top": [(int(i), float(prob[i])) for i in top]})
        print(f"{path}: " + ", ".join(f"class {i} ({p:.3f})" for i, p in results[-1]["top"]))
    return results


def cmd_convert(args):
    from .convert import convert_checkpoint
    n = convert_checkpoint(args.model, args.src, args.out, prefer_ema=args.ema, num_classes=args.num_classes)
    print(f"converted {n} tensors from {args.src} into {args.out}")


def cmd_summary(args):
    from .models import create_model, model_module
    from .utils.summary import format_summary, summarize
    size = args.input_size * 2 if len(args.input_size) == 1 else args.input_size[:2]
    net = create_model(args.model, num_classes=args.num_classes)
    shape = (1, 3, size[0], size[1])
    info = summarize(net, shape)
    size_fn = getattr(model_module(args.model), "model_size_bits", None)  # binary families
    if size_fn is not None:
        info["size_bits"] = int(size_fn(net))
    if args.json:
        print(json.dumps({k: info[k] for k in ("params", "params_all", "macs", "macs_by_kind", "size_bits")
                          if k in info}))
    else:
        print(format_summary(info, args.model, shape))
        if "size_bits" in info:
            print(f"model size: {info['size_bits']:,} bits ({info['size_bits'] / 8 / 1024:.1f} KiB)")
    return info


def cmd_list(args):
    from .models import list_models
    print("\n".join(list_models(args.pattern)))


def cmd_quantize(args):
    from .quant.adder_ptq import run_quantize
    return run_quantize(_load_cfg(args), args.ckpt, args.bits, args.method, as_json=args.json, out_dir=args.out)


def cmd_bench(args):
    from ascend_kernels import bench
    bench.main(["--json"] if args.json else [])


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "export": cmd_export, "infer": cmd_infer, "convert": cmd_convert,
            "summary": cmd_summary, "list": cmd_list, "quantize": cmd_quantize, "bench": cmd_bench}


def main(argv=None):
    args = build_parser().parse_args(argv)
    from .config import ConfigError
    from .convert import ConversionError
    from .data.datasets import DatasetError
    from .engine.checkpoint import CheckpointError
    from .models.registry import UnknownModelError
    try:
        COMMANDS[args.command](args)
    except (ConfigError, ConversionError, DatasetError, CheckpointError, UnknownModelError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
