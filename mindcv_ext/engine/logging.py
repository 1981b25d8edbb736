"""Per-run logs: metrics.csv, log.json and curves.png."""
import csv
import json
import os
from typing import Callable, Dict, List


def _atomic_open(path: str):
    return open(path + ".tmp", "w", newline="", encoding="utf-8")


def atomic_json(obj, path: str) -> None:
    """``json.dump`` to a temporary file, then rename: readers never see half a file."""
    with _atomic_open(path) as fh:
        json.dump(obj, fh, indent=1)
    os.replace(path + ".tmp", path)


def atomic_picture(draw: Callable[..., None], path: str, *args) -> None:
    """``draw(*args, tmp_path)`` writes a picture, which is then renamed to ``path`` (same suffix, so
    the drawing library picks the format from it)."""
    root, ext = os.path.splitext(path)
    tmp = root + ".tmp" + ext
    draw(*args, tmp)
    os.replace(tmp, path)


def write_logs(out_dir: str, history: List[Dict]) -> None:
    """metrics.csv, log.json and curves.png, each written to a temporary file and renamed, so an
    interrupted write never leaves a half file (resume reads the history from the checkpoint)."""
    if not history:
        return
    keys = list(dict.fromkeys(k for rec in history for k in rec))
    csv_path, json_path = os.path.join(out_dir, "metrics.csv"), os.path.join(out_dir, "log.json")
    with _atomic_open(csv_path) as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    os.replace(csv_path + ".tmp", csv_path)
    atomic_json(history, json_path)
    atomic_picture(plot_curves, os.path.join(out_dir, "curves.png"), history)


def plot_curves(history: List[Dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] + 1 for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train loss")
    losses = sorted({k for r in history for k in r if k.startswith("val_") and "loss" in k})
    scores = sorted({k for r in history for k in r if k.startswith("val_") and "loss" not in k})
    for key in losses:
        pts = [(r["epoch"] + 1, r[key]) for r in history if key in r]
        ax_loss.plot([e for e, _ in pts], [v for _, v in pts], marker="o", label=key)
    for key in scores:
        pts = [(r["epoch"] + 1, r[key]) for r in history if key in r]
        ax_acc.plot([e for e, _ in pts], [v for _, v in pts], marker="o", label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_title("loss")
    ax_loss.legend()
    ax_acc.set_xlabel("epoch")
    ax_acc.set_title("validation metrics")
    if scores:
        ax_acc.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
