"""Parameter and multiply-accumulate counting, and the per-layer table of ``mindcv-ext summary``.

MACs are counted with forward hooks in PyNative mode: ``nn.Conv2d`` and ``nn.Dense`` are counted
from their shapes; any Cell that defines ``macs(self, inputs, output) -> int`` is counted by that
method instead of by its children (for matmuls written with ops, custom kernels, ...). A Cell may
set ``mac_kind`` ("float", "binary", "adder", ...) so totals can be split by arithmetic kind.
"""
from collections import OrderedDict
from typing import Dict, List, Sequence

import numpy as np
import mindspore as ms
from mindspore import nn


def count_params(net: nn.Cell, trainable_only: bool = True) -> int:
    """Number of parameter elements (trainable only by default)."""
    params = net.trainable_params() if trainable_only else net.get_parameters()
    return int(sum(int(np.prod(p.shape)) for p in params))


def _conv_macs(cell: nn.Conv2d, output) -> int:
    k = cell.kernel_size if isinstance(cell.kernel_size, (tuple, list)) else (cell.kernel_size,) * 2
    per_out = (cell.in_channels // cell.group) * int(np.prod(k))
    return int(np.prod(output.shape)) * per_out


def _dense_macs(cell: nn.Dense, output) -> int:
    return int(np.prod(output.shape)) * cell.in_channels


def _counted_cells(net: nn.Cell):
    """(name, cell, counter) for the cells whose MACs are counted, outermost ``macs`` first."""
    chosen, covered = [], []
    for name, cell in net.cells_and_names():
        if any(name.startswith(prefix + ".") for prefix in covered):
            continue
        if callable(getattr(cell, "macs", None)):
            chosen.append((name, cell, lambda c, i, o: int(c.macs(i, o))))
            covered.append(name)
        elif isinstance(cell, nn.Conv2d):
            chosen.append((name, cell, lambda c, i, o: _conv_macs(c, o)))
        elif isinstance(cell, nn.Dense):
            chosen.append((name, cell, lambda c, i, o: _dense_macs(c, o)))
    return chosen


def _image_inputs(net: nn.Cell) -> int:
    """How many required positional inputs ``net.construct`` takes (at least 1)."""
    import inspect
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = inspect.signature(net.construct).parameters.values()
    return max(1, sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty))


def layer_table(net: nn.Cell, input_shape: Sequence[int]) -> List[Dict]:
    """Run one forward pass and return one row per counted layer call."""
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (N, C, H, W), got {tuple(input_shape)}")
    previous_mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rows, handles = [], []
    try:
        for name, cell, counter in _counted_cells(net):
            def hook(c, inputs, output, _name=name, _counter=counter):
                out = output[0] if isinstance(output, (tuple, list)) else output
                rows.append({"name": _name, "type": type(c).__name__, "output": tuple(out.shape),
                             "params": count_params(c, trainable_only=False),
                             "macs": _counter(c, inputs, output), "kind": getattr(c, "mac_kind", "float")})
            handles.append(cell.register_forward_hook(hook))
        was_training = net.training
        net.set_train(False)
        x = ms.Tensor(np.zeros(tuple(input_shape), np.float32))
        net(*([x] * _image_inputs(net)))   # multi-input models (TokenFusion): the same zeros for each
        net.set_train(was_training)
    finally:
        for handle in handles:
            handle.remove()
        ms.set_context(mode=previous_mode)
    return rows


def count_macs(net: nn.Cell, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass at ``input_shape`` (batch included)."""
    return int(sum(row["macs"] for row in layer_table(net, input_shape)))


def summarize(net: nn.Cell, input_shape: Sequence[int]) -> Dict:
    """Totals for ``mindcv-ext summary``: params, MACs split by kind, and the layer rows."""
    rows = layer_table(net, input_shape)
    by_kind: Dict[str, int] = OrderedDict()
    for row in rows:
        by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + row["macs"]
    return {"params": count_params(net), "params_all": count_params(net, trainable_only=False),
            "macs": int(sum(by_kind.values())), "macs_by_kind": dict(by_kind), "rows": rows}


def format_summary(info: Dict, model_name: str, input_shape: Sequence[int]) -> str:
    lines = [f"{'layer':<48} {'type':<22} {'output':<22} {'params':>12} {'MACs':>14}"]
    for row in info["rows"]:
        lines.append(f"{row['name'][:48]:<48} {row['type'][:22]:<22} {str(row['output']):<22} "
                     f"{row['params']:>12,} {row['macs']:>14,}")
    lines.append("-" * len(lines[0]))
    lines.append(f"{model_name}: params {info['params']:,} (trainable), {info['params_all']:,} (all); "
                 f"MACs {info['macs']:,} at input {tuple(input_shape)}")
    if len(info["macs_by_kind"]) > 1:
        lines.append("MACs by kind: " + ", ".join(f"{k} {v:,}" for k, v in info["macs_by_kind"].items()))
    return "\n".join(lines)
