"""Images by identity: a storage root and a key under it. Insert what is new, return ids for all."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from tagger.db.schema import Image, Storage
from tagger.db.upsert import insert_ignore


def storage_id(session: Session, url: str) -> int:
    """The id of the storage root `url` (canonical form, see `tagger.storage.canonical_url`), created if new."""
    found = session.scalar(select(Storage.id).where(Storage.url == url))
    if found is not None:
        return int(found)
    session.execute(insert_ignore(session, Storage, [{"url": url}], ["url"]))
    return int(session.scalars(select(Storage.id).where(Storage.url == url)).one())


def image_ids(session: Session, storage: int, keys: Sequence[str]) -> dict[str, int]:
    """key -> image id for `keys` under the storage with id `storage`, inserting the new ones."""
    if not keys:
        return {}
    unique = list(dict.fromkeys(keys))
    query = select(Image.key, Image.id).where(Image.storage_id == storage, Image.key.in_(unique))
    found = {key: image_id for key, image_id in session.execute(query)}
    missing = [k for k in unique if k not in found]
    if missing:
        session.execute(
            insert_ignore(session, Image, [{"storage_id": storage, "key": k} for k in missing], ["storage_id", "key"])
        )
        found.update({key: image_id for key, image_id in session.execute(query)})
    return found
