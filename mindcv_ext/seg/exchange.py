"""Exchanged-token statistics from TokenFusion score tensors (NumPy).

``scores`` is the tuple returned by ``TokenFusionSeg`` (one (B, N) array per block and modality)
and ``layout`` the matching ``net.score_layout`` entries ``(stage, block, modality)``. A token is
exchanged when its score is below the threshold (0.02 upstream).
"""
from typing import Dict, Sequence, Tuple

import numpy as np


class ScoreLayoutError(ValueError):
    """Scores and layout that do not match."""


def _check(scores, layout):
    if len(scores) != len(layout):
        raise ScoreLayoutError(f"{len(scores)} score tensors but a layout of {len(layout)} entries")


def exchanged_fraction(scores: Sequence, layout: Sequence[Tuple[int, int, str]],
                       threshold: float = 0.02) -> Dict[str, float]:
    """Fraction of tokens with score < threshold.

    Keys ``stage{k}/{modality}`` (k from 1; mean over the blocks of the stage) and ``{modality}``
    (mean over all blocks with equal weight per block, as the official training log prints it).
    """
    _check(scores, layout)
    per_block = {}
    for s, (stage, block, modality) in zip(scores, layout):
        per_block[(stage, block, modality)] = float((np.asarray(s) < threshold).mean())
    out = {}
    for modality in sorted({m for _, _, m in layout}):
        vals = [v for (st, b, m), v in per_block.items() if m == modality]
        out[modality] = float(np.mean(vals))
        for stage in sorted({st for st, _, m in layout if m == modality}):
            sv = [v for (st, b, m), v in per_block.items() if m == modality and st == stage]
            out[f"stage{stage + 1}/{modality}"] = float(np.mean(sv))
    return out


def score_maps(scores: Sequence, layout: Sequence[Tuple[int, int, str]],
               grids: Sequence[Tuple[int, int]]) -> Dict[Tuple[int, str], np.ndarray]:
    """Score maps (B, h, w) per (stage, modality), averaged over the blocks of the stage;
    ``grids`` are the stage token grids (``tokenfusion.token_grids(H, W)``)."""
    _check(scores, layout)
    acc: Dict[Tuple[int, str], list] = {}
    for s, (stage, _, modality) in zip(scores, layout):
        h, w = grids[stage]
        s = np.asarray(s)
        if s.ndim != 2 or s.shape[1] != h * w:
            raise ScoreLayoutError(f"stage {stage + 1} scores {s.shape} do not fit a {h}x{w} token grid")
        acc.setdefault((stage, modality), []).append(s.reshape(-1, h, w))
    return {k: np.mean(v, axis=0) for k, v in acc.items()}
