"""LIF neuron layer of SNN-MLP (``LIFSpike``): group LIF along H or W of an NCHW tensor.

The maths (group recurrence, hard reset, full-precision output ``u if u > Vth else Vth``,
pass-through of the incomplete tail group, gradients with the fire flag held constant) lives in
:mod:`ascend_kernels.lif`; this Cell owns the two learnable scalars and picks the backend:

* ``backend=None``: the global choice of :mod:`ascend_kernels` (``set_backend``,
  ``MINDCV_EXT_KERNELS``, default ``auto``); always the composite inside
  ``ascend_kernels.exporting()``;
* ``"custom"``: the Hybrid-DSL kernels (groups of 4 only);
* ``"composite"``: plain MindSpore ops (any group size, exportable).

Parameter names follow the official checkpoints: ``tau`` and ``Vth``, shape ``[1]`` each.
"""
from typing import Optional

import numpy as np
from mindspore import Parameter, Tensor, nn
from mindspore.ops import constexpr

from ascend_kernels import lif as _lif
from ascend_kernels import registry as _registry

__all__ = ["LIFSpike"]


@constexpr
def _runs_custom(backend, group) -> bool:
    """Evaluated in Python even while a graph is compiled, so ``ascend_kernels.exporting()`` and
    the global backend setting apply at compile time without parsing the registry as graph code."""
    return _lif.resolve_backend(backend, group) == "custom"


class LIFSpike(nn.Cell):
    """Group LIF over an NCHW tensor along ``dim`` (2 = H, "vertical"; 3 = W, "horizontal").

    Args:
        lif: group size (4 in SNN-MLP); ``-1`` makes the layer the identity (the official
            switch for "LIF off").
        dim: the axis the membrane runs along, 2 (H) or 3 (W).
        init_tau / init_vth: initial values of the learnable scalars. The defaults are those of
            the official neuron module (0.25 / -1.0); SNN-MLP's training script uses 0.25 / 0.1.
        fix_tau / fix_vth: keep the scalar frozen (``requires_grad=False``).
        backend: None, "custom", "composite" or "auto" (see the module docstring).
    """

    def __init__(self, lif: int = 4, dim: int = 2, init_tau: float = 0.25, init_vth: float = -1.0,
                 fix_tau: bool = False, fix_vth: bool = False, backend: Optional[str] = None):
        super().__init__()
        if isinstance(lif, bool) or not isinstance(lif, int) or not (lif == -1 or lif >= 1):
            raise ValueError(f"LIFSpike: lif (group size) must be a positive int or -1 (off), got {lif!r}")
        if dim not in (2, 3):
            raise ValueError(f"LIFSpike: dim must be 2 (along H) or 3 (along W) of an NCHW tensor, got {dim!r}")
        if backend is not None:
            _registry._check_name(backend)  # pylint: disable=protected-access
            if backend == "custom" and lif not in (-1, _lif.KERNEL_GROUP):
                raise ValueError(f"LIFSpike: the custom kernel handles groups of {_lif.KERNEL_GROUP}, "
                                 f"got lif={lif}; use backend='composite' or 'auto'")
        self.lif = lif
        self.dim = dim
        self.backend = backend
        self.tau = Parameter(Tensor(np.array([init_tau], np.float32)), name="tau", requires_grad=not fix_tau)
        self.Vth = Parameter(Tensor(np.array([init_vth], np.float32)), name="Vth", requires_grad=not fix_vth)
        # The Custom primitive must exist before a graph is built; creating it compiles nothing.
        self._custom = _lif.custom_op() if backend != "composite" and lif == _lif.KERNEL_GROUP else None

    def use_custom(self) -> bool:
        """Whether this call runs the custom kernel (decided per call, so export can switch)."""
        return _runs_custom(self.backend, self.lif)

    def construct(self, x):
        if self.lif == -1:
            return x
        if x.ndim != 4:
            raise ValueError("LIFSpike expects an NCHW tensor")
        if self._custom is not None and self.use_custom():
            return _lif.apply_custom(self._custom, x, self.tau, self.Vth, self.dim)
        return _lif.lif_composite(x, self.tau, self.Vth, self.dim, self.lif)

    def extend_repr(self):
        return f"lif={self.lif}, dim={self.dim}, backend={self.backend}"

