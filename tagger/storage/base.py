"""The storage interface: stream keys under a prefix, read and write bytes by key."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from typing import NamedTuple, Protocol

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


class Fingerprint(NamedTuple):
    """What an object's bytes were, as its storage tells without reading them: the size and a file's
    modification time (ns) or an S3 ETag; and, where the reader hashed the bytes, their SHA-256.

    A listing gives the first three; a worker's read gives them again for the very bytes it tagged (and
    the hash when the job asks for it), and that is what is recorded. A re-run compares the two.
    """

    size: int | None = None
    mtime_ns: int | None = None
    etag: str | None = None
    sha256: str | None = None

    @property
    def known(self) -> bool:
        """Enough to tell a change: the size, and a modification time or an ETag."""
        return self.size is not None and (self.mtime_ns is not None or self.etag is not None)


UNKNOWN = Fingerprint()


def sha256_hex(data: bytes) -> str:
    """The content hash a fingerprint records (lower-case hex), defined once for the worker and the producer."""
    return hashlib.sha256(data).hexdigest()


class Listed(NamedTuple):
    """One file of a listing: its key and what the listing said of its bytes."""

    key: str
    fingerprint: Fingerprint = UNKNOWN


class Blob(NamedTuple):
    """Bytes as read, with what the storage said of them in the same request (a file's fstat, S3's headers)."""

    data: bytes
    fingerprint: Fingerprint


class Storage(Protocol):
    url: str

    def list_entries(self, prefix: str = "", *, passed_over: Counter[str] | None = None) -> Iterator[Listed]:
        """Yield every file under prefix with its fingerprint, streaming: memory stays flat for millions.

        The fingerprint comes with the listing itself (a file's stat, ListObjectsV2's size and ETag), never
        from a request of its own. What the storage itself cannot list (a link out of the root, an
        unreadable folder) is counted in `passed_over` by reason instead of stopping the listing.
        """
        ...

    def check(self, prefix: str = "") -> None:
        """Raise ObjectMissingError (saying what does exist, where it can) unless the root, and the
        prefix under it, can be listed: a listing of nothing must not pass for an empty archive."""
        ...

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """Bytes stored under key; raises ObjectMissingError, StorageError, or ImageError over `max_bytes`."""
        ...

    def fetch(self, key: str, *, max_bytes: int | None = None) -> Blob:
        """`read`, with the fingerprint of the bytes read (from the same request: no second one)."""
        ...

    def write(self, key: str, data: bytes) -> None: ...

    def exists(self, key: str) -> bool: ...

    def create(self) -> bool:
        """Make the root exist (a folder, a bucket); True if it was created now, False if it was there."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object under `key`; one that is not there is not an error."""
        ...


def is_image_key(key: str) -> bool:
    dot = key.rfind(".")
    return dot != -1 and key[dot:].lower() in IMAGE_SUFFIXES
