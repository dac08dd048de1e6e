"""Which torch device to use, one rule for training and inference."""

from __future__ import annotations

import torch


def pick_device(requested: str) -> torch.device:
    """auto -> CUDA when present (checked without initialising a CUDA context), else CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)
