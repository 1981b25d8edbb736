"""Group LIF (leaky integrate-and-fire) recurrence of SNN-MLP as a custom operator.

The recurrence runs along one axis of length ``L`` in consecutive groups of ``s`` positions
(``s = 4`` in SNN-MLP); the membrane starts at 0 in every group and the incomplete tail group
passes through unchanged. Inside a group, for j = 0..s-1 (m_0 = 0)::

    u_j     = tau * m_j + x_j
    f_j     = u_j > Vth                    (strict)
    m_{j+1} = 0 if f_j else u_j            (hard reset)
    y_j     = u_j if f_j else Vth

The backward pass holds the fire flag ``f`` constant (no surrogate), as the official CUDA
kernel does (facts from the official SNN-MLP code)::

    g_j    = dL/du_j = f_j * dy_j + (1 - f_j) * tau * g_{j+1}     (g_s = 0)
    dx_j   = g_j
    dtau   = sum_j g_j * m_j
    dVth   = sum_j (1 - f_j) * dy_j

Every kernel works on a 3-D view ``(A, L, B)`` of the input with the recurrence along the
middle axis, so one kernel serves both directions of an NCHW tensor: along H the view is
``(N*C, H, W)``, along W it is ``(N*C*H, W, 1)``. Both views are free reshapes.

Two implementations with the same maths:

* ``custom`` (groups of 4 only): one Hybrid-DSL kernel forward (``lif_fwd_kernel``) and one
  backward (``lif_bwd_kernel``) compiled by the AKG bundled with MindSpore, once per input
  shape; the backward recomputes the membrane from ``x`` instead of saving it.
* ``composite`` (any group size): strided slices and ``ops.where`` only; it runs in every mode
  and exports to MindIR.

``lif(..., backend=None)`` picks one through :mod:`ascend_kernels.registry` (always composite
inside ``registry.exporting()``). ``bench_lif()`` measures forward+backward of both and returns
the speed-up of ``custom``; ``lif_reference`` is a float64 numpy oracle.
"""
import time
from typing import Optional, Tuple

import numpy as np
import mindspore as ms
from mindspore import Tensor, ops
from mindspore.ops import kernel

from . import registry
from ._hybrid import ensure_cache_path


# --------------------------------------------------------------------------------------------
# Hybrid DSL kernels for groups of 4 (the SNN-MLP setting). A group is written out step by
# step with single-assignment temporaries and selects (``a if c else b``): branch-free code of
# this form is what the AKG polyhedral scheduler on CPU handles reliably (loop-carried scalars,
# data-dependent ``if``, read-modify-write reductions through an output and multi-output
# kernels were rejected or mis-compiled). Where the group axis is not the contiguous one, each
# step j is one store statement over the contiguous axis, so the scheduler keeps one vectorised
# pass instead of splitting the group into four passes. Loops whose extent may be 0 sit behind
# compile-time ``if`` guards on shapes, which the parser folds. Both kernels run in float32.
# --------------------------------------------------------------------------------------------
KERNEL_GROUP = 4


@kernel
def lif_fwd_kernel(x, tau, vth):
    y = output_tensor(x.shape, x.dtype)
    for a in parallel(x.shape[0]):
        if x.shape[1] >= 4:
            if x.shape[2] == 1:
                # recurrence along the contiguous axis: one group per iteration, four stores
                for g in range(x.shape[1] // 4):
                    u0 = x[a, 4 * g, 0]
                    u1 = tau[0] * (0.0 if u0 > vth[0] else u0) + x[a, 4 * g + 1, 0]
                    u2 = tau[0] * (0.0 if u1 > vth[0] else u1) + x[a, 4 * g + 2, 0]
                    u3 = tau[0] * (0.0 if u2 > vth[0] else u2) + x[a, 4 * g + 3, 0]
                    y[a, 4 * g, 0] = u0 if u0 > vth[0] else vth[0]
                    y[a, 4 * g + 1, 0] = u1 if u1 > vth[0] else vth[0]
                    y[a, 4 * g + 2, 0] = u2 if u2 > vth[0] else vth[0]
                    y[a, 4 * g + 3, 0] = u3 if u3 > vth[0] else vth[0]
            else:
                # one store statement per step j, vectorised along the contiguous axis b
                for g in range(x.shape[1] // 4):
                    for j in range(4):
                        for b in range(x.shape[2]):
                            v0 = x[a, 4 * g, b]
                            v1 = tau[0] * (0.0 if v0 > vth[0] else v0) + x[a, 4 * g + 1, b]
                            v2 = tau[0] * (0.0 if v1 > vth[0] else v1) + x[a, 4 * g + 2, b]
                            v3 = tau[0] * (0.0 if v2 > vth[0] else v2) + x[a, 4 * g + 3, b]
                            vj = v0 if j == 0 else (v1 if j == 1 else (v2 if j == 2 else v3))
                            y[a, 4 * g + j, b] = vj if vj > vth[0] else vth[0]
        if x.shape[1] % 4 > 0:
            for t in range(x.shape[1] % 4):
                for b in range(x.shape[2]):
                    y[a, x.shape[1] - x.shape[1] % 4 + t, b] = x[a, x.shape[1] - x.shape[1] % 4 + t, b]
    return y


@kernel
def lif_bwd_kernel(x, tau, vth, dy):
    # One flat output of n + 2m values, n = A*L*B, m = A*G*B, G = L // 4: first dx in the
    # layout of x, then the per-group terms of dtau, then those of dVth, each (A, G, B); the
    # caller sums the two tails. The membrane is recomputed from x rather than saved.
    out = output_tensor((x.shape[0] * x.shape[2] * (x.shape[1] + 2 * (x.shape[1] // 4)),), x.dtype)
    for a in parallel(x.shape[0]):
        if x.shape[1] >= 4:
            for g in range(x.shape[1] // 4):
                for j in range(4):
                    for b in range(x.shape[2]):
                        u0 = x[a, 4 * g, b]
                        u1 = tau[0] * (0.0 if u0 > vth[0] else u0) + x[a, 4 * g + 1, b]
                        u2 = tau[0] * (0.0 if u1 > vth[0] else u1) + x[a, 4 * g + 2, b]
                        u3 = tau[0] * (0.0 if u2 > vth[0] else u2) + x[a, 4 * g + 3, b]
                        g3 = dy[a, 4 * g + 3, b] if u3 > vth[0] else 0.0
                        g2 = dy[a, 4 * g + 2, b] if u2 > vth[0] else tau[0] * g3
                        g1 = dy[a, 4 * g + 1, b] if u1 > vth[0] else tau[0] * g2
                        g0 = dy[a, 4 * g, b] if u0 > vth[0] else tau[0] * g1
                        out[(a * x.shape[1] + 4 * g + j) * x.shape[2] + b] = \
                            g0 if j == 0 else (g1 if j == 1 else (g2 if j == 2 else g3))
                for k in range(2):
                    for b in range(x.shape[2]):
                        w0 = x[a, 4 * g, b]
                        w1 = tau[0] * (0.0 if w0 > vth[0] else w0) + x[a, 4 * g + 1, b]
                        w2 = tau[0] * (0.0 if w1 > vth[0] else w1) + x[a, 4 * g + 2, b]
                        w3 = tau[0] * (0.0 if w2 > vth[0] else w2) + x[a, 4 * g + 3, b]
                        h3 = dy[a, 4 * g + 3, b] if w3 > vth[0] else 0.0
                        h2 = dy[a, 4 * g + 2, b] if w2 > vth[0] else tau[0] * h3
                        h1 = dy[a, 4 * g + 1, b] if w1 > vth[0] else tau[0] * h2
                        # k = 0: dtau term sum_j g_j m_j; k = 1: dVth term sum_j (1 - f_j) dy_j
                        out[x.shape[0] * x.shape[2] * (x.shape[1] + k * (x.shape[1] // 4))
                            + (a * (x.shape[1] // 4) + g) * x.shape[2] + b] = \
                            (h1 * (0.0 if w0 > vth[0] else w0) + h2 * (0.0 if w1 > vth[0] else w1)
                             + h3 * (0.0 if w2 > vth[0] else w2)) if k == 0 else \
                            ((0.0 if w0 > vth[0] else dy[a, 4 * g, b])
                             + (0.0 if w1 > vth[0] else dy[a, 4 * g + 1, b])
                             + (0.0 if w2 > vth[0] else dy[a, 4 * g + 2, b])
                             + (0.0 if w3 > vth[0] else dy[a, 4 * g + 3, b]))
        if x.shape[1] % 4 > 0:
            for t in range(x.shape[1] % 4):
                for b in range(x.shape[2]):
                    out[(a * x.shape[1] + x.shape[1] - x.shape[1] % 4 + t) * x.shape[2] + b] = \
                        dy[a, x.shape[1] - x.shape[1] % 4 + t, b]
    return out


# --------------------------------------------------------------------------------------------
# Custom operators (built lazily: building them parses the kernels)
# --------------------------------------------------------------------------------------------
_OPS = {}


def _custom_ops():
    """The forward Custom op (its bprop calls the backward Custom op), built once."""
    if not _OPS:
        ensure_cache_path()
        bwd = ops.Custom(
            lif_bwd_kernel,
            out_shape=lambda x, t, v, d: [x[0] * x[2] * (x[1] + 2 * (x[1] // KERNEL_GROUP))],
            out_dtype=lambda x, t, v, d: x,
            func_type="hybrid")

        def bprop(x, tau, vth, out, dout):
            packed = bwd(x, tau, vth, dout)
            n = x.size
            m = x.shape[0] * x.shape[2] * (x.shape[1] // KERNEL_GROUP)
            dx = packed[:n].reshape(x.shape)
            if m == 0:
                zero = ops.zeros((1,), x.dtype)
                return dx, zero, zero
            dtau = packed[n:n + m].sum().reshape((1,))
            dvth = packed[n + m:].sum().reshape((1,))
            return dx, dtau, dvth

        _OPS["fwd"] = ops.Custom(
            lif_fwd_kernel,
            out_shape=lambda x, t, v: x,
            out_dtype=lambda x, t, v: x,
            func_type="hybrid",
            bprop=bprop)
        _OPS["bwd"] = bwd
    return _OPS["fwd"], _OPS["bwd"]


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------
def view_shape(shape: Tuple[int, ...], axis: int) -> Tuple[int, int, int]:
    """The (A, L, B) view of a tensor of ``shape`` with the recurrence along ``axis``."""
    ndim = len(shape)
    if not -ndim <= axis < ndim:
        raise ValueError(f"LIF axis {axis} is out of range for a tensor of shape {tuple(shape)}")
    axis %= ndim
    before = int(np.prod(shape[:axis])) if axis else 1
    after = int(np.prod(shape[axis + 1:])) if axis + 1 < ndim else 1
    return before, int(shape[axis]), after


def _check(x, tau, vth, group: int):
    if not isinstance(group, int) or isinstance(group, bool) or group < 1:
        raise ValueError(f"LIF group size must be a positive int, got {group!r}")
    for name, p in (("tau", tau), ("Vth", vth)):
        if tuple(p.shape) != (1,):
            raise ValueError(f"LIF {name} must have shape (1,), got {tuple(p.shape)}")


def resolve_backend(backend: Optional[str] = None, group: int = KERNEL_GROUP) -> str:
    """``custom`` or ``composite`` for a LIF op (see :mod:`ascend_kernels.registry`).

    ``None`` follows the global setting / ``MINDCV_EXT_KERNELS`` (default ``auto``); inside
    ``registry.exporting()`` the answer is always ``composite``. ``auto`` picks the custom kernel
    only where Hybrid kernels compile and the group size is the kernel's (4); an explicit
    ``custom`` with another group size is an error.
    """
    choice = registry.resolve(backend, kind="hybrid")
    if choice == "custom" and group != KERNEL_GROUP:
        requested = backend if backend is not None else registry.get_backend()
        if requested == "custom":
            raise ValueError(f"the custom LIF kernel handles groups of {KERNEL_GROUP}, got {group}; "
                             "use backend='composite' (or 'auto') for other group sizes")
        return "composite"
    return choice


# --------------------------------------------------------------------------------------------
# The two implementations on any tensor, recurrence along ``axis``
# --------------------------------------------------------------------------------------------
def lif_custom(x: Tensor, tau: Tensor, vth: Tensor, axis: int, group: int = 4) -> Tensor:
    """Group LIF with the Hybrid-DSL kernels (float32 inside; group size 4 only).

    In graph mode (``ms.jit``) build the op outside the graph with ``custom_op()`` and call
    ``apply_custom`` inside it, as ``LIFSpike`` does.
    """
    _check(x, tau, vth, group)
    if group != KERNEL_GROUP:
        raise ValueError(f"the custom LIF kernel handles groups of {KERNEL_GROUP}, got {group}; "
                         "use the composite backend for other group sizes")
    return apply_custom(custom_op(), x, tau, vth, axis)


def custom_op():
    """The forward Custom primitive (with its backward attached); building it compiles nothing."""
    return _custom_ops()[0]


def apply_custom(fwd, x: Tensor, tau: Tensor, vth: Tensor, axis: int) -> Tensor:
    """Run the custom forward primitive ``fwd`` on ``x`` along ``axis`` (groups of 4)."""
    shape = x.shape
    dtype = x.dtype
    x3 = x.reshape(view_shape(shape, axis))
    if dtype != ms.float32:
        x3 = x3.astype(ms.float32)
    if tau.dtype != ms.float32:
        tau = tau.astype(ms.float32)
    if vth.dtype != ms.float32:
        vth = vth.astype(ms.float32)
    y = fwd(x3, tau, vth).reshape(shape)
    if dtype != ms.float32:
        y = y.astype(dtype)
    return y


def lif_composite_3d(x3: Tensor, tau: Tensor, vth: Tensor, group: int) -> Tensor:
    """Group LIF on an (A, L, B) tensor with plain MindSpore ops."""
    a, length, b = x3.shape
    n = length // group
    if n == 0:
        return x3
    full = x3[:, :n * group, :].reshape((a, n, group, b))
    outs = []
    mem = None
    for j in range(group):
        u = full[:, :, j, :]
        if mem is not None:
            u = tau * mem + u
        fire = u > vth
        outs.append(ops.where(fire, u, vth))
        mem = ops.where(fire, ops.zeros_like(u), u)
    y = ops.stack(outs, axis=2).reshape((a, n * group, b))
    if n * group < length:
        y = ops.concat((y, x3[:, n * group:, :]), axis=1)
    return y


def lif_composite(x: Tensor, tau: Tensor, vth: Tensor, axis: int, group: int = 4) -> Tensor:
    """Group LIF with pure MindSpore ops (any mode, exportable)."""
    _check(x, tau, vth, group)
    shape = x.shape
    y = lif_composite_3d(x.reshape(view_shape(shape, axis)), tau.astype(x.dtype), vth.astype(x.dtype), group)
    return y.reshape(shape)


def lif(x: Tensor, tau: Tensor, vth: Tensor, axis: int, group: int = 4, backend: Optional[str] = None) -> Tensor:
    """Group LIF along ``axis`` with the chosen backend (see ``resolve_backend``)."""
    if resolve_backend(backend, group) == "custom":
        return lif_custom(x, tau, vth, axis, group)
    return lif_composite(x, tau, vth, axis, group)


# --------------------------------------------------------------------------------------------
# Numpy reference (used by tests and the benchmark's sanity check)
# --------------------------------------------------------------------------------------------
def lif_reference(x: np.ndarray, tau: float, vth: float, axis: int, group: int = 4,
                  dy: Optional[np.ndarray] = None):
    """Forward (and, with ``dy``, backward) of group LIF in numpy, float64 inside.

    Returns ``y`` or ``(y, dx, dtau, dvth)``.
    """
    x = np.asarray(x, np.float64)
    xt = np.moveaxis(x, axis, -1)
    length = xt.shape[-1]
    n = length // group
    y = xt.copy()
    u = np.zeros_like(xt)
    mem_before = np.zeros_like(xt)
    for g in range(n):
        mem = np.zeros(xt.shape[:-1])
        for j in range(group):
            p = g * group + j
            up = tau * mem + xt[..., p]
            fire = up > vth
            u[..., p] = up
            mem_before[..., p] = mem
            y[..., p] = np.where(fire, up, vth)
            mem = np.where(fire, 0.0, up)
    y_out = np.moveaxis(y, -1, axis)
    if dy is None:
        return y_out
    dyt = np.moveaxis(np.asarray(dy, np.float64), axis, -1)
    dx = dyt.copy()
    dtau = 0.0
    dvth = 0.0
    for g in range(n):
        carry = np.zeros(xt.shape[:-1])
        for j in reversed(range(group)):
            p = g * group + j
            fire = u[..., p] > vth
            gu = np.where(fire, dyt[..., p], carry)
            dvth += float(np.sum(np.where(fire, 0.0, dyt[..., p])))
            dtau += float(np.sum(gu * mem_before[..., p]))
            dx[..., p] = gu
            carry = gu * tau
    return y_out, np.moveaxis(dx, -1, axis), dtau, dvth


# --------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------
def _both_directions(fn):
    """Forward of an SNN-MLP LIF module's two LIF ops (along H and along W) on one tensor."""
    def run(x, tau, vth):
        return fn(x, tau, vth, 2, KERNEL_GROUP), fn(x, tau, vth, 3, KERNEL_GROUP)
    return run


def bench_lif(shape: Tuple[int, int, int, int] = (8, 96, 28, 28), repeats: int = 15, warmup: int = 2) -> float:
    """Speed-up of the custom LIF over the composite, forward + backward, measured in one run.

    Each step runs both LIF directions of an NCHW tensor and their backward pass (gradients
    w.r.t. input, tau and Vth for a given output gradient). Both backends first run ``warmup``
    times (kernel compilation, caches) and are checked to agree; then they alternate for
    ``repeats`` rounds and the median of the per-round time ratios composite/custom is returned.
    """
    previous_mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        rng = np.random.default_rng(0)
        x = Tensor(rng.normal(0.0, 1.0, shape).astype(np.float32))
        dy = Tensor(rng.normal(0.0, 1.0, shape).astype(np.float32))
        tau = Tensor([0.25], ms.float32)
        vth = Tensor([0.1], ms.float32)
        grad = ops.GradOperation(get_all=True, sens_param=True)
        steps = {"custom": grad(_both_directions(lif_custom)),
                 "composite": grad(_both_directions(lif_composite))}
        results = {}
        for backend, step in steps.items():
            for _ in range(warmup):
                out = step(x, tau, vth, (dy, dy))
            results[backend] = [o.asnumpy() for o in out]
        for got, want in zip(results["custom"], results["composite"]):
            if not np.allclose(got, want, rtol=1e-3, atol=1e-3):
                raise RuntimeError("bench_lif: custom and composite LIF gradients disagree; not timing them")
        ratios = []
        for _ in range(repeats):
            times = {}
            for backend, step in steps.items():
                start = time.perf_counter()
                out = step(x, tau, vth, (dy, dy))
                for o in out:
                    o.asnumpy()
                times[backend] = time.perf_counter() - start
            ratios.append(times["composite"] / times["custom"])
        return float(np.median(ratios))
    finally:
        ms.set_context(mode=previous_mode)


if __name__ == "__main__":
    print(f"lif_custom_vs_composite: {bench_lif():.2f}x")
