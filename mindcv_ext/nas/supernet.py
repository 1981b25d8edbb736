"""The DropNAS search supernet (official code: wiljohnhong/DropNAS ``models/search_cnn.py``,
``models/search_cells.py``, ``models/ops.py``).

Stem conv3x3(3, 3C) + BN (affine), ``layers`` search cells (reductions at L//3 and 2L//3), global
average pool, Linear. Every mixed edge holds all ops of the search space with affine-free BNs; the
preprocessing BNs are affine-free too. Alphas: one (2+i, n_ops) Parameter per node and cell type,
initialized to 1e-3 * N(0, 1).

How a mask reaches the cells: ``construct(x, masks_normal, masks_reduce)`` takes the masks as host
NumPy booleans and the mixed ops branch on them in Python, so a dropped op is never called (its
weights and alpha entries get exactly zero gradient). This needs PyNative execution. A compiled
graph per mask is no alternative: with r = 3e-5 about 46% of the 14 edges of each cell type drop
something in every iteration, so almost every iteration has a mask never seen before and a graph
cache would compile on nearly every step. Gradient clipping and the "used this step" test run on
host copies of the gradients (:mod:`mindcv_ext.nas.search`): a compiled version recompiled for
every new gradient tuple in PyNative here.
"""
from typing import List, Optional, Sequence

import numpy as np
import mindspore as ms
from mindspore import Parameter, ParameterTuple, nn, ops

from ..models.darts import OPS, FactorizedReduce, StdConv, _bn, _conv
from .space import get_space

__all__ = ["MixedOp", "SearchCell", "SearchNetwork", "kept_softmax"]


def kept_softmax(alpha, mask):
    """``exp(alpha_o) / sum_{o' kept} exp(alpha_o')`` on kept entries, 0 on dropped ones. A dropped
    entry enters only through a product with 0, so its gradient is exactly 0."""
    e = ops.exp(alpha - ops.stop_gradient(alpha.max(axis=-1, keepdims=True))) * mask
    return e / e.sum(axis=-1, keepdims=True)


class MixedOp(nn.Cell):
    """All ops of the space on one edge; ``construct`` evaluates only the kept ones."""

    def __init__(self, channels, stride, op_names: Sequence[str]):
        super().__init__()
        self.op_names = tuple(op_names)
        self.candidates = nn.CellList([OPS[name](channels, stride, False) for name in self.op_names])
        self.last_kept = None  # the keep pattern of the last call (for inspection)

    def construct(self, x, weights: Sequence, keep: Sequence[bool]):
        self.last_kept = tuple(bool(k) for k in keep)
        out = None
        for name, op, w, k in zip(self.op_names, self.candidates, weights, keep):
            if not k or name == "none":  # dropped, or a zero op whose term is 0 anyway
                continue
            y = w * op(x)
            out = y if out is None else out + y
        if out is None:
            out = self.candidates[self.op_names.index("none")](x)
        return out


class SearchCell(nn.Cell):
    def __init__(self, nodes, c_pp, c_p, c, reduction_prev, reduction, op_names):
        super().__init__()
        self.reduction, self.nodes = reduction, nodes
        self.preproc0 = FactorizedReduce(c_pp, c, affine=False) if reduction_prev else StdConv(c_pp, c, affine=False)
        self.preproc1 = StdConv(c_p, c, affine=False)
        self.edges = nn.CellList()
        for i in range(nodes):
            for j in range(2 + i):
                self.edges.append(MixedOp(c, 2 if reduction and j < 2 else 1, op_names))
        self.out_channels = c * nodes

    def construct(self, s0, s1, weights, masks):
        """``weights[i][j]``: the per-op scalar weights of edge j of node i; ``masks[i][j]``: its keep row."""
        states = [self.preproc0(s0), self.preproc1(s1)]
        k = 0
        for i in range(self.nodes):
            s = None
            for j in range(2 + i):
                y = self.edges[k](states[j], weights[i][j], masks[i][j])
                s = y if s is None else s + y
                k += 1
            states.append(s)
        return ops.concat(states[2:], 1)


class SearchNetwork(nn.Cell):
    """Supernet of the DropNAS search (14 cells, C = 16 by default)."""

    def __init__(self, num_classes=10, in_channels=3, channels=16, layers=14, nodes=4, stem_multiplier=3,
                 space="original", seed=0):
        super().__init__()
        if layers < 3:
            raise ValueError(f"SearchNetwork: need at least 3 cells (two are reductions), got {layers}")
        self.space = get_space(space)
        self.in_channels, self.nodes = in_channels, nodes
        n_ops = len(self.space.ops)
        c_stem = stem_multiplier * channels
        self.stem = nn.SequentialCell([_conv(in_channels, c_stem, 3, 1, 1), _bn(c_stem)])
        cells, c_pp, c_p, c_cur, reduction_prev = [], c_stem, c_stem, channels, False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_cur *= 2
            cell = SearchCell(nodes, c_pp, c_p, c_cur, reduction_prev, reduction, self.space.ops)
            cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.out_channels
        self.layers = nn.CellList(cells)
        self.classifier = nn.Dense(c_p, num_classes)
        rng = np.random.default_rng(seed)
        init = lambda i: ms.Tensor(1e-3 * rng.standard_normal((i + 2, n_ops)).astype(np.float32))  # noqa: E731
        self.alpha_normal = ParameterTuple([Parameter(init(i), name=f"alpha_normal.{i}") for i in range(nodes)])
        self.alpha_reduce = ParameterTuple([Parameter(init(i), name=f"alpha_reduce.{i}") for i in range(nodes)])

    # parameter groups -------------------------------------------------------------------------------
    def alphas(self) -> List[Parameter]:
        return list(self.alpha_normal) + list(self.alpha_reduce)

    def weights(self) -> List[Parameter]:
        alpha_ids = {id(p) for p in self.alphas()}
        return [p for p in self.trainable_params() if id(p) not in alpha_ids]

    def alpha_values(self):
        """(normal, reduce) alphas as lists of NumPy copies (asnumpy may share memory with the Parameter)."""
        return ([p.asnumpy().copy() for p in self.alpha_normal], [p.asnumpy().copy() for p in self.alpha_reduce])

    def full_masks(self):
        n_ops = len(self.space.ops)
        return [np.ones((i + 2, n_ops), bool) for i in range(self.nodes)]

    # forward ----------------------------------------------------------------------------------------
    @staticmethod
    def _edge_weights(alphas, masks):
        out = []
        for alpha, mask in zip(alphas, masks):
            w = kept_softmax(alpha, ms.Tensor(mask.astype(np.float32)))
            out.append([[w[j, k] if mask[j, k] else None for k in range(mask.shape[1])]
                        for j in range(mask.shape[0])])
        return out

    def construct(self, x, masks_normal: Optional[Sequence[np.ndarray]] = None,
                  masks_reduce: Optional[Sequence[np.ndarray]] = None):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        masks_normal = self.full_masks() if masks_normal is None else masks_normal
        masks_reduce = self.full_masks() if masks_reduce is None else masks_reduce
        w_normal = self._edge_weights(self.alpha_normal, masks_normal)
        w_reduce = self._edge_weights(self.alpha_reduce, masks_reduce)
        s0 = s1 = self.stem(x)
        for cell in self.layers:
            if cell.reduction:
                s0, s1 = s1, cell(s0, s1, w_reduce, masks_reduce)
            else:
                s0, s1 = s1, cell(s0, s1, w_normal, masks_normal)
        return self.classifier(ops.mean(s1, (2, 3)))
