"""Where a job's keys come from: a storage listing, a file of keys, or the database (all streamed)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tagger.db.schema import Image, JobItem
from tagger.errors import ConfigError
from tagger.storage import Storage, is_image_key, open_storage
from tagger_client.contract import JobSpec


def keys_for(spec: JobSpec, storage_url: str) -> Iterator[str]:
    """The keys of a job whose source is keys, a storage prefix or a key file, streamed."""
    if spec.keys is not None:
        return iter(spec.keys)
    if spec.key_file is not None:
        return keys_from_file(Path(spec.key_file))
    if spec.prefix is not None:
        return keys_from_storage(open_storage(storage_url), spec.prefix, images_only="*" not in spec.include)
    raise ConfigError("a query job reads its images from the database, not from storage")


def keys_from_storage(storage: Storage, prefix: str = "", *, images_only: bool = True) -> Iterator[str]:
    """Stream keys from a listing; only names with an image suffix unless images_only is False."""
    for key in storage.list_keys(prefix):
        if not images_only or is_image_key(key):
            yield key


def keys_from_file(path: Path) -> Iterator[str]:
    """One key per line; blank lines and lines starting with '#' are ignored."""
    if not path.is_file():
        raise ConfigError(f"key file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            key = line.strip()
            if key and not key.startswith("#"):
                yield key


def paged_keys(
    sessions: sessionmaker[Session], *where: Any, join_items: bool = False, page: int = 1000
) -> Iterator[str]:
    """Image keys matching `where`, by ascending id, one short query per page: flat memory, no long transaction."""
    base = select(Image.id, Image.key)
    if join_items:
        base = base.join(JobItem, JobItem.image_id == Image.id)
    last = 0
    while True:
        with sessions() as session:
            rows = session.execute(base.where(*where, Image.id > last).order_by(Image.id).limit(page)).all()
        if not rows:
            return
        yield from (key for _, key in rows)
        last = rows[-1][0]


def chunked(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
