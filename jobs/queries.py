"""Database-query producers: which images need (re-)tagging, streamed by id so memory stays flat.

- `untagged`: images no model has tagged yet.
- `stale`: images last tagged by a version other than the active one (after a promotion).
- `missing`: images without a suggestion from the active model for any of the given tags.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session, sessionmaker

from tagger import registry
from tagger.db.schema import Image, Suggestion
from tagger.errors import ConfigError
from tagger.jobs.sources import paged_keys
from tagger_client.contract import QUERIES, JobSpec


def _where(session: Session, query: str, tags: Sequence[str]) -> Any:
    if query == "untagged":
        return Image.model_version_id.is_(None)
    active_id = registry.active(session).id
    if query == "stale":
        return and_(Image.model_version_id.is_not(None), Image.model_version_id != active_id)
    if query == "missing":
        if not tags:
            raise ConfigError("the `missing` query needs --tags (a tag set to look for)")
        tag_ids = list(registry.tag_ids(session, tags).values())
        return ~exists().where(
            Suggestion.image_id == Image.id,
            Suggestion.model_version_id == active_id,
            Suggestion.tag_id.in_(tag_ids),
        )
    raise ConfigError(f"unknown query {query!r}; one of {', '.join(QUERIES)}")


def _storage(session: Session, where: Any, storage_url: str | None, default: str | None) -> str:
    if storage_url:
        return storage_url
    urls = [u for u in session.scalars(select(Image.storage_url).distinct().where(where).limit(3)) if u]
    if len(urls) > 1:
        raise ConfigError(f"the matching images live in several storages ({', '.join(urls)}); pass --storage URL")
    if urls:
        return urls[0]
    if default:
        return default
    if session.scalar(select(Image.id).where(where).limit(1)) is None:
        return ""  # nothing matches: the job is empty and finishes at once
    raise ConfigError("cannot tell where these images are stored; pass --storage URL or set TAGGER_STORAGE_URL")


def query_source(
    sessions: sessionmaker[Session], spec: JobSpec, *, default_storage: str | None
) -> tuple[str, Iterator[str]]:
    """The storage and the streamed keys of the images a query selects; the where-clause is fixed first."""
    assert spec.query is not None
    with sessions() as session:
        where = _where(session, spec.query, spec.tags)
        storage = _storage(session, where, spec.storage_url, default_storage)
    # Images of this storage, or of unknown storage (rows created before storage was recorded).
    return storage, paged_keys(sessions, where, (Image.storage_url == storage) | Image.storage_url.is_(None))
