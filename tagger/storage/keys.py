"""Storage keys are validated before any I/O: nothing may name a place outside the storage root."""

from __future__ import annotations

from tagger.errors import InvalidKeyError

MAX_KEY_BYTES = 1024


def validate_key(key: object) -> str:
    """Return the key unchanged if it is a safe relative key, else raise InvalidKeyError."""
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("key must be a non-empty string")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"key longer than {MAX_KEY_BYTES} bytes")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise InvalidKeyError(f"key contains control characters: {key!r:.80}")
    if "\\" in key:
        raise InvalidKeyError(f"key contains a backslash: {key!r:.80}")
    if key.startswith("/"):
        raise InvalidKeyError(f"key is an absolute path: {key!r:.80}")
    if len(key) > 1 and key[1] == ":":
        raise InvalidKeyError(f"key looks like a drive path: {key!r:.80}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKeyError(f"key has an empty, '.' or '..' segment: {key!r:.80}")
    return key
