"""What the worker does around the model: take turns on the device, keep the tags above threshold."""

from __future__ import annotations

import threading

import torch

# One per process: batches running in task threads take turns on the device (decode, then
# inference), while their fetching, CPU decoding and database writes overlap outside it.
device_lock = threading.Lock()


def above_threshold(probs: torch.Tensor, thresholds: torch.Tensor) -> list[list[tuple[int, float]]]:
    """For each image (row of `probs`, N x tags), (tag index, probability) of every tag at or above its threshold."""
    rows, cols = (probs >= thresholds.unsqueeze(0)).nonzero(as_tuple=True)
    out: list[list[tuple[int, float]]] = [[] for _ in range(probs.shape[0])]
    for row, col, p in zip(rows.tolist(), cols.tolist(), probs[rows, cols].tolist(), strict=True):
        out[row].append((col, p))
    return out
