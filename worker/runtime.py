"""The model a worker process serves: loaded once, swapped between batches when a new one is active.

A new version is noticed by an announcement over the broker (`tagger.model_events`) or by a
periodic check of the database. It is loaded and validated beside the old one (checksum,
tensor names and shapes, tag vocabulary, a smoke forward pass); only then does one reference
change. A batch takes that reference once, so no batch mixes versions. A version that fails
validation is refused: the refusal is recorded, the active flag goes back to the version
still serving, and the old model keeps serving.
"""

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
from tagger.storage import Storage, open_storage
from worker.device_decode import DeviceDecoder, OnDevice
from worker.inference import compile_for_serving, predict, prepare

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
    on_device: OnDevice | None = None  # JPEGs decoded on the device (nvJPEG on CUDA)
    fixed_batch: int | None = None  # a compiled model's one batch shape


@dataclass(frozen=True)
class ServingOptions:
    """How a worker serves any version: decoding, compilation and thresholds."""

    threshold_override: float | None = None
    limits: DecodeLimits = DecodeLimits()
    device_decode: bool = False
    cpu_jpeg_share: float = 0.0  # with device_decode: the JPEGs Pillow decodes beside the device
    compile_batch: int | None = None  # torch.compile for this batch size; None: eager


def load_serving(
    store: Storage,
    *,
    version_id: int,
    version: str,
    sha256: str,
    expected_tags: list[str] | None,
    tag_ids: Callable[[list[str]], list[int]],
    device: torch.device,
    options: ServingOptions = ServingOptions(),
) -> ServingModel:
    """Load one version and prove it works, or raise ArtifactError; the caller's current model is untouched."""
    model, meta = load(store, version, expected_sha256=sha256)
    if expected_tags is not None and list(expected_tags) != list(meta.tags):
        raise ArtifactError(f"{version}: artifact tag vocabulary differs from the registered one")
    model, dtype = prepare(model, device)
    normalise = Normalise(meta.mean, meta.std)
    smoke = torch.zeros((1, 3, meta.input_size, meta.input_size), dtype=torch.uint8)
    out = predict(model, smoke, normalise=normalise, device=device, dtype=dtype)
    if out.shape != (1, len(meta.tags)) or not torch.isfinite(out).all():
        raise ArtifactError(f"{version}: smoke forward pass gave {tuple(out.shape)} or non-finite output")
    fixed_batch = None
    if options.compile_batch:
        try:
            model = compile_for_serving(
                model,
                batch_size=options.compile_batch,
                input_size=meta.input_size,
                normalise=normalise,
                device=device,
                dtype=dtype,
            )
            fixed_batch = options.compile_batch
        except Exception:  # the artifact is fine; this machine's compiler is not: serve it eager
            log.exception("%s: torch.compile failed; serving the eager model", version)
    return ServingModel(
        version_id=version_id,
        version=version,
        meta=meta,
        model=model,
        device=device,
        dtype=dtype,
        preprocess=Preprocess(meta.input_size, limits=options.limits),
        on_device=(
            OnDevice(DeviceDecoder(meta.input_size, device), options.limits, options.cpu_jpeg_share)
            if options.device_decode
            else None
        ),
        normalise=normalise,
        thresholds=meta.thresholds(options.threshold_override),
        tag_ids=tag_ids(meta.tags),
        fixed_batch=fixed_batch,
    )


class ModelRuntime:
    def __init__(
        self,
        *,
        session_factory: Callable[[], Session],
        model_store: str,
        device: torch.device,
        options: ServingOptions = ServingOptions(),
        check_interval: float = 5.0,
    ) -> None:
        self._sessions = session_factory
        self._store = open_storage(model_store)
        self._device = device
        self._options = options
        self._check_interval = check_interval
        self._serving: ServingModel | None = None
        self._checked_at = 0.0
        self._refused: set[str] = set()
        self._lock = threading.Lock()

    @property
    def serving_version(self) -> str | None:
        return self._serving.version if self._serving else None

    def current(self) -> ServingModel:
        """The model for the next batch; checks the database when the periodic check is due.

        While another thread loads a new version, batches go on with the one serving.
        """
        if self._serving is None:
            self.refresh()
        elif time.monotonic() - self._checked_at >= self._check_interval and self._lock.acquire(blocking=False):
            try:
                self._refresh()
            finally:
                self._lock.release()
        if self._serving is None:
            raise ArtifactError("no usable model version is active")
        return self._serving

    def refresh(self) -> None:
        """Load the active version if it is not the one serving (called per batch or on an announcement)."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        self._checked_at = time.monotonic()
        with self._sessions() as session:
            row = registry.active(session)
            version_id, version, sha, status = row.id, row.version, row.sha256, row.status
            tags = row.tags or None
        if self._serving is not None and self._serving.version == version:
            return
        if self._serving is not None and (version in self._refused or status == "refused"):
            return
        started = time.monotonic()
        try:
            serving = load_serving(
                self._store,
                version_id=version_id,
                version=version,
                sha256=sha,
                expected_tags=tags,
                tag_ids=self._tag_ids,
                device=self._device,
                options=self._options,
            )
        except ArtifactError as exc:
            self._refuse(version, str(exc))
            return
        previous = self.serving_version
        self._serving = serving
        log.info(
            "serving model %s (%s, %d tags) on %s%s%s, loaded in %.1fs%s",
            version,
            serving.meta.arch,
            len(serving.meta.tags),
            self._device,
            ", JPEGs decoded on the device" if serving.on_device else "",
            f", compiled for batches of {serving.fixed_batch}" if serving.fixed_batch else "",
            time.monotonic() - started,
            f"; replaced {previous}" if previous else "",
        )

    def _refuse(self, version: str, reason: str) -> None:
        self._refused.add(version)
        fallback = self.serving_version
        with self._sessions() as session, session.begin():
            rolled_back = registry.refuse(session, version, reason, fallback=fallback)
        if fallback:
            log.error(
                "refused model %s: %s; still serving %s%s",
                version,
                reason,
                fallback,
                " (re-activated)" if rolled_back else "",
            )
        else:
            log.error("refused model %s: %s; no model to serve", version, reason)

    def _tag_ids(self, names: list[str]) -> list[int]:
        with self._sessions() as session:
            ids = registry.tag_ids(session, names)
        return [ids[n] for n in names]
