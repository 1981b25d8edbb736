"""FastMIM's speed claim as one measured ratio: pre-training step time at low vs full resolution.

    python bench/bench_mim.py                                       # tiny CPU ViT: 32 px vs 56 px, batch 16
    python bench/bench_mim.py --model vit_base_patch16_224 --low 128 --full 224 --batch 8
    python bench/bench_mim.py --model swin_base_patch4_window7_224 --low 128 --full 256 --batch 4

The same MIM model (the backbone's FastMIM recipe; sin-cos / per-resolution Swin masks make it
resolution-agnostic) and batch are trained at both sizes with AdamW(0.9, 0.95) in graph mode:
one compile per resolution (as one per FastMIM-P phase), ``--warmup`` untimed steps, then
``--iters`` timed steps interleaved between the two sizes so machine load hits both alike.
Swin with window 4 needs sizes whose stage maps are multiples of 4 (128, 256, ...).
Prints per-size ms/step and full/low ratio; numbers depend on the machine and its load.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mindspore as ms  # noqa: E402
from mindspore import nn  # noqa: E402

from mindcv_ext.mim import block_mask, create_mim_model  # noqa: E402


def make_step(model_name: str):
    net = create_mim_model(model_name)
    opt = nn.AdamWeightDecay(net.trainable_params(), learning_rate=1e-4, beta1=0.9, beta2=0.95, weight_decay=0.05)
    return net, nn.TrainOneStepCell(net, opt)


def inputs(net, batch: int, size: int, rng):
    net.check_input_size(size, size)
    images = ms.Tensor(rng.standard_normal((batch, 3, size, size)).astype(np.float32))
    grid = size // net.mask_block
    return images, ms.Tensor(block_mask(batch, (grid, grid), 0.75, rng))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_pico_patch8_56")
    parser.add_argument("--low", type=int, default=32)
    parser.add_argument("--full", type=int, default=56)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--pynative", action="store_true", help="run eagerly instead of compiling")
    parser.add_argument("--device", default=None, help="CPU, GPU or Ascend (default: MindSpore's choice)")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.iters < 1 or args.warmup < 0:
        parser.error("--batch and --iters must be >= 1, --warmup >= 0")
    ms.set_context(mode=ms.PYNATIVE_MODE if args.pynative else ms.GRAPH_MODE)
    if args.device:
        ms.set_context(device_target=args.device)
    rng = np.random.default_rng(0)
    net, step = make_step(args.model)
    batches = {size: inputs(net, args.batch, size, rng) for size in (args.low, args.full)}
    for size, batch in batches.items():
        start = time.perf_counter()
        step(*batch).asnumpy()
        print(f"{args.model} {size}px: first step (compile) {time.perf_counter() - start:.1f} s")
        for _ in range(args.warmup):
            step(*batch).asnumpy()
    spent = {size: 0.0 for size in batches}
    for _ in range(args.iters):
        for size, batch in batches.items():
            start = time.perf_counter()
            step(*batch).asnumpy()
            spent[size] += time.perf_counter() - start
    low_ms, full_ms = (spent[s] / args.iters * 1000 for s in (args.low, args.full))
    print(f"{args.model} batch {args.batch}: {args.low}px {low_ms:.1f} ms/step, {args.full}px {full_ms:.1f} ms/step")
    print(f"ratio full/low = {full_ms / low_ms:.2f} (token ratio {(args.full / args.low) ** 2:.2f})")


if __name__ == "__main__":
    main()
