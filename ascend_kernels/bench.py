"""Side-by-side CPU benchmark of the custom kernels against their references.

    python -m ascend_kernels.bench [--json] [--repeat R] [--quick]

Ratios are reference time / our time (> 1 means the custom kernel is faster):

* ``adder_fwd_vs_conv``     float Conv2d forward / adder custom forward (same shape)
* ``adder_fwd_vs_unfold``   composite (unfold) adder forward / custom forward
* ``adder_fwdbwd_vs_conv``  float conv forward+backward / adder custom forward+backward
* ``binary_packed_vs_float`` float conv / bit-packed binary conv (256 ch, 14x14, 3x3)
* ``dfc_fused_vs_composite`` composite DFC / fused DFC (eval mode, 40 -> 120 channels, 28x28;
  each timed call runs 8 DFC gates on 8 different inputs in one compiled graph, as inside a
  network, so the per-graph launch cost that dominates one small call is not what is compared)
* ``lif_custom_vs_composite`` only when ``ascend_kernels.lif`` provides ``bench_lif()``.
All runs use graph mode; the first calls (compiles) are excluded. Ratios use the minimum wall
time over the repeats (the machine may be shared); CPU times are printed too.
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


def _timeit(fn, repeat, name=None):
    """Minimum wall time over ``repeat`` calls (robust to other load on a shared machine); the
    median process CPU time per call is kept in CPU_TIMES[name]."""
    fn()
    fn()
    ts, cs = [], []
    for _ in range(repeat):
        c = time.process_time()
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
        cs.append(time.process_time() - c)
    if name:
        CPU_TIMES[name] = statistics.median(cs)
        print(f"[bench] {name}: min {min(ts) * 1e3:.2f} ms", file=sys.stderr, flush=True)
    return min(ts)


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
    from mindcv_ext.models.layers.adder_conv import AdderConv2d
    from mindcv_ext.models.layers.binary import PackedBinaryConv2d
    from mindcv_ext.models.layers.dfc_attention import DFCAttention

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
    times["adder_custom_fwd"] = _timeit(fwd(adders["custom"]), repeat, "adder_custom_fwd")
    times["adder_unfold_fwd"] = _timeit(fwd(adders["composite"]), max(2, repeat // 2), "adder_unfold_fwd")
    times["conv_fwd"] = _timeit(fwd(conv), repeat, "conv_fwd")
    times["adder_custom_fwdbwd"] = _timeit(fwdbwd(adders["custom"]), repeat, "adder_custom_fwdbwd")
    times["conv_fwdbwd"] = _timeit(fwdbwd(conv), repeat, "conv_fwdbwd")
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
    times["binary_packed"] = _timeit(lambda: packed(xb).asnumpy(), repeat, "binary_packed")
    times["binary_float_conv"] = _timeit(lambda: fconv(xb).asnumpy(), repeat, "binary_float_conv")
    res["binary_packed_vs_float"] = times["binary_float_conv"] / times["binary_packed"]

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
    times["dfc_fused"] = _timeit(lambda: chains["custom"](xd, gd).asnumpy(), repeat, "dfc_fused")
    times["dfc_composite"] = _timeit(lambda: chains["composite"](xd, gd).asnumpy(), repeat, "dfc_composite")
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
