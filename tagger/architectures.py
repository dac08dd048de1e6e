"""Build torchvision classifiers with a multi-label head of the right width."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tagger.errors import ArtifactError, ConfigError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def build_model(arch: str, num_tags: int) -> nn.Module:
    """A randomly initialised torchvision model whose last linear layer outputs num_tags logits."""
    from torchvision import models

    try:
        model = models.get_model(arch, weights=None)
    except ValueError:
        known = ", ".join(sorted(models.list_models(module=models))[:20])
        raise ConfigError(f"unknown architecture {arch!r}; try one of {RESNETS} (or: {known}, ...)") from None
    replace_head(model, num_tags)
    return model


def replace_head(model: nn.Module, num_tags: int) -> None:
    """Swap the final nn.Linear (fc, classifier[-1] or heads.head) for one with num_tags outputs."""
    for owner_name in ("fc", "classifier", "heads", "head"):
        owner = getattr(model, owner_name, None)
        if isinstance(owner, nn.Linear):
            setattr(model, owner_name, nn.Linear(owner.in_features, num_tags))
            return
        if isinstance(owner, nn.Sequential):
            for idx in range(len(owner) - 1, -1, -1):
                if isinstance(owner[idx], nn.Linear):
                    owner[idx] = nn.Linear(owner[idx].in_features, num_tags)
                    return
    raise ConfigError(f"cannot find a linear classification head in {type(model).__name__}")


def load_pretrained_backbone(model: nn.Module, weights_file: Path) -> int:
    """Load a local weights file (safetensors, or a plain state_dict .pth read with weights_only).

    The head is skipped since its width differs; returns how many tensors were loaded.
    """
    if not weights_file.is_file():
        raise ConfigError(f"pretrained weights file not found: {weights_file}")
    if weights_file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights_file))
    else:
        try:
            state = torch.load(weights_file, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ArtifactError(f"cannot read {weights_file} as a plain state_dict: {exc}") from exc
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ArtifactError(f"{weights_file} shares no tensor names/shapes with this architecture")
    model.load_state_dict(usable, strict=False)
    return len(usable)
