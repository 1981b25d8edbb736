"""Export to MindIR/ONNX, then reload the file and check it reproduces the Cell before reporting."""
import os
from typing import Dict, Sequence

import numpy as np
import mindspore as ms
from mindspore import nn


class ExportMismatch(RuntimeError):
    """The exported file does not reproduce the Cell's outputs."""


def _run_mindir(path: str, x: np.ndarray) -> np.ndarray:
    graph = nn.GraphCell(ms.load(path))
    return graph(ms.Tensor(x)).asnumpy()


def _run_onnx(path: str, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def export_and_verify(net: nn.Cell, input_shape: Sequence[int], file_base: str, file_format: str = "MINDIR",
                      atol: float = 1e-4, rtol: float = 1e-4, seed: int = 0) -> Dict:
    """Export ``net`` (eval mode), reload it, compare outputs on a random input; return a report.

    Custom-kernel Cells switch to their composite twins for export (see ascend_kernels), so the
    file runs on any device.
    """
    file_format = file_format.upper()
    if file_format not in ("MINDIR", "ONNX"):
        raise ValueError(f"unknown export format '{file_format}' (MINDIR or ONNX)")
    if len(input_shape) != 4:
        raise ValueError(f"export.input_shape must be (N, C, H, W), got {list(input_shape)}")
    net.set_train(False)
    x = np.random.default_rng(seed).standard_normal(tuple(input_shape)).astype(np.float32)
    import ascend_kernels
    from .layers.gelu import set_gelu_export_mode
    with ascend_kernels.exporting():
        # ONNX has no Erf from MindSpore's exporter: exact GELUs switch to their erf-free form
        set_gelu_export_mode(net, erf_free=(file_format == "ONNX"))
        try:
            expected = net(ms.Tensor(x)).asnumpy()
            os.makedirs(os.path.dirname(os.path.abspath(file_base)) or ".", exist_ok=True)
            ms.export(net, ms.Tensor(x), file_name=file_base, file_format=file_format)
        finally:
            set_gelu_export_mode(net, erf_free=False)
    path = file_base + (".mindir" if file_format == "MINDIR" else ".onnx")
    if file_format == "MINDIR":
        got = _run_mindir(path, x)
    else:
        try:
            got = _run_onnx(path, x)
        except ImportError:
            return {"file": path, "format": file_format, "verified": False,
                    "reason": "onnxruntime is not installed (pip install onnxruntime) - file written, not checked"}
    if got.shape != expected.shape:
        raise ExportMismatch(f"{path}: output shape {got.shape} differs from the Cell's {expected.shape}")
    max_err = float(np.max(np.abs(got - expected)))
    agreement = float(np.mean(got.argmax(-1) == expected.argmax(-1))) if got.ndim == 2 else 1.0
    if not np.allclose(got, expected, atol=atol, rtol=rtol):
        raise ExportMismatch(f"{path}: outputs differ from the Cell by up to {max_err:.3g} "
                             f"(tolerance atol={atol}, rtol={rtol})")
    return {"file": path, "format": file_format, "verified": True, "max_abs_err": max_err, "agreement": agreement}
