"""Similar stills: the images nearest to one in the archive, or to an embedded upload, in the active
version's space.

Every tagged image keeps the embedding the version that tagged it made (`tagger.db.vectors`). A search
compares vectors of one version only, the active one: an image it has not embedded yet (tagged by an
older version, before a hot swap or before embeddings were kept) cannot be found, and every answer
says how many such images there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tagger import registry
from tagger.db.schema import Image, Storage
from tagger.db.vectors import awaiting_vectors, nearest, vector_of
from tagger.errors import NotFoundError
from tagger_client.contract import SIMILAR_LIMIT as DEFAULT_LIMIT


@dataclass(frozen=True)
class Hit:
    image_id: int
    storage_url: str
    key: str
    similarity: float

    @property
    def location(self) -> str:
        return f"{self.storage_url}/{self.key}"


@dataclass(frozen=True)
class Similar:
    """An answer: the nearest images, most similar first, and how many tagged images the active version
    has not embedded yet (they cannot be among the hits)."""

    model_version: str
    hits: list[Hit]
    awaiting_vectors: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "awaiting_vectors": self.awaiting_vectors,
            "images": [
                {
                    "image_id": h.image_id,
                    "storage_url": h.storage_url,
                    "key": h.key,
                    "similarity": round(h.similarity, 4),
                }
                for h in self.hits
            ],
        }


def similar_to_image(
    sessions: sessionmaker[Session], image_id: int, *, limit: int = DEFAULT_LIMIT, min_similarity: float = 0.0
) -> Similar:
    """The images most like `image_id` (itself first, at similarity 1). NotFoundError when the active version
    has no vector for it: never tagged, or tagged before that version (re-tag it to embed it)."""
    with sessions() as session:
        active = registry.active(session)
        query = vector_of(session, active.id, image_id)
        if query is None:
            if session.get(Image, image_id) is None:
                raise NotFoundError(f"no image with id {image_id}")
            raise NotFoundError(
                f"image {image_id} has no embedding from the active model {active.version} yet: tag it again with "
                f"that model (`tagger tag`) to embed it; {awaiting_vectors(session, active.id)} images await theirs"
            )
        return _answer(session, active.id, active.version, query, limit, min_similarity)


def similar_to_vector(
    sessions: sessionmaker[Session],
    vector: np.ndarray,
    *,
    version_id: int,
    limit: int = DEFAULT_LIMIT,
    min_similarity: float = 0.0,
) -> Similar:
    """The images most like an embedding made by `version_id` (an upload, embedded in process): NotFoundError
    when that version is no longer the active one (the vectors would not compare)."""
    with sessions() as session:
        active = registry.active(session)
        if active.id != version_id:
            raise NotFoundError(f"the active model changed to {active.version} while embedding; search again")
        return _answer(session, active.id, active.version, vector, limit, min_similarity)


def _answer(
    session: Session, version_id: int, version: str, query: np.ndarray, limit: int, min_similarity: float
) -> Similar:
    found = nearest(session, version_id, query, limit=limit, min_similarity=min_similarity)
    where = {
        image_id: (url, key)
        for image_id, url, key in session.execute(
            select(Image.id, Storage.url, Image.key)
            .join(Storage, Storage.id == Image.storage_id)
            .where(Image.id.in_([n.image_id for n in found]))
        )
    }
    hits = [Hit(n.image_id, *where[n.image_id], n.similarity) for n in found if n.image_id in where]
    return Similar(version, hits, awaiting_vectors(session, version_id))
