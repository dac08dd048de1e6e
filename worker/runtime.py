"""The model a worker process serves: loaded once, swapped between batches when a new one is active."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from sqlalchemy.orm import Session

from tagger import registry
from tagger.artifact import ArtifactMeta, load
from tagger.errors import ArtifactError
from tagger.preprocess import DecodeLimits, Normalise, Preprocess
from tagger.storage import open_storage
from worker.inference import prepare

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingModel:
    """Everything one batch needs, captured together so a batch never mixes versions."""

    version_id: int
    version: str
    meta: ArtifactMeta
    model: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    preprocess: Preprocess
    normalise: Normalise
    thresholds: torch.Tensor
    tag_ids: list[int]


class ModelRuntime:
    def __init__(
        self,
        *,
        session_factory: Callable[[], Session],
        model_store: str,
        device: torch.device,
        threshold_override: float | None,
        limits: DecodeLimits,
        check_interval: float = 5.0,
    ) -> None:
        self._sessions = session_factory
        self._store = open_storage(model_store)
        self._device = device
        self._threshold = threshold_override
        self._limits = limits
        self._check_interval = check_interval
        self._serving: ServingModel | None = None
        self._checked_at = 0.0
        self._refused: set[str] = set()
        self._lock = threading.Lock()

    def current(self) -> ServingModel:
        """The model for the next batch; checks for a newly active version every few seconds."""
        now = time.monotonic()
        if self._serving is not None and now - self._checked_at < self._check_interval:
            return self._serving
        with self._lock:
            self._checked_at = now
            with self._sessions() as session:
                row = registry.active(session)
                version_id, version, sha = row.id, row.version, row.sha256
            if self._serving is not None and self._serving.version == version:
                return self._serving
            if version in self._refused and self._serving is not None:
                return self._serving
            try:
                self._serving = self._load(version_id, version, sha)
            except ArtifactError:
                self._refused.add(version)
                if self._serving is None:
                    raise
                log.exception("refused model %s; still serving %s", version, self._serving.version)
            return self._serving

    def _load(self, version_id: int, version: str, sha256: str) -> ServingModel:
        started = time.monotonic()
        model, meta = load(self._store, version, expected_sha256=sha256)
        model, dtype = prepare(model, self._device)
        with self._sessions() as session, session.begin():
            ids = registry.ensure_tags(session, meta.tags)
        serving = ServingModel(
            version_id=version_id,
            version=version,
            meta=meta,
            model=model,
            device=self._device,
            dtype=dtype,
            preprocess=Preprocess(meta.input_size, limits=self._limits),
            normalise=Normalise(meta.mean, meta.std),
            thresholds=meta.thresholds(self._threshold),
            tag_ids=[ids[t] for t in meta.tags],
        )
        smoke = torch.zeros((1, 3, meta.input_size, meta.input_size), dtype=torch.uint8)
        from worker.inference import predict

        out = predict(model, smoke, normalise=serving.normalise, device=self._device, dtype=dtype)
        if out.shape != (1, len(meta.tags)) or not torch.isfinite(out).all():
            raise ArtifactError(f"{version}: smoke forward pass gave {tuple(out.shape)} or non-finite output")
        log.info(
            "serving model %s (%s, %d tags) on %s in %.1fs",
            version,
            meta.arch,
            len(meta.tags),
            self._device,
            time.monotonic() - started,
        )
        return serving
