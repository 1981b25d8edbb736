"""Per-run logs: metrics.csv, log.json and curves.png."""
import csv
import json
import os
from typing import Dict, List


def write_logs(out_dir: str, history: List[Dict]) -> None:
    if not history:
        return
    keys = list(dict.fromkeys(k for rec in history for k in rec))
    with open(os.path.join(out_dir, "metrics.csv"), "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    with open(os.path.join(out_dir, "log.json"), "w", encoding="utf-8") as fh:
        json.dump(history, fh, indent=1)
    plot_curves(history, os.path.join(out_dir, "curves.png"))


def plot_curves(history: List[Dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] + 1 for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train loss")
    val = [(r["epoch"] + 1, r) for r in history if "val_top1" in r]
    if val:
        ax_loss.plot([e for e, _ in val], [r["val_loss"] for _, r in val], marker="o", label="val loss")
        ax_acc.plot([e for e, _ in val], [r["val_top1"] for _, r in val], marker="o", label="val top-1")
        ax_acc.plot([e for e, _ in val], [r["val_top5"] for _, r in val], marker="s", label="val top-5")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_title("loss")
    ax_loss.legend()
    ax_acc.set_xlabel("epoch")
    ax_acc.set_title("accuracy")
    ax_acc.set_ylim(0, 1)
    if val:
        ax_acc.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
