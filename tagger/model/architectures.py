"""Build torchvision classifiers with a multi-label head of the right width."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tagger.errors import ArtifactError, ConfigError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def build_model(arch: str, num_tags: int) -> nn.Module:
    """A randomly initialised torchvision model whose last linear layer outputs num_tags logits."""
    from tagger.model.vision import torchvision

    models = torchvision().models

    try:
        model = models.get_model(arch, weights=None)
    except ValueError:
        known = ", ".join(sorted(models.list_models(module=models))[:20])
        raise ConfigError(f"unknown architecture {arch!r}; try one of {RESNETS} (or: {known}, ...)") from None
    replace_head(model, num_tags)
    return model


def _head(model: nn.Module) -> tuple[nn.Module, str | int] | None:
    for owner_name in ("fc", "classifier", "heads", "head"):
        owner = getattr(model, owner_name, None)
        if isinstance(owner, nn.Linear):
            return model, owner_name
        if isinstance(owner, nn.Sequential):
            for idx in range(len(owner) - 1, -1, -1):
                if isinstance(owner[idx], nn.Linear):
                    return owner, idx
    return None


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the final classification layer (the part fine-tuning trains first)."""
    found = _head(model)
    if found is None:
        raise ConfigError(f"cannot find a linear classification head in {type(model).__name__}")
    owner, name = found
    layer = owner[name] if isinstance(name, int) else getattr(owner, name)  # type: ignore[index]
    return list(layer.parameters())


def replace_head(model: nn.Module, num_tags: int) -> None:
    """Swap the final nn.Linear (fc, classifier[-1] or heads.head) for one with num_tags outputs."""
    found = _head(model)
    if found is None:
        raise ConfigError(f"cannot find a linear classification head in {type(model).__name__}")
    owner, name = found
    if isinstance(name, int):
        owner[name] = nn.Linear(owner[name].in_features, num_tags)  # type: ignore[index,operator]
    else:
        setattr(owner, name, nn.Linear(getattr(owner, name).in_features, num_tags))


class SplitAtHead(nn.Module):
    """A classifier split at its final linear layer: forward gives (logits, the head's input).

    The head's input is the image's pooled features (for a ResNet the input of `fc`), which similar-image
    search keeps; the logits are what the unsplit model gave, so the suggestions do not change.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        found = _head(model)
        if found is None:
            raise ConfigError(f"cannot find a linear classification head in {type(model).__name__}")
        owner, name = found
        head = owner[name] if isinstance(name, int) else getattr(owner, name)  # type: ignore[index]
        if isinstance(name, int):
            owner[name] = nn.Identity()  # type: ignore[index,operator]
        else:
            setattr(owner, name, nn.Identity())
        self.body = model
        self.head = head
        self.features = int(head.in_features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(features), features


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
    return _load_backbone(model, state, str(weights_file))


def load_imagenet_weights(model: nn.Module, arch: str) -> int:
    """ImageNet weights through torchvision's weights API (downloads once into the torch hub cache)."""
    from tagger.model.vision import torchvision

    models = torchvision().models

    try:
        weights = models.get_model_weights(arch).DEFAULT
    except ValueError:
        raise ConfigError(f"torchvision has no pretrained weights for {arch!r}") from None
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # URLError, timeouts, proxies: all mean "not reachable from here"
        raise ConfigError(
            f"cannot download {weights} ({type(exc).__name__}: {exc}); on an offline machine pass "
            "--weights FILE (a .safetensors or state_dict .pth), or --random-init"
        ) from None
    return _load_backbone(model, state, str(weights))


def _load_backbone(model: nn.Module, state: dict[str, torch.Tensor], origin: str) -> int:
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ArtifactError(f"{origin} shares no tensor names/shapes with this architecture")
    model.load_state_dict(usable, strict=False)
    return len(usable)
