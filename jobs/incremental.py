"""Incremental re-runs: which images of a listing need tagging, decided from what the listing says of their bytes.

A listed image is passed over (counted on the job as unchanged, never made an item) when the active model
version tagged it last, from bytes the listing shows unchanged: the same size and modification time (a
file) or the same size and ETag (S3) as the worker recorded from the very read it tagged. Everything else
is tagged: a new image, one never tagged, one another version tagged (stale), one whose bytes changed, and
one whose last attempt failed (a failure clears the record).

With content hashing, the listing's word is not taken: what it calls unchanged (or says nothing of) is read
again and passed over only when its SHA-256 is the one recorded; one with no recorded hash is tagged, and
gets one. The comparison is Python over what the producer's page lookup already returned
(`tagger.db.images.image_records`): no query per image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tagger.db.images import ImageRecord
from tagger.errors import TaggerError
from tagger.storage import Fingerprint, Listed, Storage, sha256_hex


def same_bytes(listed: Fingerprint, record: ImageRecord) -> bool:
    """The listing shows the bytes that were tagged: enough is known, and size, time and ETag are all equal."""
    return listed.known and (listed.size, listed.mtime_ns, listed.etag) == (
        record.size_bytes,
        record.mtime_ns,
        record.etag,
    )


class Rehash:
    """Reads images again, in a thread pool, and says which no longer have their recorded SHA-256."""

    def __init__(self, storage: Storage, *, threads: int, max_bytes: int) -> None:
        self.storage = storage
        self.max_bytes = max_bytes
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="rehash")

    def changed(self, recorded: Sequence[tuple[str, str]]) -> list[str]:
        """The keys of (key, recorded hash) pairs whose bytes hash otherwise now, or cannot be read (their
        item then says why)."""

        def differs(pair: tuple[str, str]) -> bool:
            key, sha256 = pair
            try:
                return sha256_hex(self.storage.read(key, max_bytes=self.max_bytes)) != sha256
            except TaggerError:
                return True

        return [key for (key, _), moved in zip(recorded, self.pool.map(differs, recorded), strict=True) if moved]

    def close(self) -> None:
        self.pool.shutdown(wait=True)


@dataclass(frozen=True)
class Incremental:
    """How a listing is compared with what was tagged: against the active version (None: there is none, so
    nothing is up to date) and, with `rehash`, by content hash."""

    active_version_id: int | None
    rehash: Rehash | None = None

    def split(self, listed: Sequence[Listed], records: Mapping[str, ImageRecord]) -> tuple[list[str], int]:
        """(the keys to tag, how many were passed over as unchanged) of one page of a listing."""
        todo: list[str] = []
        unsure: list[tuple[str, str]] = []  # looks unchanged, or cannot tell: hashed again when hashing
        for key, fingerprint in listed:
            record = records[key]
            if record.model_version_id is None or record.model_version_id != self.active_version_id:
                todo.append(key)
            elif self.rehash is None:
                if not same_bytes(fingerprint, record):
                    todo.append(key)
            elif record.sha256 is not None and (not fingerprint.known or same_bytes(fingerprint, record)):
                unsure.append((key, record.sha256))
            else:
                todo.append(key)
        if unsure and self.rehash is not None:
            todo.extend(self.rehash.changed(unsure))
        return todo, len(listed) - len(todo)
