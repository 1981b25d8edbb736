"""Inference throughput of a ViG model (default Pyramid ViG-Ti) in graph mode.

    python bench/bench_vig.py                         # pvig_ti_224_gelu, batch 1 and 16, 224x224
    python bench/bench_vig.py --model vig_ti_224_gelu --batch-sizes 1 8 --image-size 96

For each batch size the network is compiled, run ``--warmup`` times untimed, then ``--iters``
times; images/s = batch * iters / elapsed seconds. Numbers depend on the machine and its load.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mindspore as ms  # noqa: E402

import mindcv_ext  # noqa: E402


def measure(net, batch: int, image_size: int, warmup: int, iters: int):
    x = ms.Tensor(np.random.default_rng(0).standard_normal((batch, 3, image_size, image_size)).astype(np.float32))
    start = time.perf_counter()
    net(x).asnumpy()                      # first call compiles
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        net(x).asnumpy()
    start = time.perf_counter()
    for _ in range(iters):
        out = net(x)
    out.asnumpy()                         # wait for the last result
    elapsed = time.perf_counter() - start
    return batch * iters / elapsed, elapsed / iters * 1000.0, compile_s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pvig_ti_224_gelu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--device", default=None, help="CPU, GPU or Ascend (default: MindSpore's choice)")
    args = parser.parse_args(argv)
    if args.warmup < 0 or args.iters < 1 or min(args.batch_sizes) < 1:
        parser.error("--warmup must be >= 0, --iters and every batch size >= 1")

    ms.set_context(mode=ms.GRAPH_MODE)
    if args.device:
        ms.set_device(args.device)
    net = mindcv_ext.create_model(args.model)
    net.set_train(False)
    load = ", load average %.1f on %d CPUs" % (os.getloadavg()[0], os.cpu_count()) if hasattr(os, "getloadavg") else ""
    print(f"{args.model}: graph mode, eval, {args.image_size}x{args.image_size}, "
          f"{args.warmup} warm-up + {args.iters} timed iterations, device {ms.get_context('device_target')}{load}")
    for batch in args.batch_sizes:
        ips, ms_per_iter, compile_s = measure(net, batch, args.image_size, args.warmup, args.iters)
        print(f"  batch {batch:>3}: {ips:8.1f} images/s  ({ms_per_iter:8.1f} ms/iter; first call {compile_s:.1f} s)",
              flush=True)


if __name__ == "__main__":
    main()
