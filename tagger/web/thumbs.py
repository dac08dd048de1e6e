"""Thumbnails for the review pages, through the workers' safe decode (allow-list, size and pixel limits).

Named by image id, never by a path: the key comes from the database and is read through the storage
layer, whose key checks refuse `..`, absolute paths and symlinks out of the root before any I/O.
"""

from __future__ import annotations

import io
import threading
from functools import lru_cache

from tagger.model.decode import DecodeLimits, decode
from tagger.storage import Storage, open_storage

THUMB_SIZE = 256
# Decodes at once per server process: a page of large PNGs must not hold many full-size decodes in memory.
_decoding = threading.BoundedSemaphore(4)


@lru_cache(maxsize=16)
def _storage(url: str) -> Storage:
    return open_storage(url)


@lru_cache(maxsize=2048)
def thumbnail(storage_url: str, key: str, max_bytes: int, max_pixels: int) -> bytes:
    """A JPEG at most THUMB_SIZE pixels on its longer side. Raises PermanentError (bad key or image) or
    RetryableError (storage unreachable); cached per process."""
    with _decoding:
        data = _storage(storage_url).read(key, max_bytes=max_bytes)
        img = decode(data, size=THUMB_SIZE, limits=DecodeLimits(max_pixels=max_pixels))
        img.thumbnail((THUMB_SIZE, THUMB_SIZE))
        out = io.BytesIO()
        img.save(out, "JPEG", quality=85)
        return out.getvalue()
