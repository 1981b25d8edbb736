"""DropNAS supernet search-step time with and without operation dropout, same batch (PyNative).

    python bench/bench_nas.py                           # 5 cells, C=8, batch 16, 16x16, r = 3e-5 and 1e-2
    python bench/bench_nas.py --layers 14 --channels 16 --image-size 32 --batch 96   # the paper's supernet

Each configuration runs ``--warmup`` untimed steps (optimizer compilation) and ``--iters`` timed
ones; rounds alternate between the configurations so machine load hits them alike. The printed
ratio is (step time without dropout) / (step time with dropout): above 1 means dropped ops saved
time. With r = 3e-5 an edge keeps 7.41 of 8 ops on average (the saving is small by design); the
larger rate shows the effect more clearly.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mindspore as ms  # noqa: E402

from mindcv_ext.nas import SearchNetwork, SearchStep  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--rates", type=float, nargs="+", default=[3e-5, 1e-2])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args(argv)
    ms.set_context(mode=ms.PYNATIVE_MODE)

    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((args.batch, 3, args.image_size, args.image_size)).astype(np.float32))
    y = ms.Tensor(rng.integers(0, 10, args.batch).astype(np.int32))
    rates = [0.0] + list(args.rates)
    steps = {}
    for r in rates:
        net = SearchNetwork(10, channels=args.channels, layers=args.layers, nodes=args.nodes, seed=0)
        steps[r] = SearchStep(net, drop_rate=r, seed=1)
        steps[r].set_epoch(0, 10)
        for _ in range(args.warmup):
            steps[r](x, y)
    times = {r: [] for r in rates}
    kept = {r: [] for r in rates}
    for _ in range(args.iters):
        for r in rates:
            start = time.perf_counter()
            steps[r](x, y)
            times[r].append(time.perf_counter() - start)
            masks = steps[r].last["masks"]
            kept[r].append(np.mean([m.sum(1).mean() for m in masks["normal"] + masks["reduce"]]))
    base = float(np.median(times[0.0]))
    print(f"supernet: {args.layers} cells, C={args.channels}, {args.nodes} nodes, batch {args.batch}, "
          f"{args.image_size}x{args.image_size}; median of {args.iters} steps")
    for r in rates:
        t = float(np.median(times[r]))
        print(f"r={r:<8g} step {t * 1000:9.1f} ms  kept ops/edge {np.mean(kept[r]):.2f}  "
              f"ratio no-dropout/this {base / t:.3f}")


if __name__ == "__main__":
    main()
