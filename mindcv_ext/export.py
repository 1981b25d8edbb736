"""Export to MindIR/ONNX, then reload the file and check it reproduces the Cell, for every output,
before reporting success. A file that fails the check does not stay behind under its name."""
import os
from typing import Dict

import numpy as np
import mindspore as ms
from mindspore import nn


class ExportMismatch(RuntimeError):
    """The exported file does not reproduce the Cell's outputs."""


class ExportUnverified(RuntimeError):
    """The exported file could not be checked (no runtime for the format)."""


def _as_list(out):
    """Every output as a flat list of arrays (nested tuples, e.g. per-stage score maps, flattened)."""
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _as_list(o)]
    return [out.asnumpy() if hasattr(out, "asnumpy") else np.asarray(out)]


def _run_mindir(path: str, inputs):
    graph = nn.GraphCell(ms.load(path))
    return _as_list(graph(*[ms.Tensor(x) for x in inputs]))


def _run_onnx(path: str, inputs):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {i.name: x for i, x in zip(session.get_inputs(), inputs)}
    return list(session.run(None, feeds))


def export_and_verify(net: nn.Cell, inputs, file_base: str, file_format: str = "MINDIR",
                      atol: float = 1e-4, rtol: float = 1e-4, verify: bool = True) -> Dict:
    """Export ``net`` (eval mode) with example ``inputs`` (a list of arrays, one per Cell input,
    their batch being the verification batch; or one input shape for a random batch), reload it,
    compare every output; return a report.

    Custom-kernel Cells switch to their composite twins for export (see ascend_kernels), so the
    file runs on any device. On a mismatch the file is renamed to ``<file>.unverified`` and
    :class:`ExportMismatch` is raised; ``verify=False`` skips the check (reported as such).
    """
    file_format = file_format.upper()
    if file_format not in ("MINDIR", "ONNX"):
        raise ValueError(f"unknown export format '{file_format}' (MINDIR or ONNX)")
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(d, (int, np.integer)) for d in inputs):
        if len(inputs) < 2 or min(inputs) < 1:
            raise ValueError(f"export input_shape must be (N, ...) with positive sizes, got {list(inputs)}")
        inputs = [np.random.default_rng(0).standard_normal(tuple(inputs)).astype(np.float32)]
    if isinstance(inputs, np.ndarray) or not isinstance(inputs, (list, tuple)) or not inputs:
        raise ValueError("export inputs must be a list of arrays (one per model input) or one input shape, "
                         f"got {type(inputs).__name__}")
    inputs = [np.asarray(x) for x in inputs]
    net.set_train(False)
    import ascend_kernels
    from .layers.gelu import set_gelu_export_mode
    path = file_base + (".mindir" if file_format == "MINDIR" else ".onnx")
    with ascend_kernels.exporting():
        # ONNX has no Erf from MindSpore's exporter: exact GELUs switch to their erf-free form
        set_gelu_export_mode(net, erf_free=(file_format == "ONNX"))
        try:
            expected = _as_list(net(*[ms.Tensor(x) for x in inputs]))
            os.makedirs(os.path.dirname(os.path.abspath(file_base)) or ".", exist_ok=True)
            ms.export(net, *[ms.Tensor(x) for x in inputs], file_name=file_base, file_format=file_format)
        finally:
            set_gelu_export_mode(net, erf_free=False)
    report = {"file": path, "format": file_format, "outputs": len(expected), "batch": int(inputs[0].shape[0])}
    if not verify:
        return dict(report, verified=False, reason="verification skipped (--no-verify)")
    try:
        got = _run_mindir(path, inputs) if file_format == "MINDIR" else _run_onnx(path, inputs)
    except ImportError as err:
        _set_aside(path)
        raise ExportUnverified(f"{path}: cannot verify an ONNX file without onnxruntime (pip install onnxruntime), "
                               "or pass --no-verify; the file was kept as " + path + ".unverified") from err
    problems, max_err = [], 0.0
    if len(got) != len(expected):
        problems.append(f"{len(got)} outputs instead of {len(expected)}")
    for i, (g, e) in enumerate(zip(got, expected)):
        if g.shape != e.shape:
            problems.append(f"output {i}: shape {g.shape} vs the Cell's {e.shape}")
            continue
        err = float(np.max(np.abs(g.astype(np.float64) - e))) if e.size else 0.0
        max_err = max(max_err, err)
        if not np.allclose(g, e, atol=atol, rtol=rtol):
            problems.append(f"output {i} differs by up to {err:.3g} (atol={atol}, rtol={rtol})")
    if problems:
        _set_aside(path)
        raise ExportMismatch(f"{path}: the reloaded file does not reproduce the Cell: {'; '.join(problems)}; "
                             f"kept as {path}.unverified")
    first = expected[0]
    agreement = float(np.mean(got[0].argmax(-1) == first.argmax(-1))) if first.ndim == 2 else 1.0
    return dict(report, verified=True, max_abs_err=max_err, agreement=agreement)


def _set_aside(path: str) -> None:
    if os.path.exists(path):
        os.replace(path, path + ".unverified")
