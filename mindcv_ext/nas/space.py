"""DropNAS search spaces, grouped operation dropout, the alpha adjust and genotype derivation.

All of this is host-side NumPy / Python over alpha values; nothing here builds a graph.
Source: DropNAS (Hong et al., IJCAI 2020) and its official code (wiljohnhong/DropNAS,
``genotypes.py`` and ``models/search_cnn.py``).
"""
import math
import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..models.darts import PARAMETRIC_OPS, PRIMITIVES, Genotype

__all__ = ["SearchSpace", "SPACES", "get_space", "MaskSampler", "edge_kept_ratios", "adjust_alphas",
           "derive_genotype", "parametric_share", "SearchSpaceError"]


class SearchSpaceError(ValueError):
    """Unknown search space, bad drop rate or malformed alphas."""


@dataclass(frozen=True)
class SearchSpace:
    """The op list of every mixed edge (alpha columns in this order) and its two dropout groups."""
    name: str
    ops: Tuple[str, ...]

    @property
    def parametric(self) -> Tuple[int, ...]:
        return tuple(i for i, op in enumerate(self.ops) if op in PARAMETRIC_OPS)

    @property
    def non_parametric(self) -> Tuple[int, ...]:
        return tuple(i for i, op in enumerate(self.ops) if op not in PARAMETRIC_OPS)


# The paper's spaces (section 5.4): `1-skip` drops both pools, `3-skip` replaces them by skips.
SPACES = {
    "original": SearchSpace("original", PRIMITIVES),
    "1-skip": SearchSpace("1-skip", PRIMITIVES[:4] + ("skip_connect", "none")),
    "3-skip": SearchSpace("3-skip", PRIMITIVES[:4] + ("skip_connect",) * 3 + ("none",)),
}


def get_space(space) -> SearchSpace:
    if isinstance(space, SearchSpace):
        return space
    if space not in SPACES:
        raise SearchSpaceError(f"unknown search space '{space}'; choose from {', '.join(SPACES)}")
    return SPACES[space]


class MaskSampler:
    """Grouped operation dropout (DropNAS ``generate_masks``).

    Each op of a group is dropped independently with ``p = r ** (1 / n)``, ``n`` the group size
    (so ``r`` is the chance that a whole group would go); a group that lost all its ops is drawn
    again, so every edge keeps at least one parametric and one non-parametric op. The official code
    hard-codes ``n = 4`` for both groups even in the 1-skip space; ``exponent_sizes=(4, 4)``
    reproduces that, the default uses the true group sizes. ``sample`` returns one mask per node
    (shape (2+i, n_ops), True = kept) for one cell type; call it once per cell type and iteration and
    give the result to every cell of that type. Python ``random`` seeded with ``seed``, as the
    official code.
    """

    def __init__(self, space="original", r_p: float = 3e-5, r_np: Optional[float] = None, seed: int = 0,
                 exponent_sizes: Optional[Sequence[int]] = None):
        self.space = get_space(space)
        r_np = r_p if r_np is None else r_np
        for name, r in (("r_p", r_p), ("r_np", r_np)):
            if not 0.0 <= float(r) < 1.0:
                raise SearchSpaceError(f"MaskSampler: {name} must be in [0, 1), got {r}")
        self.groups = (self.space.parametric, self.space.non_parametric)
        sizes = [len(g) for g in self.groups] if exponent_sizes is None else [int(s) for s in exponent_sizes]
        if len(sizes) != 2 or min(sizes) < 1:
            raise SearchSpaceError(f"MaskSampler: exponent_sizes must be two positive ints, got {exponent_sizes}")
        self.rates = (float(r_p), float(r_np))
        self.drop_probs = tuple(r ** (1.0 / n) if r > 0 else 0.0 for r, n in zip(self.rates, sizes))
        self.rng = random.Random(seed)
        self.enabled = True

    def _group_keep(self, p: float, n: int) -> List[bool]:
        while True:
            keep = [self.rng.random() > p for _ in range(n)]
            if any(keep):
                return keep

    def sample(self, n_nodes: int = 4) -> List[np.ndarray]:
        n_ops = len(self.space.ops)
        masks = []
        for i in range(n_nodes):
            m = np.ones((i + 2, n_ops), dtype=bool)
            if self.enabled:
                for e in range(i + 2):
                    for group, p in zip(self.groups, self.drop_probs):
                        m[e, list(group)] = self._group_keep(p, len(group))
            masks.append(m)
        return masks

    # checkpointable state of the generator, as an int array
    def get_state(self) -> np.ndarray:
        version, internal, gauss = self.rng.getstate()
        return np.array([version, -1 if gauss is None else 1] + list(internal), dtype=np.int64)

    def set_state(self, state) -> None:
        state = [int(v) for v in np.asarray(state).ravel()]
        if state[1] != -1:
            raise SearchSpaceError("MaskSampler: cannot restore a generator state with a cached gauss value")
        self.rng.setstate((state[0], tuple(state[2:]), None))


def _softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def edge_kept_ratios(alpha: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per edge ``sum_kept exp(alpha) / sum_all exp(alpha)`` (the softmax mass of the kept set)."""
    return (_softmax(np.asarray(alpha, np.float64)) * mask).sum(-1)


def adjust_alphas(alpha: np.ndarray, mask: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """DropNAS ``adjust_alphas``: on every edge with a dropped op, add
    ``c = log(ratio / (1 - ratio) * S_dropped / S_kept)`` to the kept alphas so the kept set's
    softmax mass equals ``ratio`` (its value before the update). Dropped alphas are left as they are."""
    alpha = np.array(alpha, dtype=np.float64)
    mask = np.asarray(mask, bool)
    for e in range(alpha.shape[0]):
        if mask[e].all():
            continue
        ref = alpha[e].max()  # a common shift for numerical range; it cancels in c
        s_kept = np.exp(alpha[e][mask[e]] - ref).sum()
        s_drop = np.exp(alpha[e][~mask[e]] - ref).sum()
        c = math.log(ratio[e] / (1.0 - ratio[e]) * s_drop / s_kept)
        alpha[e][mask[e]] += c
    return alpha


def derive_genotype(alpha_normal: Sequence[np.ndarray], alpha_reduce: Sequence[np.ndarray], space="original",
                    rule: str = "alpha", k: int = 2) -> Genotype:
    """Discretize alphas: per edge the best op other than ``none``, per node the ``k`` strongest
    edges, strongest first. ``rule="alpha"`` ranks raw alphas (DropNAS ``genotypes.parse``),
    ``rule="softmax"`` ranks the per-edge softmax (DARTS ``genotype``). Ties go to the lower index."""
    if rule not in ("alpha", "softmax"):
        raise SearchSpaceError(f"derive_genotype: rule must be 'alpha' or 'softmax', got '{rule}'")
    space = get_space(space)
    usable = np.array([op != "none" for op in space.ops])

    def parse(alphas):
        nodes = []
        for i, a in enumerate(alphas):
            a = np.asarray(a, np.float64)
            if a.shape != (i + 2, len(space.ops)):
                raise SearchSpaceError(f"derive_genotype: node {i} alpha has shape {a.shape}, "
                                       f"expected {(i + 2, len(space.ops))}")
            score = _softmax(a) if rule == "softmax" else a
            score = np.where(usable, score, -np.inf)
            best_op = score.argmax(-1)
            strength = score.max(-1)
            order = np.argsort(-strength, kind="stable")[:k]
            nodes.append([(space.ops[int(best_op[e])], int(e)) for e in order])
        return nodes

    concat = list(range(2, 2 + len(alpha_normal)))
    return Genotype(parse(alpha_normal), concat, parse(alpha_reduce), list(range(2, 2 + len(alpha_reduce))))


def parametric_share(alphas: Sequence[np.ndarray], space="original") -> float:
    """Softmax mass of the parametric ops, averaged over all edges of one cell type."""
    space = get_space(space)
    idx = list(space.parametric)
    rows = np.concatenate([_softmax(np.asarray(a, np.float64)) for a in alphas], 0)
    return float(rows[:, idx].sum(-1).mean())


def shares(alpha_normal, alpha_reduce, space="original") -> Dict[str, float]:
    return {"normal": parametric_share(alpha_normal, space), "reduce": parametric_share(alpha_reduce, space)}
