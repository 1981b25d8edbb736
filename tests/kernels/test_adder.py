import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor

from ascend_kernels import _hybrid
from ascend_kernels.adder import numpy_reference
from mindcv_ext.layers.adder_conv import AdderConv2d

from _kernel_testutils import close, needs_hybrid

# (n, cin, cout, h, w, k, stride, pad, dilation, group)
FAST = [(2, 4, 6, 7, 6, 3, 1, 1, 1, 1), (1, 4, 4, 8, 9, 3, 2, 1, 1, 2)]
SLOW = [(2, 3, 4, 9, 9, 3, 1, 2, 2, 1), (1, 6, 6, 5, 5, 1, 2, 0, 1, 3)]


def _run(cfg, backend, eta=None, seed=0):
    n, cin, cout, h, w, k, s, p, d, g = cfg
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    layer = AdderConv2d(cin, cout, k, stride=s, padding=p, dilation=d, group=g,
                        adaptive_grad_eta=eta, backend=backend)
    wt = rng.standard_normal(layer.weight.shape).astype(np.float32)
    layer.weight.set_data(Tensor(wt))
    y = layer(Tensor(x)).asnumpy()
    dy = rng.standard_normal(y.shape).astype(np.float32)

    def loss(inp):
        return (layer(inp) * Tensor(dy)).sum()
    gx, (gw,) = ms.grad(loss, grad_position=0, weights=layer.trainable_params())(Tensor(x))
    return x, wt, dy, y, gx.asnumpy(), gw.asnumpy()


@pytest.mark.parametrize("cfg", FAST + SLOW)
def test_composite_matches_numpy_paper_formulas(cfg):
    n, cin, cout, h, w, k, s, p, d, g = cfg
    x, wt, dy, y, gx, gw = _run(cfg, "composite")
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ry, rgxp, rgw = numpy_reference(xp, wt, dy, s, d, g)
    close(y, ry, 1e-5)
    close(gx, rgxp[:, :, p:p + h, p:p + w], 1e-5)
    close(gw, rgw, 1e-5)


def test_composite_adaptive_eta():
    cfg = FAST[0]
    x, wt, dy, _, _, gw = _run(cfg, "composite", eta=0.2)
    p = cfg[7]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    _, _, rgw = numpy_reference(xp, wt, dy, 1, 1, 1, eta=0.2)
    close(gw, rgw, 1e-5)
    assert np.isclose(np.linalg.norm(gw), 0.2 * np.sqrt(gw.size), rtol=1e-4)


def test_zero_padding_counts_weight():
    layer = AdderConv2d(1, 1, 3, padding=1, backend="composite")
    layer.weight.set_data(Tensor(np.full((1, 1, 3, 3), 2.0, np.float32)))
    y = layer(Tensor(np.zeros((1, 1, 3, 3), np.float32))).asnumpy()
    assert np.all(y == -18.0)  # every tap (padded or not) contributes |0 - 2|


@needs_hybrid
@pytest.mark.parametrize("cfg", FAST + [pytest.param(c, marks=pytest.mark.slow) for c in SLOW])
def test_custom_matches_composite(cfg):
    a = _run(cfg, "custom")
    b = _run(cfg, "composite")
    for u, v in zip(a[3:], b[3:]):
        close(u, v)


@needs_hybrid
def test_custom_eta_and_bias():
    cfg = FAST[0]
    n, cin, cout, h, w, k, s, p, d, g = cfg
    a = _run(cfg, "custom", eta=0.2)
    b = _run(cfg, "composite", eta=0.2)
    close(a[5], b[5])
    layer = AdderConv2d(cin, cout, k, padding=p, has_bias=True, backend="custom")
    layer.bias.set_data(Tensor(np.arange(cout, dtype=np.float32)))
    x = Tensor(np.random.default_rng(1).standard_normal((n, cin, h, w)).astype(np.float32))
    ref = AdderConv2d(cin, cout, k, padding=p, has_bias=False, backend="custom")
    ref.weight.set_data(layer.weight.data)
    close(layer(x).asnumpy(), ref(x).asnumpy() + np.arange(cout).reshape(1, -1, 1, 1))


def _read_info(so_name):
    import os
    path = os.path.join(_hybrid.kernel_cache_dir(), so_name[:-3] + ".info")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def _adder_kernels():
    """{compiled adder kernel object: (mtime_ns, inode)} in the AKG cache dir of this process."""
    import os
    d = _hybrid.kernel_cache_dir()
    out = {}
    for f in _hybrid.compiled_kernel_files():
        if "adder_" in _read_info(f):
            st = os.stat(os.path.join(d, f))
            out[f] = (st.st_mtime_ns, st.st_ino)
    return out


_REUSE_SCRIPT = """
import sys
import numpy as np
import mindspore as ms
from mindspore import Tensor
from mindcv_ext.layers.adder_conv import AdderConv2d
n, cin, cout, h, w, k, s, p, d, g = {cfg}
layer = AdderConv2d(cin, cout, k, stride=s, padding=p, dilation=d, group=g, backend="custom")
x = Tensor(np.random.default_rng(5).standard_normal((n, cin, h, w)).astype(np.float32))
ms.grad(lambda a: layer(a).sum(), grad_position=0)(x)
print("ran")
"""


@needs_hybrid
def test_compile_cache_hit():
    """A kernel compiled once is reused: by a new layer of the same shape in this process (same
    primitive, no new object file) and by a new process pointed at the same cache (the object
    files are neither rebuilt nor rewritten)."""
    import os
    import subprocess
    import sys
    cfg = FAST[0]
    _run(cfg, "custom")  # compiled here or by an earlier test
    before = _adder_kernels()
    assert len(before) >= 2  # forward + input-gradient kernels exist
    reused = _hybrid.STATS["ops_reused"]
    _run(cfg, "custom", seed=3)  # new layer, same shapes, new values
    assert _adder_kernels() == before, "a kernel was rebuilt for an already compiled shape"
    assert _hybrid.STATS["ops_reused"] > reused  # primitives shared between layers
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, MS_COMPILER_CACHE_PATH=os.environ["MS_COMPILER_CACHE_PATH"], GLOG_v="3",
               PYTHONPATH=os.pathsep.join([repo] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.run([sys.executable, "-c", _REUSE_SCRIPT.format(cfg=cfg)], env=env, cwd=repo,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ran" in proc.stdout, proc.stderr[-2000:]
    assert _adder_kernels() == before, "a new process recompiled or rewrote a cached kernel"


@needs_hybrid
def test_graph_mode_custom():
    cfg = FAST[0]
    ref = _run(cfg, "custom")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        got = _run(cfg, "custom")
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    for u, v in zip(got[3:], ref[3:]):
        close(u, v)


def test_bad_inputs():
    layer = AdderConv2d(4, 4, 3, backend="composite")
    with pytest.raises(ValueError, match="4-D"):
        layer(Tensor(np.zeros((4, 5, 5), np.float32)))
    with pytest.raises(ValueError, match="channels"):
        layer(Tensor(np.zeros((1, 3, 5, 5), np.float32)))
    with pytest.raises(TypeError, match="float32"):
        layer(Tensor(np.zeros((1, 4, 5, 5), np.float16)))
    with pytest.raises(ValueError, match="too small"):
        layer(Tensor(np.zeros((1, 4, 2, 2), np.float32)))
    with pytest.raises(ValueError, match="divisible"):
        AdderConv2d(4, 6, 3, group=4)
    with pytest.raises(ValueError):
        AdderConv2d(4, 4, 3, backend="gpu")
