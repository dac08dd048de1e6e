"""Storage: where images and model artifacts live (a local folder or an S3 bucket/prefix)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from tagger.errors import ConfigError, NotFoundError
from tagger.storage.base import UNKNOWN, Blob, Fingerprint, Listed, Storage, is_image_key, sha256_hex
from tagger.storage.keys import readable, validate_key
from tagger.storage.local import LocalStorage
from tagger.storage.s3 import S3Storage

__all__ = [
    "UNKNOWN",
    "Blob",
    "Fingerprint",
    "Listed",
    "Storage",
    "LocalStorage",
    "S3Storage",
    "canonical_url",
    "open_storage",
    "is_image_key",
    "sha256_hex",
    "readable",
    "validate_key",
    "storage_url_for",
]


def open_storage(url: str) -> Storage:
    """Open `file:///dir` or `s3://bucket/prefix`; anything else is a configuration error."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"file URLs must be local: file:///absolute/path, got {url!r}")
        return LocalStorage(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        return S3Storage(parsed.netloc, unquote(parsed.path))
    raise ConfigError(f"storage URL {url!r}: use file:///absolute/dir or s3://bucket/prefix")


def storage_url_for(source: str) -> str:
    """Turn a CLI source (a folder path, file:// or s3:// URL) into a storage URL."""
    if source.startswith(("s3://", "file://")):
        return source
    path = Path(source)
    if not path.exists():
        raise NotFoundError(f"no folder {source!r}: nothing is there (a folder, s3://bucket/prefix or file:// URL)")
    if not path.is_dir():
        raise ConfigError(f"{source!r} is not a folder, an s3://bucket/prefix or a file:// URL")
    return path.resolve().as_uri()


def canonical_url(url: str) -> str:
    """The one spelling of a storage root (an image's identity includes it): `file:///absolute/dir`, resolved,
    or `s3://bucket[/prefix]`, without a trailing slash. Raises ConfigError for anything else."""
    return open_storage(url).url
