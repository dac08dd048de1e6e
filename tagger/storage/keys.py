"""Storage keys are validated before any I/O: nothing may name a place outside the storage root.

A key that cannot be tagged (a file name that is not UTF-8, holds a control character, or is too
long) is not an error of the whole listing: it becomes one failed item, named by `readable(key)`.
"""

from __future__ import annotations

import re

from tagger.errors import InvalidKeyError

MAX_KEY_BYTES = 1024
# Anything below might refuse: a control character, a backslash, an undecodable byte, an empty, '.'
# or '..' segment (which covers a leading '/'), a drive letter. A key it does not match, of at most
# MAX_KEY_BYTES / 4 characters, is valid without the checks one by one (a producer's hot path).
_SUSPECT = re.compile(r"[\x00-\x1f\x7f\\\ud800-\udfff]|(?:^|/)\.{0,2}(?:/|$)|^.:")
_SHOWN_CHARS = 200  # a readable name longer than this is cut, with its size in bytes


def validate_key(key: object) -> str:
    """Return the key unchanged if it is a safe relative key, else raise InvalidKeyError saying why."""
    if isinstance(key, str) and len(key) <= MAX_KEY_BYTES // 4 and not _SUSPECT.search(key):
        return key
    return checked_key(key)


def checked_key(key: object) -> str:
    """`validate_key` without its fast path: each check in turn, the first that fails says why."""
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("key must be a non-empty string")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in key):
        raise InvalidKeyError(f"file name is not valid UTF-8: {readable(key)}")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKeyError(
            f"key is {len(key.encode('utf-8'))} bytes, over the limit of {MAX_KEY_BYTES}: {readable(key)}"
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise InvalidKeyError(f"key contains control characters: {readable(key)}")
    if "\\" in key:
        raise InvalidKeyError(f"key contains a backslash: {readable(key)}")
    if key.startswith("/"):
        raise InvalidKeyError(f"key is an absolute path: {readable(key)}")
    if len(key) > 1 and key[1] == ":":
        raise InvalidKeyError(f"key looks like a drive path: {readable(key)}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKeyError(f"key has an empty, '.' or '..' segment: {readable(key)}")
    return key


def readable(key: str) -> str:
    """A key as a person can read it and a database can store it: printable, valid UTF-8, not too long.

    Undecodable bytes (Python's surrogate escapes) show as \\xNN, control characters as \\t, \\n or
    \\xNN, and a backslash as \\\\, so the result of an escaped name never equals a valid key (valid
    keys hold no backslash). Names over 200 characters are cut, with their size in bytes.
    """
    out = []
    for ch in key:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        elif ch == "\\":
            out.append("\\\\")
        elif code < 32 or code == 127:
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r"}.get(ch, f"\\x{code:02x}"))
        else:
            out.append(ch)
    text = "".join(out)
    if len(text) > _SHOWN_CHARS:
        size = len(key.encode("utf-8", "surrogateescape"))
        text = f"{text[:_SHOWN_CHARS]}…\\[{size} bytes]"
    return text
