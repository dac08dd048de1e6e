"""Images by key: insert what is new, return ids for all."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from tagger.db.schema import Image
from tagger.db.upsert import insert_ignore


def image_ids(session: Session, keys: Sequence[str]) -> dict[str, int]:
    if not keys:
        return {}
    session.execute(insert_ignore(session, Image, [{"key": k} for k in keys], ["key"]))
    return {key: image_id for key, image_id in session.execute(select(Image.key, Image.id).where(Image.key.in_(keys)))}
