"""The storage interface: stream keys under a prefix, read and write bytes by key."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Protocol

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


class Storage(Protocol):
    url: str

    def list_keys(self, prefix: str = "", *, passed_over: Counter[str] | None = None) -> Iterator[str]:
        """Yield every file's key under prefix, streaming: memory stays flat for millions of keys.

        What the storage itself cannot list (a link out of the root, an unreadable folder) is counted
        in `passed_over` by reason instead of stopping the listing.
        """
        ...

    def check(self, prefix: str = "") -> None:
        """Raise ObjectMissingError (saying what does exist, where it can) unless the root, and the
        prefix under it, can be listed: a listing of nothing must not pass for an empty archive."""
        ...

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """Bytes stored under key; ImageError-free, raises ObjectMissingError or StorageError."""
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
