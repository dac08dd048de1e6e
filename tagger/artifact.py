"""Model artifacts: safetensors weights plus JSON metadata, checksummed, never pickled.

Layout in the model store: <version>/model.safetensors and <version>/model.json.
The database row holds the sha256 of the weights: a tampered store is refused on load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import torch
from torch import nn

from tagger.errors import ArtifactError
from tagger.preprocess import IMAGENET_MEAN, IMAGENET_STD
from tagger.storage import Storage

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
METADATA = "model.json"


@dataclass(frozen=True, kw_only=True)
class ArtifactMeta:
    version: str
    arch: str
    tags: list[str]
    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str = "squish"
    threshold: float = 0.2
    tag_thresholds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    format_version: int = FORMAT_VERSION
    weights_sha256: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ArtifactMeta:
        try:
            raw = json.loads(text)
            raw["mean"] = tuple(raw["mean"])
            raw["std"] = tuple(raw["std"])
            meta = cls(**raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"model metadata is malformed: {exc}") from exc
        meta.check()
        return meta

    def check(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ArtifactError(f"artifact format {self.format_version} is not {FORMAT_VERSION}")
        if self.resize != "squish":
            raise ArtifactError(f"resize mode {self.resize!r} is not supported (squish)")
        if not self.tags or len(set(self.tags)) != len(self.tags):
            raise ArtifactError("tag vocabulary is empty or has duplicates")
        if not 8 <= self.input_size <= 1024:
            raise ArtifactError(f"input size {self.input_size} is out of range")
        bad = {t: v for t, v in self.tag_thresholds.items() if t not in self.tags or not 0 < v < 1}
        if bad or not 0 < self.threshold < 1:
            raise ArtifactError(f"thresholds out of range or for unknown tags: {bad or self.threshold}")

    def thresholds(self, override: float | None = None) -> torch.Tensor:
        """Per-tag thresholds in output order; a global override replaces them all."""
        if override is not None:
            return torch.full((len(self.tags),), override)
        return torch.tensor([self.tag_thresholds.get(t, self.threshold) for t in self.tags])


def new_version(prefix: str = "m") -> str:
    return f"{prefix}{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')[:-3]}"


def save(model: nn.Module, meta: ArtifactMeta, store: Storage) -> ArtifactMeta:
    """Write weights then metadata (with the weights' sha256) under meta.version; returns final meta."""
    from safetensors.torch import save

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    blob = save(state, metadata={"version": meta.version, "arch": meta.arch})
    digest = hashlib.sha256(blob).hexdigest()
    final = ArtifactMeta(**{**asdict(meta), "weights_sha256": digest})
    store.write(f"{meta.version}/{WEIGHTS}", blob)
    store.write(f"{meta.version}/{METADATA}", final.to_json().encode())
    return final


def read_meta(store: Storage, version: str) -> ArtifactMeta:
    return ArtifactMeta.from_json(store.read(f"{version}/{METADATA}").decode())


def load(store: Storage, version: str, *, expected_sha256: str) -> tuple[nn.Module, ArtifactMeta]:
    """Load and validate: checksum, safetensors format, tensor names and shapes, vocabulary."""
    from safetensors.torch import load as load_bytes

    from tagger.architectures import build_model

    meta = read_meta(store, version)
    if meta.version != version:
        raise ArtifactError(f"metadata names version {meta.version!r}, expected {version!r}")
    blob = store.read(f"{version}/{WEIGHTS}")
    digest = hashlib.sha256(blob).hexdigest()
    if digest != expected_sha256 or digest != meta.weights_sha256:
        raise ArtifactError(f"checksum mismatch for {version}: file {digest[:12]}, registered {expected_sha256[:12]}")
    try:
        state = load_bytes(blob)
    except Exception as exc:  # safetensors raises its own Rust-side error type
        raise ArtifactError(f"{version}: weights are not a valid safetensors file: {exc}") from exc
    model = build_model(meta.arch, len(meta.tags))
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    if missing or unexpected:
        raise ArtifactError(
            f"{version}: tensors do not match {meta.arch}: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ArtifactError(
                f"{version}: {name} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, meta
