"""Resumable training checkpoints without pickle: tensors in safetensors, the rest in JSON.

Model weights, AdamW moments and the best weights so far go in `checkpoint.safetensors`;
epoch, step, history and the arguments that built the run go in `checkpoint.json`.
Both are written to a temporary name and renamed, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tagger.errors import ConfigError
from tagger.training.preflight import CHECKPOINT_FILES

TENSORS, STATE = CHECKPOINT_FILES  # checked before torch loads, by training/preflight.py


def save(
    folder: Path,
    *,
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    best: dict[str, torch.Tensor] | None,
    state: dict[str, Any],
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for index, moments in optimiser.state_dict()["state"].items():
        for name, value in moments.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    for k, v in (best or {}).items():
        tensors[f"best.{k}"] = v.detach().cpu().contiguous()
    _atomic(folder / TENSORS, lambda tmp: save_file(tensors, str(tmp)))
    _atomic(folder / STATE, lambda tmp: tmp.write_text(json.dumps(state, indent=2)))


def load(
    folder: Path, *, model: nn.Module, optimiser: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Restore model and optimiser in place; returns (state, best weights or None)."""
    if not (folder / TENSORS).is_file() or not (folder / STATE).is_file():
        raise ConfigError(f"no checkpoint to resume in {folder}")
    tensors = load_file(str(folder / TENSORS))
    state = json.loads((folder / STATE).read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            opt_state.setdefault(int(index), {})[name] = value
    saved = optimiser.state_dict()
    saved["state"] = opt_state
    optimiser.load_state_dict(saved)
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    return state, best


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    write(tmp)
    os.replace(tmp, path)
