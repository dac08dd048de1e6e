"""Which torch device to use, one rule for training and inference."""

from __future__ import annotations

import torch


def pick_device(requested: str) -> torch.device:
    """auto -> CUDA when present (checked without initialising a CUDA context), else CPU.

    Raises ConfigError for a CUDA device this machine does not have: a worker that cannot load its model
    must stop at its start with the reason, not fail every image it is given.
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        from tagger.errors import ConfigError

        if not torch.cuda.is_available():
            raise ConfigError(
                f"TAGGER_DEVICE={requested}, but torch finds no CUDA device here (no NVIDIA driver or GPU, or a "
                f"CPU-only torch {torch.__version__}): use TAGGER_DEVICE=auto or cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"TAGGER_DEVICE={requested}, but this machine has {torch.cuda.device_count()} CUDA device(s), "
                "numbered from 0"
            )
    return device
