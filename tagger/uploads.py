"""Embed an image that is not in the archive (an upload a web backend checks, a file on the command line)
with the active version, in this process, as a worker would: the same loading, preprocessing and
`infer`. Nothing is written: no image row, no vector.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from tagger import registry

if TYPE_CHECKING:
    from tagger.model.decode import DecodeLimits
    from tagger.model.serving import ServingModel


class Embedder:
    """The active version loaded once and kept while it stays active (a server embeds many uploads)."""

    def __init__(self, sessions: sessionmaker[Session], *, device: str = "cpu", limits: DecodeLimits | None = None):
        self._sessions = sessions
        self._device = device
        self._limits = limits
        self._served: ServingModel | None = None
        self._lock = threading.Lock()

    def embed(self, data: bytes) -> tuple[int, np.ndarray]:
        """(the version that embedded it, its L2-normalised embedding as float32). Raises ImageError for bytes
        that are not an image tagger reads, NoActiveModelError without an active version."""
        model = self.current()
        pixels = model.preprocess(data)
        out = model.infer(pixels.unsqueeze(0))
        assert out.embeddings is not None  # load_serving's smoke test checked the model gives them
        return model.version_id, out.embeddings[0].float().numpy()

    def current(self) -> ServingModel:
        """The active version, loaded here the first time and again only when another becomes active."""
        from tagger.model.device import pick_device
        from tagger.model.serving import ServingOptions, load_serving
        from tagger.storage import open_storage

        with self._sessions() as session:
            row = registry.active(session)
            version_id, version, sha, tags, uri = row.id, row.version, row.sha256, row.tags or None, row.uri
        with self._lock:
            if self._served is None or self._served.version_id != version_id:
                options = ServingOptions(limits=self._limits) if self._limits else ServingOptions()
                self._served = load_serving(
                    open_storage(registry.store_url(version, uri)),
                    version_id=version_id,
                    version=version,
                    sha256=sha,
                    expected_tags=tags,
                    tag_ids=lambda names: list(range(len(names))),  # embedding only: no suggestion is written
                    device=pick_device(self._device),
                    options=options,
                )
            return self._served
