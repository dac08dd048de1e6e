"""Database-query producers: which images need (re-)tagging, streamed by id so memory stays flat.

Each image is read from the storage it was submitted from, so a query job can span several storages.

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
from tagger.db.schema import Image, Storage, Suggestion, Tag
from tagger.errors import ConfigError, NotFoundError
from tagger.jobs.sources import paged_ids
from tagger_client.contract import QUERIES, JobSpec


def _where(session: Session, query: str, tags: Sequence[str]) -> Any:
    if query == "untagged":
        return Image.model_version_id.is_(None)
    active = registry.active(session)
    active_id = active.id
    if query == "stale":
        return and_(Image.model_version_id.is_not(None), Image.model_version_id != active_id)
    if query == "missing":
        if not tags:
            raise ConfigError("the `missing` query needs --tags (a tag set to look for)")
        known = {name: tag_id for name, tag_id in session.execute(select(Tag.name, Tag.id).where(Tag.name.in_(tags)))}
        unknown = sorted(set(tags) - set(known))
        if unknown:
            raise NotFoundError(f"no tag {', '.join(map(repr, unknown))} in the vocabulary; see `tagger models show`")
        unserved = sorted(set(tags) - set(active.tags or tags))
        if unserved:
            raise ConfigError(
                f"the active model {active.version} does not suggest {', '.join(map(repr, unserved))}: no job could "
                "give an image that tag, so `missing` would select every image on every run; train a model whose "
                "labels have it, or leave it out of --tags"
            )
        tag_ids = list(known.values())
        return ~exists().where(
            Suggestion.image_id == Image.id,
            Suggestion.model_version_id == active_id,
            Suggestion.tag_id.in_(tag_ids),
        )
    raise ConfigError(f"unknown query {query!r}; one of {', '.join(QUERIES)}")


def query_ids(sessions: sessionmaker[Session], spec: JobSpec, *, storage_url: str = "") -> Iterator[int]:
    """The ids of the images a query selects, streamed by id; the where-clause is fixed before the first page.

    Images live wherever they were submitted from, so one query job can span several storages; with
    `storage_url`, only the images under that root are selected.
    """
    assert spec.query is not None
    with sessions() as session:
        where = [_where(session, spec.query, spec.tags)]
        if storage_url:
            found = session.scalar(select(Storage.id).where(Storage.url == storage_url))
            if found is None:
                known = ", ".join(session.scalars(select(Storage.url).order_by(Storage.url).limit(10))) or "none yet"
                raise NotFoundError(f"no images were ever submitted from {storage_url}; storages: {known}")
            where.append(Image.storage_id == found)
    return paged_ids(sessions, *where)
