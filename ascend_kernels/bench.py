"""Side-by-side CPU benchmark of the custom kernels against their references.

    python -m ascend_kernels.bench [--json] [--repeat R] [--quick]

Ratios are reference time / our time (> 1 means the custom kernel is faster):

* ``adder_fwd_vs_conv``     float Conv2d forward / adder custom forward (same shape)
* ``adder_fwd_vs_unfold``   composite (unfold) adder forward / custom forward
* ``adder_fwdbwd_vs_conv``  float conv forward+backward / adder custom forward+backward
* ``binary_packed_vs_float`` float conv / bit-packed binary conv (256 ch, 14x14, 3x3)
* ``dfc_fused_vs_composite`` composite DFC gate / fused DFC (eval mode)
* ``lif_custom_vs_composite`` only when ``ascend_kernels.lif`` provides ``bench_lif()``.
All runs use graph mode; the first calls (compiles) are excluded.
"""
import argparse
import importlib
import json
import statistics
import time

import numpy as np


def _timeit(fn, repeat):
    fn()
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def run(repeat=5, quick=False):
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
    times["adder_custom_fwd"] = _timeit(fwd(adders["custom"]), repeat)
    times["adder_unfold_fwd"] = _timeit(fwd(adders["composite"]), max(2, repeat // 2))
    times["conv_fwd"] = _timeit(fwd(conv), repeat)
    times["adder_custom_fwdbwd"] = _timeit(fwdbwd(adders["custom"]), repeat)
    times["conv_fwdbwd"] = _timeit(fwdbwd(conv), repeat)
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
    times["binary_packed"] = _timeit(lambda: packed(xb).asnumpy(), repeat)
    times["binary_float_conv"] = _timeit(lambda: fconv(xb).asnumpy(), repeat)
    res["binary_packed_vs_float"] = times["binary_float_conv"] / times["binary_packed"]

    # ---------------- DFC attention (eval)
    nd = 4 if quick else 8
    xd = Tensor(rng.standard_normal((nd, 40, 28, 28)).astype(np.float32))
    gd = Tensor(rng.standard_normal((nd, 120, 28, 28)).astype(np.float32))
    dfcs = {b: DFCAttention(40, 120, backend=b) for b in ("custom", "composite")}
    for p_c, p_f in zip(dfcs["composite"].get_parameters(), dfcs["custom"].get_parameters()):
        p_c.set_data(p_f.data)
    for c in dfcs.values():
        c.set_train(False)
    times["dfc_fused"] = _timeit(lambda: dfcs["custom"](xd, gd).asnumpy(), repeat)
    times["dfc_composite"] = _timeit(lambda: dfcs["composite"](xd, gd).asnumpy(), repeat)
    res["dfc_fused_vs_composite"] = times["dfc_composite"] / times["dfc_fused"]

    # ---------------- LIF (written elsewhere)
    try:
        lif = importlib.import_module("ascend_kernels.lif")
    except ImportError:
        lif = None
    if lif is not None and hasattr(lif, "bench_lif"):
        res["lif_custom_vs_composite"] = float(lif.bench_lif())
    return res, times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object with the ratios")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smaller batches")
    a = ap.parse_args(argv)
    res, times = run(a.repeat, a.quick)
    if a.json:
        print(json.dumps({k: round(v, 3) for k, v in res.items()}))
        return
    print("timings (median seconds):")
    for k, v in times.items():
        print(f"  {k:24s} {v * 1e3:9.2f} ms")
    print("ratios (reference time / our time):")
    for k, v in res.items():
        print(f"  {k:26s} {v:7.2f}x")


if __name__ == "__main__":
    main()
