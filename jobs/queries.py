"""Database-query producers: which images need (re-)tagging, streamed by id so memory stays flat.

- `untagged`: images no model has tagged yet.
- `stale`: images last tagged by a version other than the active one (after a promotion).
- `missing`: images without a suggestion from the active model for any of the given tags.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session, sessionmaker

from api_client.contract import QUEUE_BULK
from jobs.producer import Submitted, submit
from jobs.sources import paged_keys
from tagger import registry
from tagger.db.schema import Image, Suggestion
from tagger.errors import ConfigError

QUERIES = ("untagged", "stale", "missing")


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


def submit_query(
    sessions: sessionmaker[Session],
    send: Callable[[str, list[Any], str], None],
    *,
    query: str,
    batch_size: int,
    tags: Sequence[str] = (),
    storage_url: str | None = None,
    default_storage: str | None = None,
    queue: str = QUEUE_BULK,
    idempotency_key: str | None = None,
    options: dict[str, Any] | None = None,
    time_limit: float | None = None,
) -> Submitted:
    """A job over the images a query selects; the where-clause is fixed before the first key is read."""
    with sessions() as session:
        where = _where(session, query, tags)
        storage = _storage(session, where, storage_url, default_storage)
    source = f"query:{query}" + (f" tags={','.join(tags)}" if tags else "")
    return submit(
        sessions,
        send,
        source=source,
        storage_url=storage,
        # Images of this storage, or of unknown storage (rows created before storage was recorded).
        keys=paged_keys(sessions, where, (Image.storage_url == storage) | Image.storage_url.is_(None)),
        batch_size=batch_size,
        queue=queue,
        idempotency_key=idempotency_key,
        options=options,
        time_limit=time_limit,
    )
