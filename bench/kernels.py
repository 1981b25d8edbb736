"""Side-by-side CPU benchmark of the custom kernels against their references.

    python -m bench.kernels [--json] [--repeat R] [--quick]

Ratios are reference time / our time (> 1 means the custom kernel is faster):

* ``adder_fwd_vs_conv``     float Conv2d forward / adder custom forward (same shape)
* ``adder_fwd_vs_unfold``   composite (unfold) adder forward / custom forward
* ``adder_fwdbwd_vs_conv``  float conv forward+backward / adder custom forward+backward
* ``binary_packed_vs_float`` float conv / bit-packed binary conv (256 ch, 14x14, 3x3); the
  timings also list the packed kernel called directly, without the graph launch
* ``dfc_fused_vs_composite`` composite DFC / fused DFC (eval mode, 40 -> 120 channels, 28x28;
  each timed call runs 8 DFC gates on 8 different inputs in one compiled graph, as inside a
  network, so the per-graph launch cost that dominates one small call is not what is compared)
* ``lif_custom_vs_composite`` only when ``ascend_kernels.lif`` provides ``bench_lif()``.
All runs use graph mode; the first calls (compiles) are excluded. Each pair being compared is
timed interleaved (one call of each per round), and ratios use the minimum wall time over the
rounds (the machine may be shared); CPU times are printed too.
"""
import argparse
import importlib
import json
import statistics
import sys
import time

import numpy as np
import mindspore.nn as nn


CPU_TIMES = {}


def _timeit_interleaved(fns, repeat):
    """Minimum wall time per function over ``repeat`` rounds, calling the functions in turn each
    round, so a burst of outside load hits all of them alike."""
    for fn in fns.values():
        fn()
        fn()
    best = {k: float("inf") for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            c = time.process_time()
            t = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    for k in fns:
        CPU_TIMES[k] = statistics.median(cpu[k])
        print(f"[bench] {k}: min {best[k] * 1e3:.2f} ms", file=sys.stderr, flush=True)
    return best


def _timeit(fn, repeat, name):
    return _timeit_interleaved({name: fn}, repeat)[name]


class DFCChain(nn.Cell):
    """``g <- dfc(x_i, g)`` for each of the inputs ``xs``, in one graph (distinct inputs, so no
    step can be shared between calls)."""

    def __init__(self, dfc):
        super().__init__()
        self.dfc = dfc

    def construct(self, xs, g):
        for x in xs:
            g = self.dfc(x, g)
        return g


def run(repeat=10, quick=False):
    import mindspore as ms
    import mindspore.nn as nn
    import mindspore.ops as ops
    from mindspore import Tensor

    ms.set_context(mode=ms.GRAPH_MODE)
    from mindcv_ext.layers.adder_conv import AdderConv2d
    from mindcv_ext.layers.binary import PackedBinaryConv2d
    from mindcv_ext.layers.dfc_attention import DFCAttention

    rng = np.random.default_rng(0)
    res, times = {}, {}

    # ---------------- adder conv
    n = 4 if quick else 8
    x = Tensor(rng.standard_normal((n, 64, 16, 16)).astype(np.float32))
    adders = {b: AdderConv2d(64, 64, 3, padding=1, backend=b) for b in ("custom", "composite")}
    adders["composite"].weight.set_data(adders["custom"].weight.data)
    conv = nn.Conv2d(64, 64, 3, pad_mode="pad", padding=1, has_bias=False)

    def fwd(cell):
        return lambda: cell(x).asnumpy()

    def fwdbwd(cell):
        gf = ms.value_and_grad(cell, grad_position=0, weights=cell.trainable_params())

        def f():
            out, (gx, gw) = gf(x)
            gx.asnumpy()
            return out
        return f
    times.update(_timeit_interleaved({"adder_custom_fwd": fwd(adders["custom"]), "conv_fwd": fwd(conv)},
                                     2 * repeat))
    times["adder_unfold_fwd"] = _timeit(fwd(adders["composite"]), max(2, repeat // 2), "adder_unfold_fwd")
    times.update(_timeit_interleaved({"adder_custom_fwdbwd": fwdbwd(adders["custom"]),
                                      "conv_fwdbwd": fwdbwd(conv)}, 2 * repeat))
    res["adder_fwd_vs_conv"] = times["conv_fwd"] / times["adder_custom_fwd"]
    res["adder_fwd_vs_unfold"] = times["adder_unfold_fwd"] / times["adder_custom_fwd"]
    res["adder_fwdbwd_vs_conv"] = times["conv_fwdbwd"] / times["adder_custom_fwdbwd"]

    # ---------------- packed binary conv: 256 channels, 14x14, 3x3
    nb = 4 if quick else 8
    w = rng.standard_normal((256, 256, 3, 3)).astype(np.float32)
    xb = Tensor(rng.standard_normal((nb, 256, 14, 14)).astype(np.float32))
    packed = PackedBinaryConv2d(w, padding=1, backend="custom")
    fconv = nn.Conv2d(256, 256, 3, pad_mode="pad", padding=1, has_bias=False)
    fconv.weight.set_data(Tensor(np.where(w >= 0, 1.0, -1.0).astype(np.float32)))
    # short calls: more rounds, interleaved
    times.update(_timeit_interleaved({"binary_packed": lambda: packed(xb).asnumpy(),
                                      "binary_float_conv": lambda: fconv(xb).asnumpy()}, 4 * repeat))
    res["binary_packed_vs_float"] = times["binary_float_conv"] / times["binary_packed"]
    # the same kernel called directly (no graph launch): shows the framework's share of a call
    from ascend_kernels import aot
    so = aot.build("binconv")
    args = [xb.asnumpy()] + [t.asnumpy() for t in (packed.wpack, packed.wsum, packed.cfg, packed.act, packed.wsc)]
    times["binary_kernel_only"] = _timeit(lambda: aot.call(so, "BinaryConvPacked", args, (nb, 256, 14, 14)),
                                          4 * repeat, "binary_kernel_only")

    # ---------------- DFC attention (eval)
    nd = 4 if quick else 8
    xd = tuple(Tensor(rng.standard_normal((nd, 40, 28, 28)).astype(np.float32)) for _ in range(8))
    gd = Tensor(rng.standard_normal((nd, 120, 28, 28)).astype(np.float32))
    dfcs = {b: DFCAttention(40, 120, backend=b) for b in ("custom", "composite")}
    for p_c, p_f in zip(dfcs["composite"].get_parameters(), dfcs["custom"].get_parameters()):
        p_c.set_data(p_f.data)
    chains = {}
    for b, c in dfcs.items():
        c.set_train(False)
        chains[b] = DFCChain(c)
    times.update(_timeit_interleaved({"dfc_fused": lambda: chains["custom"](xd, gd).asnumpy(),
                                      "dfc_composite": lambda: chains["composite"](xd, gd).asnumpy()},
                                     2 * repeat))
    res["dfc_fused_vs_composite"] = times["dfc_composite"] / times["dfc_fused"]

    return res, times


def run_lif():
    """``ascend_kernels.lif.bench_lif()`` when that module (written elsewhere) exists, else None."""
    try:
        lif = importlib.import_module("ascend_kernels.lif")
    except ImportError:
        return None
    if not hasattr(lif, "bench_lif"):
        return None
    return float(lif.bench_lif())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object with the ratios")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="smaller batches")
    ap.add_argument("--skip-lif", action="store_true", help="do not run ascend_kernels.lif.bench_lif")
    a = ap.parse_args(argv)
    res, times = run(a.repeat, a.quick)
    if a.json:
        lif = None if a.skip_lif else run_lif()
        if lif is not None:
            res["lif_custom_vs_composite"] = lif
        print(json.dumps({k: round(v, 3) for k, v in res.items()}))
        return
    print("timings (min wall time per call):")
    for k, v in times.items():
        print(f"  {k:24s} {v * 1e3:9.2f} ms")
    print("process CPU time per call (median):")
    for k, v in CPU_TIMES.items():
        print(f"  {k:24s} {v * 1e3:9.2f} ms")
    print("ratios (reference time / our time, min wall time):")
    for k, v in res.items():
        print(f"  {k:26s} {v:7.2f}x", flush=True)
    lif = None if a.skip_lif else run_lif()
    if lif is not None:
        print(f"  {'lif_custom_vs_composite':26s} {lif:7.2f}x")


if __name__ == "__main__":
    main()
