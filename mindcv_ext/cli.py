"""``mindcv-ext`` / ``python -m mindcv_ext``: train, run, eval, export, infer, demo, check-data,
convert, summary, list, quantize, bench. Every config command goes through the config's task."""
import argparse
import json
import sys


def _config_args(p):
    p.add_argument("-c", "--config", required=True, help="YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=0.05 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mindcv-ext", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train the config's task")
    _config_args(p)
    p.add_argument("--resume", default=None, help="training checkpoint to continue from, or 'auto'")

    p = sub.add_parser("run", help="run the config's task end to end (training, or e.g. PTQ for adder_ptq)")
    _config_args(p)
    p.add_argument("--resume", default=None)
    p.add_argument("--json", action="store_true", help="print the results as one JSON line last")

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
    p.add_argument("--no-verify", action="store_true", help="write the file without reloading and comparing it")
    p.add_argument("--random-weights", action="store_true", help="allow export without --ckpt")

    p = sub.add_parser("infer", help="run the model on image files")
    _config_args(p)
    p.add_argument("--ckpt", required=True)
    p.add_argument("images", nargs="+")
    p.add_argument("--topk", type=int, default=5)

    p = sub.add_parser("check-data", help="read every sample of the config's dataset; list unreadable files")
    _config_args(p)

    p = sub.add_parser("demo", help="a method's CPU demonstration (prints its metrics as JSON last)")
    p.add_argument("name", nargs="?")
    p.add_argument("--list", action="store_true", help="list the demos")
    p.add_argument("--json", action="store_true", help="(the JSON line is always printed last)")
    p.add_argument("--out", default=None, help="output folder (default runs/demo_<name>)")
    p.add_argument("--quick", action="store_true", help="a shorter run (for tests)")

    p = sub.add_parser("convert", help="convert an official PyTorch checkpoint")
    p.add_argument("--model", required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ema", action="store_true", help="take state_dict_ema when the file has one")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier size of the checkpoint")

    p = sub.add_parser("summary", help="parameters, MACs and a per-layer table")
    p.add_argument("--model", required=True)
    p.add_argument("--input-size", type=int, nargs="+", default=None, help="H [W] (default: the model's)")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*")

    p = sub.add_parser("quantize", help="AdderNet PTQ (the adder_ptq task): shared vs redistribute")
    _config_args(p)
    p.add_argument("--ckpt", default=None, help="sets quant.ckpt")
    p.add_argument("--bits", type=int, nargs="+", default=None, help="sets quant.bits (e.g. 8 6 5 4)")
    p.add_argument("--method", nargs="+", default=None, help="sets quant.methods (shared, redistribute)")
    p.add_argument("--out", default=None, help="sets quant.out_dir")
    p.add_argument("--json", action="store_true", help="print the results as one JSON line last")

    p = sub.add_parser("bench", help="custom operator benchmark (python -m bench.kernels)")
    p.add_argument("--json", action="store_true")
    return parser


def _task(args, task=None, extra=()):
    from .tasks import get_task, load_config
    cfg = load_config(args.config, list(args.overrides) + list(extra), task=task)
    return get_task(cfg.task)(cfg)


def cmd_train(args):
    task = _task(args).build()
    record = task.fit(args.resume)
    if task.is_main and record:
        print(f"done: {task.cfg.model.name} best {task.cfg.train.monitor or task.default_monitor} "
              f"{task.best if task.best is not None else float('nan'):.4f}; run folder {task.out_dir}")
    return record


def cmd_run(args):
    return _task(args).run(args.resume, as_json=args.json)


def cmd_eval(args):
    task = _task(args).load_for_inference(args.ckpt, args.ema)
    task.ensure_val_loader()
    metrics = task.evaluate()
    print(f"{task.cfg.model.name} on {task.cfg.data.dataset} val: " +
          " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
    if args.json:
        print(json.dumps(metrics))
    return metrics


def cmd_export(args):
    import os
    from .export import export_and_verify
    if not args.ckpt and not args.random_weights:
        raise ValueError("export without --ckpt would write random weights; give --ckpt or --random-weights")
    task = _task(args).load_for_inference(args.ckpt)
    fmt = (args.format or task.cfg.export.format).upper()
    out = args.out or task.cfg.export.file_name or os.path.join(task.cfg.train.output_dir, task.cfg.model.name)
    report = export_and_verify(task.export_cell(), list(task.example_inputs()), out, fmt, verify=not args.no_verify)
    if report["verified"]:
        print(f"exported {report['file']} ({fmt}); reloaded and compared on {report['batch']} inputs, "
              f"{report['outputs']} output(s): max |diff| {report['max_abs_err']:.2e}, "
              f"top-1 agreement {report['agreement']:.3f}")
    else:
        print(f"exported {report['file']} ({fmt}); not verified: {report['reason']}")
    return report


def cmd_infer(args):
    task = _task(args).load_for_inference(args.ckpt)
    results = task.infer_files(args.images, args.topk)
    failed = [r for r in results if "error" in r]
    for r in results:
        if "error" in r:
            print(f"{r['file']}: error: {r['error']}", file=sys.stderr)
        else:
            print(f"{r['file']}: " + ", ".join(f"class {i} ({p:.3f})" for i, p in r["top"]))
    if failed:
        raise ValueError(f"{len(failed)} of {len(results)} file(s) could not be read")
    return results


def cmd_check_data(args):
    from .data.registry import create_dataset
    task = _task(args)
    bad_total = 0
    for split in ("train", "val"):
        source = create_dataset(task.cfg.data, split, task.cfg.train.seed)
        scan = getattr(source, "scan", None)
        bad = scan() if scan else []
        bad_total += len(bad)
        print(f"{split}: {len(source)} samples, {getattr(source, 'num_classes', '?')} classes, "
              f"{len(bad)} unreadable" + "".join(f"\n  {p}" for p in bad))
    if bad_total:
        raise ValueError(f"{bad_total} unreadable file(s); remove them or set data.skip_bad_images=true")


def cmd_demo(args):
    import os
    from .tasks import get_demo, list_demos
    if args.list or not args.name:
        for name, text in list_demos().items():
            print(f"{name:16s} {text}")
        return None
    fn = get_demo(args.name)
    result = fn(args.out or os.path.join("runs", f"demo_{args.name}"), quick=args.quick)
    print(json.dumps(result), flush=True)
    return result


def cmd_convert(args):
    from .convert import convert_checkpoint
    n = convert_checkpoint(args.model, args.src, args.out, prefer_ema=args.ema, num_classes=args.num_classes)
    print(f"converted {n} tensors from {args.src} into {args.out}")


def cmd_summary(args):
    from .models import create_model, default_cfg, family_hooks
    from .utils.summary import format_summary, summarize
    if args.input_size is None:
        size = list(default_cfg(args.model)["input_size"][1:])
    else:
        size = args.input_size * 2 if len(args.input_size) == 1 else args.input_size[:2]
    net = create_model(args.model, num_classes=args.num_classes)
    shape = (1, 3, size[0], size[1])
    info = summarize(net, shape)
    size_fn = family_hooks(args.model).model_size
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
    extra = []
    if args.ckpt:
        extra.append(f"quant.ckpt={args.ckpt}")
    if args.bits:
        extra.append(f"quant.bits={list(args.bits)}")
    if args.method:
        extra.append(f"quant.methods={list(args.method)}")
    if args.out:
        extra.append(f"quant.out_dir={args.out}")
    return _task(args, task="adder_ptq", extra=extra).run(None, as_json=args.json)


def cmd_bench(args):
    import importlib
    try:
        bench = importlib.import_module("bench.kernels")
    except ImportError as err:
        raise ValueError("the benchmarks live in bench/ of a source checkout; run from its root "
                         f"(python -m bench.kernels): {err}") from err
    bench.main(["--json"] if args.json else [])


COMMANDS = {"train": cmd_train, "run": cmd_run, "eval": cmd_eval, "export": cmd_export, "infer": cmd_infer,
            "check-data": cmd_check_data, "demo": cmd_demo, "convert": cmd_convert, "summary": cmd_summary,
            "list": cmd_list, "quantize": cmd_quantize, "bench": cmd_bench}


def _one_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip().strip("-")]  # not MindSpore's ---- rules
    return lines[0] if lines else type(err).__name__


def main(argv=None):
    args = build_parser().parse_args(argv)
    from .engine.loop import TrainingDiverged
    from .export import ExportMismatch, ExportUnverified
    known = (ValueError, KeyError, FileNotFoundError, TypeError, TrainingDiverged, ExportMismatch, ExportUnverified,
             RuntimeError)
    try:
        COMMANDS[args.command](args)  # the console script exits with main's return value: None = 0
    except known as err:
        if args.debug:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
