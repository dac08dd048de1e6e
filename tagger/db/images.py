"""Images by key: insert what is new, return ids for all."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from tagger.db.schema import Image
from tagger.db.upsert import insert_ignore, upsert


def image_ids(session: Session, keys: Sequence[str], *, storage_url: str | None = None) -> dict[str, int]:
    """Ids of `keys`, inserting new ones; a producer passes `storage_url` to record where they live."""
    if not keys:
        return {}
    if storage_url is None:  # the worker's path: the producer created these rows, so read first
        found = {
            key: image_id for key, image_id in session.execute(select(Image.key, Image.id).where(Image.key.in_(keys)))
        }
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if not missing:
            return found
        session.execute(insert_ignore(session, Image, [{"key": k} for k in missing], ["key"]))
    else:
        rows = [{"key": k, "storage_url": storage_url} for k in keys]
        session.execute(upsert(session, Image, rows, ["key"], ["storage_url"]))
    return {key: image_id for key, image_id in session.execute(select(Image.key, Image.id).where(Image.key.in_(keys)))}
