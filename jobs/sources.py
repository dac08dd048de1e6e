"""Where a job's images come from, streamed: a storage listing, explicit keys, a file of keys, or the database.

A listing passes over files that are not images (by name) and well-known clutter (hidden files,
NAS thumbnails and recycle bins); every file passed over is counted by reason, so a job can say
what it left out. Memory stays flat: one batch of keys is held at a time.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tagger.db.schema import Image, JobItem
from tagger.errors import ConfigError
from tagger.storage import Listed, Storage, is_image_key, open_storage
from tagger_client.contract import JobSpec

# Never images: hidden files and folders (.DS_Store, ._AppleDouble, .thumbnails), Synology's @eaDir
# thumbnails and #recycle, macOS zip leftovers, Windows' recycle bin and system folders. A pattern
# without a slash matches any one file or folder name in the key; with a slash, the whole key.
DEFAULT_EXCLUDE = (
    ".*",
    "@eaDir",
    "#recycle",
    "#snapshot",
    "__MACOSX",
    "$RECYCLE.BIN",
    "System Volume Information",
    "lost+found",
    "Thumbs.db",
    "desktop.ini",
)
MAX_REASONS = 50  # distinct passed-over reasons kept per job; the rest are counted under "other"


def matches(key: str, pattern: str) -> bool:
    """A pattern with a slash matches the whole key; without one, any single file or folder name in it."""
    if "/" in pattern:
        return fnmatch.fnmatchcase(key, pattern)
    return any(fnmatch.fnmatchcase(part, pattern) for part in key.split("/"))


class Patterns:
    """Patterns as `matches` reads them, compiled into two regexes: one per name in a key, one for the
    whole key. A listing asks this of every key, so it is one or two regex calls, not one fnmatch per
    pattern and name."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        names = [fnmatch.translate(p) for p in self.patterns if "/" not in p]
        whole = [fnmatch.translate(p) for p in self.patterns if "/" in p]
        self._name = re.compile("|".join(names)) if names else None
        self._whole = re.compile("|".join(whole)) if whole else None

    def first(self, key: str) -> str | None:
        """The first pattern (in the order given) that `key` matches, or None."""
        hit = (self._whole is not None and self._whole.match(key) is not None) or (
            self._name is not None and any(self._name.match(part) for part in key.split("/"))
        )
        return next((p for p in self.patterns if matches(key, p)), None) if hit else None


class PassedOver(Counter[str]):
    """Files a listing left out, counted by reason."""

    def note(self, reason: str) -> None:
        self[reason if reason in self or len(self) < MAX_REASONS else "other"] += 1


def keys_from_storage(
    storage: Storage,
    prefix: str = "",
    *,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    passed_over: PassedOver | None = None,
) -> Iterator[Listed]:
    """Stream the files of a listing that name images (or match `include`) and no exclude pattern, each
    with the fingerprint the listing gave.

    `include` replaces the image-suffix rule (`*` lists every file); `exclude` adds to DEFAULT_EXCLUDE.
    """
    included, excluded = Patterns(include), Patterns(DEFAULT_EXCLUDE + tuple(exclude))
    include = included.patterns
    skipped = passed_over if passed_over is not None else PassedOver()
    for entry in storage.list_entries(prefix, passed_over=skipped):
        key = entry.key
        hit = excluded.first(key)
        if hit is not None:
            skipped.note(f"excluded by pattern {hit!r}")
        elif include and included.first(key) is None:
            skipped.note(f"not matching --include {' '.join(include)}")
        elif not include and not is_image_key(key):
            suffix = PurePosixPath(key).suffix.lower()
            skipped.note(f"not an image file name ({suffix})" if suffix else "not an image file name (no suffix)")
        else:
            yield entry


def keys_from_file(path: Path, *, passed_over: PassedOver | None = None) -> Iterator[str]:
    """One key per line, as people make such files: a byte-order mark, Windows line ends, surrounding
    spaces and a leading `./` (from `find .`) are dropped; blank lines and `#` comments are skipped."""
    if not path.is_file():
        raise ConfigError(f"key file not found: {path}")
    skipped = passed_over if passed_over is not None else PassedOver()
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline=None) as fh:
        for line in fh:
            key = line.strip()
            if not key or key.startswith("#"):
                continue
            while key.startswith("./"):
                key = key[2:]
                skipped.note("normalised: a leading ./ removed")
            yield key


def keys_for(spec: JobSpec, storage_url: str, passed_over: PassedOver) -> Iterator[str] | Iterator[Listed]:
    """The keys of a job whose source is keys, a storage prefix (with what the listing says of each file's
    bytes) or a key file, streamed."""
    if spec.keys is not None:
        return iter(spec.keys)
    if spec.key_file is not None:
        return keys_from_file(Path(spec.key_file), passed_over=passed_over)
    if spec.prefix is not None:
        storage = open_storage(storage_url)
        return keys_from_storage(
            storage, spec.prefix, include=spec.include, exclude=spec.exclude, passed_over=passed_over
        )
    raise ConfigError("a query job reads its images from the database, not from storage")


def paged_ids(
    sessions: sessionmaker[Session], *where: Any, join_items: bool = False, page: int = 1000
) -> Iterator[int]:
    """Image ids matching `where`, ascending, one short query per page: flat memory, no long transaction."""
    base = select(Image.id)
    if join_items:
        base = base.join(JobItem, JobItem.image_id == Image.id)
    last = 0
    while True:
        with sessions() as session:
            ids = list(session.scalars(base.where(*where, Image.id > last).order_by(Image.id).limit(page)))
        if not ids:
            return
        yield from ids
        last = ids[-1]


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
