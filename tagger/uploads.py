"""Embed with the active version in this process, as a worker would (the same loading, preprocessing and
`infer`): an image that is not in the archive (an upload a web backend checks, a file on the command
line), with nothing written, no image row and no vector; or, for `tagger embed`, the archive's images
tagged before embeddings were kept, writing their vectors and nothing else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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


@dataclass(frozen=True)
class Backfilled:
    """What `embed_missing` did: vectors written, images that could not be read or decoded (key: reason),
    and whether it stopped because another version became active."""

    version: str
    embedded: int
    failed: dict[str, str]
    swapped: bool = False


def embed_missing(
    sessions: sessionmaker[Session],
    embedder: Embedder,
    *,
    batch_size: int = 32,
    every_version: bool = False,
    limit: int | None = None,
    max_bytes: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Backfilled:
    """Give the images the active version tagged but never embedded (tagged before embeddings were kept) their
    vectors, in batches, in this process: the worker's loading, preprocessing and `infer`, and only the
    vector written (`write_vectors`), so no suggestion, tag or image row changes. With `every_version`, also
    images an older version tagged (searchable then; their suggestions stay that version's). Stops, saying
    so, when another version becomes active between batches."""
    from tagger.db.vectors import write_vectors
    from tagger.errors import PermanentError
    from tagger.storage import open_storage

    model = embedder.current()
    storages: dict[str, Any] = {}
    embedded, after = 0, 0
    failed: dict[str, str] = {}
    while limit is None or embedded + len(failed) < limit:
        with sessions() as session:
            if registry.active(session).id != model.version_id:
                return Backfilled(model.version, embedded, failed, swapped=True)
            rows = session.execute(_missing(model.version_id, every_version, after, batch_size)).all()
        if not rows:
            break
        after = rows[-1][0]
        ids, pixels = [], []
        for image_id, url, key in rows[: None if limit is None else limit - embedded - len(failed)]:
            try:
                storage = storages.get(url) or storages.setdefault(url, open_storage(url))
                pixels.append(model.preprocess(storage.read(key, max_bytes=max_bytes)))
                ids.append(image_id)
            except PermanentError as exc:
                failed[f"{url}/{key}"] = str(exc)
        if ids:
            import torch

            out = model.infer(torch.stack(pixels))
            assert out.embeddings is not None  # load_serving's smoke test checked the model gives them
            with sessions() as session, session.begin():
                write_vectors(session, model.version_id, ids, out.embeddings.numpy().astype(np.float16))
            embedded += len(ids)
            if progress is not None:
                progress(embedded)
    return Backfilled(model.version, embedded, failed)


def _missing(version_id: int, every_version: bool, after: int, limit: int) -> Any:
    """The next images past `after` (by id) tagged by `version_id` (or any, with every_version) that have no
    vector from it: (id, storage url, key)."""
    from sqlalchemy import exists, select

    from tagger.db.schema import Embedding, Image, Storage

    embedded = exists().where(Embedding.model_version_id == version_id, Embedding.image_id == Image.id)
    tagged = Image.model_version_id.is_not(None) if every_version else Image.model_version_id == version_id
    return (
        select(Image.id, Storage.url, Image.key)
        .join(Storage, Storage.id == Image.storage_id)
        .where(tagged, Image.id > after, ~embedded)
        .order_by(Image.id)
        .limit(limit)
    )
