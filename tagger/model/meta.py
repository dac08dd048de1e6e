"""What a model artifact says about itself, as plain JSON: readable without torch.

The registry, the CLI's read-only commands and the producers use it; only loading weights needs torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from tagger.errors import ArtifactError

# The input sizes an artifact may declare (px, square): what a worker loads and `tagger train` accepts.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 8, 1024

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
METADATA = "model.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    # The held-out stills' JointEnergy, 0th..100th percentile (`tagger.model.familiarity`); empty: not recorded.
    energy_quantiles: list[float] = field(default_factory=list)
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
            # A field a newer tagger added (what a change to the format itself would not be: that bumps
            # format_version) is left out, so workers of the last release load a newer training's model
            # during a rolling upgrade instead of refusing it as malformed.
            known = {f.name for f in fields(cls)}
            meta = cls(**{k: v for k, v in raw.items() if k in known})
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
        if not MIN_INPUT_SIZE <= self.input_size <= MAX_INPUT_SIZE:
            raise ArtifactError(f"input size {self.input_size} is out of range")
        bad = {t: v for t, v in self.tag_thresholds.items() if t not in self.tags or not 0 < v < 1}
        if bad or not 0 < self.threshold < 1:
            raise ArtifactError(f"thresholds out of range or for unknown tags: {bad or self.threshold}")

    def thresholds(self, override: float | None = None) -> list[float]:
        """Per-tag thresholds in output order (one per tag); a global override replaces them all."""
        if override is not None:
            return [override] * len(self.tags)
        return [self.tag_thresholds.get(t, self.threshold) for t in self.tags]


def new_version(prefix: str = "m") -> str:
    return f"{prefix}{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')[:-3]}"
