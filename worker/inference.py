"""Inference as a pure function: a uint8 batch in, per-tag probabilities out."""

from __future__ import annotations

import torch
from torch import nn

from tagger.preprocess import Normalise


def prepare(model: nn.Module, device: torch.device) -> tuple[nn.Module, torch.dtype]:
    """Move a model for inference: bf16 + channels_last on CUDA, float32 on CPU."""
    model.eval()
    if device.type == "cuda":
        model = model.to(device=device, dtype=torch.bfloat16, memory_format=torch.channels_last)
        return model, torch.bfloat16
    return model.to(device), torch.float32


@torch.inference_mode()
def predict(
    model: nn.Module,
    batch: torch.Tensor,
    *,
    normalise: Normalise,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """NCHW uint8 on the host -> N x tags float32 probabilities on the host."""
    x = batch.to(device, non_blocking=device.type == "cuda")
    x = normalise(x, dtype=dtype)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return torch.sigmoid(model(x).float()).cpu()


def above_threshold(probs: torch.Tensor, thresholds: torch.Tensor) -> list[list[tuple[int, float]]]:
    """For each image, (tag index, probability) of every tag at or above its threshold."""
    rows, cols = (probs >= thresholds.unsqueeze(0)).nonzero(as_tuple=True)
    out: list[list[tuple[int, float]]] = [[] for _ in range(probs.shape[0])]
    for row, col, p in zip(rows.tolist(), cols.tolist(), probs[rows, cols].tolist(), strict=True):
        out[row].append((col, p))
    return out
