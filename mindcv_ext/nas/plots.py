"""Search pictures: the normal and reduction cells of a genotype, and the parametric-op alpha share
over epochs (the "Matthew effect" DropNAS counters: without dropout the non-parametric ops win)."""
from typing import Dict, Sequence

import numpy as np

from ..models.darts import Genotype

__all__ = ["plot_genotype", "plot_alpha_shares", "plot_share_comparison"]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _draw_cell(ax, nodes, concat, title):
    n = len(nodes)
    pos = {0: (0.0, 0.75), 1: (0.0, 0.25)}
    for i in range(n):
        pos[i + 2] = (0.3 + 0.5 * i / max(n - 1, 1), 0.9 - 0.8 * i / max(n - 1, 1))
    out = (1.05, 0.5)
    names = {0: "c_{k-2}", 1: "c_{k-1}"}
    for i, node in enumerate(nodes):
        for op, src in node:
            (x0, y0), (x1, y1) = pos[src], pos[i + 2]
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="->", color="tab:blue" if "conv" in op else "tab:gray"))
            ax.text((x0 + x1) / 2, (y0 + y1) / 2, op, fontsize=7, ha="center", va="center",
                    bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8))
    for s in concat:
        ax.annotate("", xy=out, xytext=pos[s], arrowprops=dict(arrowstyle="->", color="tab:green", alpha=0.6))
    for k, (x, y) in pos.items():
        ax.text(x, y, names.get(k, str(k - 2)), ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round", fc="lightyellow" if k < 2 else "lightblue"))
    ax.text(*out, "c_{k}", ha="center", va="center", fontsize=9, bbox=dict(boxstyle="round", fc="palegreen"))
    ax.set_xlim(-0.15, 1.2)
    ax.set_ylim(0.0, 1.0)
    ax.set_title(title)
    ax.axis("off")


def plot_genotype(genotype: Genotype, path: str) -> None:
    """One PNG with the normal cell (left) and the reduction cell (right)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    _draw_cell(axes[0], genotype.normal, genotype.normal_concat, "normal cell")
    _draw_cell(axes[1], genotype.reduce, genotype.reduce_concat, "reduction cell")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_alpha_shares(history: Sequence[Dict[str, float]], path: str) -> None:
    """``history``: one dict per epoch with ``normal`` and ``reduce`` parametric shares (as
    ``nas.shares`` returns); the non-parametric share is one minus it."""
    if not history:
        raise ValueError("plot_alpha_shares: empty history")
    plt = _pyplot()
    epochs = np.arange(1, len(history) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, kind in zip(axes, ("normal", "reduce")):
        share = np.array([h[kind] for h in history])
        ax.plot(epochs, share, "o-", label="parametric")
        ax.plot(epochs, 1.0 - share, "s--", label="non-parametric")
        ax.set_title(f"{kind} cells")
        ax.set_xlabel("epoch")
        ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("softmax share (mean over edges)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_share_comparison(histories: Dict[str, Sequence[Dict[str, float]]], path: str) -> None:
    """Parametric softmax share (mean of the normal and reduction cells) over epochs, one line per
    search (e.g. ``{"DropNAS": [...], "DARTS (r = 0)": [...]}``), against the uniform share."""
    if not histories or not all(histories.values()):
        raise ValueError("plot_share_comparison: empty history")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, history in histories.items():
        share = np.array([(h["normal"] + h["reduce"]) / 2.0 for h in history])
        ax.plot(np.arange(1, len(share) + 1), share, "o-", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("parametric softmax share")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
