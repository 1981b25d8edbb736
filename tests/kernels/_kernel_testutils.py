"""Helpers for tests/kernels (imported by name; pytest puts this folder on sys.path)."""
import numpy as np

from _shared import needs_akg, needs_gxx


def close(a, b, rtol=1e-4, atol=1e-6):
    """max |a-b| within rtol of max |b| (the kernels' parity criterion)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    err = np.abs(a - b).max() if a.size else 0.0
    assert err <= rtol * np.abs(b).max() + atol, f"max abs err {err} vs max ref {np.abs(b).max()}"


needs_hybrid, needs_aot = needs_akg, needs_gxx  # the suite-wide markers (tests/_shared.py)
