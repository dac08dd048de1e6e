"""The model a worker process serves: loaded once, swapped between batches when a new one is active.

A new version is noticed by an announcement over the broker (`tagger.broker.events`) or by a
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
from tagger.errors import ArtifactError, PermanentError, RetryableError
from tagger.model.serving import DEFAULT_OPTIONS, ServingModel, ServingOptions, load_serving
from tagger.storage import Storage, open_storage
from tagger.worker import prometheus
from tagger.worker.device_decode import DeviceDecoder, OnDevice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """The version a worker process serves, with its device decode path (nvJPEG on CUDA) when enabled."""

    model: ServingModel
    on_device: OnDevice | None = None

    @property
    def version(self) -> str:
        return self.model.version


class ModelRuntime:
    """Holds the one served version of a worker process and swaps it between batches."""

    def __init__(
        self,
        *,
        session_factory: Callable[[], Session],
        device: torch.device,
        options: ServingOptions = DEFAULT_OPTIONS,
        device_decode: bool = False,
        cpu_jpeg_share: float = 0.0,
        check_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`check_interval`: seconds between the registry checks that make up for a lost announcement,
        as measured by `clock` (monotonic seconds; a test passes its own)."""
        self._clock = clock
        self._sessions = session_factory
        self._stores: dict[str, Storage] = {}
        self._device = device
        self._options = options
        self._device_decode = device_decode
        self._cpu_jpeg_share = cpu_jpeg_share
        self._check_interval = check_interval
        self._served: Served | None = None
        self._checked_at = 0.0
        self._refused: set[str] = set()
        self._refused_ids: set[str] = set()
        self._lock = threading.Lock()

    @property
    def serving_version(self) -> str | None:
        return self._served.version if self._served else None

    def current(self, active_id: int | None = None) -> Served:
        """The model for the next batch; checks the database when the periodic check is due.

        While another thread loads a new version, batches go on with the one serving. `active_id`, the
        active version as the batch just read it, closes the announcement's race: a batch that sees a
        newer active version than the one serving waits for it to load (unless it was refused), so a
        re-tag queued right after a promotion is never served by the version it replaces.
        """
        served = self._served
        stale = active_id is not None and served is not None and served.model.version_id != active_id
        if served is None or (stale and str(active_id) not in self._refused_ids):
            self.refresh()
        elif self._clock() - self._checked_at >= self._check_interval and self._lock.acquire(blocking=False):
            try:
                self._refresh()
            finally:
                self._lock.release()
        if self._served is None:
            raise ArtifactError("no usable model version is active")
        return self._served

    def refresh(self) -> None:
        """Load the active version if it is not the one serving (called per batch or on an announcement)."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        self._checked_at = self._clock()
        with self._sessions() as session:
            row = registry.active(session)
            version_id, version, sha, status = row.id, row.version, row.sha256, row.status
            tags, uri = row.tags or None, row.uri
            try:
                store_url = registry.store_url(version, uri)
            except ArtifactError as exc:
                store_url, bad_uri = "", str(exc)
        if self._served is not None and self._served.version == version:
            return
        if self._served is not None and (version in self._refused or status == "refused"):
            return
        if not store_url:
            self._refuse(version, bad_uri, version_id)
            return
        started = time.monotonic()
        try:
            store = self._stores.get(store_url) or self._stores.setdefault(store_url, open_storage(store_url))
            model = load_serving(
                store,
                version_id=version_id,
                version=version,
                sha256=sha,
                expected_tags=tags,
                tag_ids=self._tag_ids,
                device=self._device,
                options=self._options,
            )
        except (ArtifactError, PermanentError) as exc:  # a bad or missing artifact can never load: refuse it
            self._refuse(version, f"cannot load {uri}: {exc}", version_id)
            return
        except RetryableError as exc:  # the store is unreachable for now: keep serving, look again later
            log.warning(
                "cannot load model %s from %s yet (%s); still serving %s", version, uri, exc, self.serving_version
            )
            return
        on_device = (
            OnDevice(DeviceDecoder(model.meta.input_size, self._device), self._options.limits, self._cpu_jpeg_share)
            if self._device_decode
            else None
        )
        previous = self.serving_version
        self._served = Served(model, on_device)
        prometheus.served(version, previous)
        log.info(
            "serving model %s (%s, %d tags) on %s%s%s, loaded in %.1fs%s",
            version,
            model.meta.arch,
            len(model.meta.tags),
            self._device,
            ", JPEGs decoded on the device" if on_device else "",
            f", compiled for batches of {model.fixed_batch}" if model.fixed_batch else "",
            time.monotonic() - started,
            f"; replaced {previous}" if previous else "",
        )

    def _refuse(self, version: str, reason: str, version_id: int | None = None) -> None:
        prometheus.MODEL_REFUSALS.inc()
        self._refused.add(version)
        if version_id is not None:
            self._refused_ids.add(str(version_id))
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
