"""Whole-model inference throughput: custom kernels against their composite twins.

    python -m bench.bench_models [--models a,b] [--batches 1,16] [--quick] [--json]
                                 [--compare-threads N]

One row per (model, batch) at the model's default input size (graph mode, eval, fp32, random
input). Each row runs in its own process so its peak RSS (``ru_maxrss``, both variants built) is
its own. Inside a row the variants are timed interleaved (one call of each per round) and img/s
uses the best round, so outside load hits all variants alike:

* ``custom``    ``kernels: custom`` (the AOT kernels with their default OpenMP team size,
  :func:`ascend_kernels.aot.default_num_threads`);
* ``composite`` ``kernels: composite`` (stock MindSpore ops only);
* ``custom_tN`` with ``--compare-threads N``: the custom model again, the AOT kernels' team set to
  N threads around each of its calls (N = the core count is what OpenMP picks by itself);
* ``auto``      the variant ``kernels: auto`` resolves to on this device (reported, not timed).

``adabin_resnet18`` rows compare the bit-packed network (custom = packed C++ conv, composite =
float conv of the binarized tensors) and add the float ``resnet18`` as a third timed variant
(``float``); ``ratio`` is always custom / composite img/s.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

DEFAULT_MODELS = ("ghostnetv2_100", "adabin_resnet18", "adder_resnet20", "snnmlp_t", "pvig_ti_224_gelu")


def _build(name, kernels):
    from mindcv_ext.models.registry import create_model
    if name == "adabin_resnet18":
        from mindcv_ext.quant.inference import to_inference
        net = create_model(name, kernels=kernels)
        net.set_train(False)
        return to_inference(net, backend=kernels)
    net = create_model(name, kernels=kernels)
    net.set_train(False)
    return net


def _auto_choice(name):
    """Which form ``kernels: auto`` gives the model's custom layers on this device."""
    import ascend_kernels
    return ascend_kernels.resolve(None, "aot_cpu" if name == "adabin_resnet18" else "hybrid")


def worker(name, batch, repeat, compare_threads):
    import numpy as np
    import mindspore as ms
    import ascend_kernels
    from mindcv_ext.models.registry import default_cfg
    ms.set_context(mode=ms.GRAPH_MODE)
    size = default_cfg(name)["input_size"]
    x = ms.Tensor(np.random.default_rng(0).standard_normal((batch, *size)).astype(np.float32))
    from mindcv_ext.models.registry import family_hooks
    has_custom = bool(family_hooks(name).kernels)  # pvig: stock ops only, timed as composite alone
    nets = {"custom": _build(name, "custom")} if has_custom else {}
    nets["composite"] = _build(name, "composite")
    if name == "adabin_resnet18":
        nets["float"] = _build("resnet18", "auto")
    default_threads = ascend_kernels.kernel_threads()

    def call(key):
        net = nets["custom" if key.startswith("custom_t") else key]
        if key.startswith("custom_t"):
            ascend_kernels.set_kernel_threads(compare_threads)
        net(x).asnumpy()
        if key.startswith("custom_t"):
            ascend_kernels.set_kernel_threads(None)

    keys = list(nets) + ([f"custom_t{compare_threads}"] if compare_threads and has_custom else [])
    for k in keys:  # compile + warm up
        call(k)
        call(k)
    best = {k: float("inf") for k in keys}
    for _ in range(repeat):
        for k in keys:
            t = time.perf_counter()
            call(k)
            best[k] = min(best[k], time.perf_counter() - t)
    row = {"model": name, "batch": batch, "input": list(size), "kernel_threads": default_threads,
           "auto": _auto_choice(name) if has_custom else "composite"}
    for k in keys:
        row[f"{k}_img_s"] = round(batch / best[k], 2)
    row["ratio"] = round(best["composite"] / best["custom"], 3) if has_custom else None
    if "float" in nets:
        row["packed_vs_float"] = round(best["float"] / best["custom"], 3)
    if compare_threads and has_custom:
        row[f"custom_vs_custom_t{compare_threads}"] = round(best[f"custom_t{compare_threads}"] / best["custom"], 3)
    row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


def _fmt(row):
    keys = [k for k in row if k.endswith("_img_s")]
    rates = " ".join(f"{k[:-6]}={row[k]}" for k in keys)
    extra = "".join(f" {k}={row[k]}" for k in ("packed_vs_float",) if k in row)
    extra += "".join(f" {k}={v}" for k, v in row.items() if k.startswith("custom_vs_"))
    return (f"{row['model']:<20} b={row['batch']:<3} {rates} ratio={row['ratio']}{extra} "
            f"auto={row['auto']} threads={row['kernel_threads']} peak_rss={row['peak_rss_mib']}MiB")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="3 rounds per row")
    ap.add_argument("--compare-threads", type=int, default=0,
                    help="also time the custom model with the AOT kernels' team set to N threads")
    ap.add_argument("--json", action="store_true", help="print all rows as one JSON list last")
    ap.add_argument("--worker", nargs=2, metavar=("MODEL", "BATCH"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    repeat = 3 if a.quick else a.repeat
    if a.worker:
        print(json.dumps(worker(a.worker[0], int(a.worker[1]), repeat, a.compare_threads)))
        return 0
    from mindcv_ext.models.registry import is_model
    models = [m for m in a.models.split(",") if m]
    unknown = [m for m in models if not is_model(m)]
    if unknown:
        print(f"error: unknown model(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    rows = []
    for name in models:
        for b in (int(v) for v in a.batches.split(",")):
            cmd = [sys.executable, "-m", "bench.bench_models", "--worker", name, str(b), "--repeat", str(repeat),
                   "--compare-threads", str(a.compare_threads)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=os.environ.copy())
            if res.returncode != 0:
                print(f"[bench] {name} b={b} failed:\n{res.stderr[-1500:]}", file=sys.stderr, flush=True)
                continue
            row = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(_fmt(row), file=sys.stderr if a.json else sys.stdout, flush=True)
    if a.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
