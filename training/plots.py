"""PNG plots of the learning-rate finder and of the training curves (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_lr_find(lrs: list[float], losses: list[float], suggestion: float, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses)
    ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested {suggestion:.1e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    ax.set_title("learning-rate range test")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_curves(history: list[dict[str, float]], path: Path) -> Path:
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (losses, metrics) = plt.subplots(1, 2, figsize=(10, 4))
    losses.plot(epochs, [r["train_loss"] for r in history], label="train loss")
    losses.plot(epochs, [r["valid_loss"] for r in history], label="validation loss")
    losses.set_xlabel("epoch")
    losses.legend()
    for name in ("f2", "map", "accuracy"):
        metrics.plot(epochs, [r[name] for r in history], label=name)
    metrics.set_xlabel("epoch")
    metrics.set_ylim(0, 1)
    metrics.legend()
    frozen = [r["epoch"] for r in history if r.get("frozen")]
    if frozen:
        for ax in (losses, metrics):
            ax.axvspan(0.5, max(frozen) + 0.5, color="grey", alpha=0.15, label="head only")
    fig.suptitle("training curves (validation split)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
