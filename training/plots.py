"""PNG plots of the learning-rate finder and of the training curves (matplotlib, no display needed).

Training writes them as files; the model pages draw the same figures from what the registry keeps
(`training.history`, `training.lr_find`), so every version has its plots wherever it was trained.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any


def _figure(width: float, height: float) -> Any:
    """A figure without pyplot's global state, so web requests on several threads can draw at once
    (matplotlib's advice for web servers)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _save(fig: Any, target: Path | io.BytesIO) -> None:
    fig.tight_layout()
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=100, format="png")


def _lr_find_figure(lrs: list[float], losses: list[float], suggestion: float) -> Any:
    fig = _figure(6, 4)
    ax = fig.subplots()
    ax.plot(lrs, losses)
    ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested {suggestion:.1e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    ax.set_title("learning-rate range test")
    ax.legend()
    return fig


def _curves_figure(history: list[dict[str, Any]]) -> Any:
    history = [{k: float("nan") if v is None else v for k, v in row.items()} for row in history]  # gaps
    epochs = [row["epoch"] for row in history]
    fig = _figure(10, 4)
    losses, metrics = fig.subplots(1, 2)
    losses.plot(epochs, [r["train_loss"] for r in history], label="train loss", marker=".")
    losses.plot(epochs, [r["valid_loss"] for r in history], label="validation loss", marker=".")
    losses.set_xlabel("epoch")
    losses.legend()
    for name in ("f2", "map", "accuracy"):
        metrics.plot(epochs, [r[name] for r in history], label=name, marker=".")
    metrics.set_xlabel("epoch")
    metrics.set_ylim(0, 1)
    from matplotlib.ticker import MaxNLocator

    for ax in (losses, metrics):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    metrics.legend()
    frozen = [r["epoch"] for r in history if r.get("frozen")]
    if frozen:
        for ax in (losses, metrics):
            ax.axvspan(0.5, max(frozen) + 0.5, color="grey", alpha=0.15, label="head only")
    fig.suptitle("training curves (validation split)")
    return fig


def plot_lr_find(lrs: list[float], losses: list[float], suggestion: float, path: Path) -> Path:
    _save(_lr_find_figure(lrs, losses, suggestion), path)
    return path


def plot_curves(history: list[dict[str, Any]], path: Path) -> Path:
    _save(_curves_figure(history), path)
    return path


def lr_find_png(lrs: list[float], losses: list[float], suggestion: float) -> bytes:
    """The range test's plot as PNG bytes (the lists are parallel, one point per step)."""
    out = io.BytesIO()
    _save(_lr_find_figure(lrs, losses, suggestion), out)
    return out.getvalue()


def curves_png(history: list[dict[str, Any]]) -> bytes:
    """Per-epoch losses and metrics as PNG bytes; `history` rows as `training.history` keeps them."""
    out = io.BytesIO()
    _save(_curves_figure(history), out)
    return out.getvalue()
