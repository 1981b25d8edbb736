import pytest

import ascend_kernels
from ascend_kernels import registry

from _shared import needs_akg


def test_default_auto(monkeypatch):
    monkeypatch.delenv("MINDCV_EXT_KERNELS", raising=False)
    assert ascend_kernels.get_backend() == "auto"
    expect = "custom" if ascend_kernels.kind_available("hybrid") else "composite"
    assert ascend_kernels.resolve(None, "hybrid") == expect


def test_env_and_set_backend(monkeypatch):
    monkeypatch.setenv("MINDCV_EXT_KERNELS", "composite")
    assert ascend_kernels.get_backend() == "composite"
    assert not ascend_kernels.use_custom()
    ascend_kernels.set_backend("custom")  # explicit call wins over env
    assert ascend_kernels.resolve() == "custom"
    assert ascend_kernels.resolve("composite") == "composite"  # per-layer choice wins
    ascend_kernels.set_backend(None)
    assert ascend_kernels.get_backend() == "composite"
    monkeypatch.setenv("MINDCV_EXT_KERNELS", "bogus")
    with pytest.raises(ValueError, match="MINDCV_EXT_KERNELS"):
        ascend_kernels.get_backend()


def test_bad_name():
    with pytest.raises(ValueError):
        ascend_kernels.set_backend("fast")
    with pytest.raises(ValueError):
        ascend_kernels.resolve("gpu")


def test_export_forces_composite():
    ascend_kernels.set_backend("custom")
    with ascend_kernels.exporting():
        assert ascend_kernels.resolve("custom") == "composite"
        assert ascend_kernels.is_exporting()
    assert ascend_kernels.resolve() == "custom"


def test_apply_config():
    ascend_kernels.apply_config({"kernels": "composite"})
    assert ascend_kernels.get_backend() == "composite"
    ascend_kernels.apply_config({"kernels": {"backend": "custom"}})
    assert ascend_kernels.get_backend() == "custom"
    ascend_kernels.apply_config({"kernel_backend": "auto"})
    assert ascend_kernels.get_backend() == "auto"
    ascend_kernels.apply_config({})
    assert ascend_kernels.get_backend() == "auto"


def test_kinds(monkeypatch, tmp_path):
    """kind_available follows what is installed: AKG's CPU plugin for hybrid, g++ for aot_cpu."""
    import importlib.util
    import os
    ms_root = os.path.dirname(importlib.util.find_spec("mindspore").origin)
    akg = os.path.isdir(os.path.join(ms_root, "_akg", "akg"))

    def plugin(target):
        return akg and os.path.isfile(os.path.join(ms_root, "lib", "plugin", target, "libakg.so"))
    assert ascend_kernels.kind_available("hybrid", "CPU") is plugin("cpu")
    assert ascend_kernels.kind_available("hybrid", "Ascend") is plugin("ascend")
    assert ascend_kernels.kind_available("hybrid", "NoSuchTarget") is False
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    assert ascend_kernels.kind_available("aot_cpu", "CPU") is False
    fake = tmp_path / "fake-cxx"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    assert ascend_kernels.kind_available("aot_cpu", "CPU") is True
    assert ascend_kernels.kind_available("aot_cpu", "Ascend") is False  # CPU kernels only
    with pytest.raises(ValueError):
        registry.kind_available("tbe")


@needs_akg
def test_auto_backend_resolves_inside_a_compiled_step():
    """``kernels: auto`` is resolved when the graph compiles (custom adder kernel here)."""
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor
    from mindcv_ext.layers.adder_conv import AdderConv2d
    from ascend_kernels.adder import numpy_reference

    ascend_kernels.set_backend("auto")
    layer = AdderConv2d(3, 4, 3, padding=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    step = ms.jit(ms.value_and_grad(layer, grad_position=0))
    for _ in range(5):
        y, gx = step(Tensor(x))
    w = layer.weight.asnumpy()
    y_ref, gx_ref, _ = numpy_reference(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), w,
                                       np.ones(y.shape, np.float32))
    np.testing.assert_allclose(y.asnumpy(), y_ref, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(gx.asnumpy(), gx_ref[:, :, 1:7, 1:7], rtol=1e-4, atol=1e-4)
