"""Exact (erf) GELU with an erf-free twin for exporters that lack an ``Erf`` operator.

``nn.GELU()`` in MindSpore 2.x defaults to the tanh approximation, while the PyTorch reference
models use the erf form. ``GELU`` here always computes the erf form. By default it calls the
fused ``ops.gelu(approximate='none')`` kernel; ``set_gelu_export_mode(net, True)`` switches every
``GELU`` inside ``net`` to a formulation made only of Abs/Exp/Div/Where, which MindSpore's ONNX
exporter can write. That formulation uses the Abramowitz-Stegun 7.1.26 rational approximation
of erf (absolute error below 1.5e-7, i.e. at float32 rounding level for GELU outputs).
"""
import math

from mindspore import nn, ops

# Abramowitz & Stegun, Handbook of Mathematical Functions, formula 7.1.26.
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def gelu_erf_free(x):
    """x * Phi(x) with Phi from the A&S 7.1.26 erf approximation (no Erf/Sign operators)."""
    z = ops.abs(x) * _INV_SQRT2
    t = 1.0 / (1.0 + _AS_P * z)
    poly = _AS_A[4]
    for coef in (_AS_A[3], _AS_A[2], _AS_A[1], _AS_A[0]):
        poly = poly * t + coef
    tail = 0.5 * poly * t * ops.exp(-z * z)  # = 0.5 * (1 - erf(|x| / sqrt 2))
    cdf = ops.where(x >= 0, 1.0 - tail, tail)
    return x * cdf


class GELU(nn.Cell):
    """GELU with the exact erf form (never the tanh approximation)."""

    def __init__(self):
        super().__init__()
        self.erf_free = False

    def construct(self, x):
        if self.erf_free:
            return gelu_erf_free(x)
        return ops.gelu(x, approximate="none")

    def extend_repr(self):
        return "erf_free=True" if self.erf_free else ""


def set_gelu_export_mode(net: nn.Cell, erf_free: bool = True) -> int:
    """Switch every ``GELU`` in ``net`` to (or back from) the erf-free form; returns how many."""
    count = 0
    for _, cell in net.cells_and_names():
        if isinstance(cell, GELU):
            cell.erf_free = bool(erf_free)
            count += 1
    return count
