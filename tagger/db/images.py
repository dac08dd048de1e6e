"""Images by identity: a storage root and a key under it. Insert what is new, return ids for all.

A producer lists a million keys: this is its hot path. On PostgreSQL a page of keys is one statement
(the keys travel as one newline-joined text, which no valid key or readable name contains); on SQLite
it is one executemany and one lookup. Neither builds a statement per key. The same lookup returns what
an incremental re-run compares: the version that last tagged each image and what its bytes were then.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import DateTime, select, text
from sqlalchemy.orm import Session

from tagger.db.schema import Storage, utcnow
from tagger.db.upsert import insert_ignore


def storage_id(session: Session, url: str) -> int:
    """The id of the storage root `url` (canonical form, see `tagger.storage.canonical_url`), created if new."""
    found = session.scalar(select(Storage.id).where(Storage.url == url))
    if found is not None:
        return int(found)
    session.execute(insert_ignore(session, Storage, [{"url": url}], ["url"]))
    return int(session.scalars(select(Storage.id).where(Storage.url == url)).one())


class ImageRecord(NamedTuple):
    """An image as a producer finds it: its id, the version that last tagged it (None: never) and what its
    bytes were when it was tagged (all None for a new image, or one whose last attempt failed)."""

    id: int
    model_version_id: int | None = None
    size_bytes: int | None = None
    mtime_ns: int | None = None
    etag: str | None = None
    sha256: str | None = None


# Known keys through the (storage_id, key) index, whatever the planner knows of the table (a join on
# `key` chose a scan of all images per page without statistics); the rest inserted. A key another
# producer inserts meanwhile is returned by neither part: `image_records` looks it up again.
_IDS_POSTGRES = """
WITH found AS (
    SELECT key, id, model_version_id, size_bytes, mtime_ns, etag, sha256
    FROM images WHERE storage_id = :storage AND key = ANY(string_to_array(:keys, E'\\n'))
),
added AS (
    INSERT INTO images (storage_id, key, created_at)
    SELECT :storage, k, now() FROM unnest(string_to_array(:keys, E'\\n')) AS k
    WHERE k NOT IN (SELECT key FROM found)
    ORDER BY k
    ON CONFLICT (storage_id, key) DO NOTHING
    RETURNING key, id
)
SELECT key, id, model_version_id, size_bytes, mtime_ns, etag, sha256 FROM found
UNION ALL SELECT key, id, NULL, NULL, NULL, NULL, NULL FROM added
"""

_IDS_SQLITE = """
SELECT key, id, model_version_id, size_bytes, mtime_ns, etag, sha256
FROM images WHERE storage_id = :storage AND key IN (SELECT value FROM json_each(:keys))
"""


def sqlite_now(session: Session) -> Any:
    """utcnow() as SQLAlchemy stores a DateTime in SQLite, for rows written with the driver's executemany
    (SQLAlchemy's per-row parameter processing was most of a producer's time there)."""
    dialect = session.get_bind().dialect
    process = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    return process(utcnow()) if process else utcnow()


def image_ids(session: Session, storage: int, keys: Sequence[str]) -> dict[str, int]:
    """key -> image id for `keys` under the storage with id `storage`, inserting the new ones."""
    return {key: found.id for key, found in image_records(session, storage, keys).items()}


def image_records(session: Session, storage: int, keys: Sequence[str]) -> dict[str, ImageRecord]:
    """key -> ImageRecord for `keys` under the storage with id `storage`, inserting the new ones.

    Keys hold no newline (`tagger.storage.validate_key`; failed names are `readable`); raises
    ValueError for one that does, rather than splitting it.
    """
    if not keys:
        return {}
    unique = list(dict.fromkeys(keys))
    if any("\n" in k or not k for k in unique):
        raise ValueError("an image key is empty or holds a newline: validate it (tagger.storage.validate_key) first")
    if session.get_bind().dialect.name == "postgresql":
        found: dict[str, ImageRecord] = {}
        todo = unique
        while todo:  # twice at most: a key inserted by another producer while this statement ran
            rows = session.execute(text(_IDS_POSTGRES), {"keys": "\n".join(todo), "storage": storage})
            found.update((key, ImageRecord(*rest)) for key, *rest in rows)
            todo = [k for k in todo if k not in found]
        return found
    now = sqlite_now(session)
    session.connection().exec_driver_sql(
        "INSERT OR IGNORE INTO images (storage_id, key, created_at) VALUES (?, ?, ?)",
        [(storage, k, now) for k in unique],
    )
    rows = session.execute(text(_IDS_SQLITE), {"keys": json.dumps(unique), "storage": storage})
    return {key: ImageRecord(*rest) for key, *rest in rows}
