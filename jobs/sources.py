"""Where a job's keys come from: a storage listing (streamed) or a file of keys."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from tagger.errors import ConfigError
from tagger.storage import Storage, is_image_key


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


def chunked(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
