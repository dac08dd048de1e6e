"""Signed job-completion webhooks: how tagger signs the body, and how a receiver checks it.

With TAGGER_WEBHOOK_SECRET set on the workers, every POST carries
`X-Tagger-Signature: sha256=<hex HMAC-SHA256 of the exact body>`. A receiver recomputes it with
the shared secret and compares in constant time (`verify`).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Tagger-Signature"


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for `body` (the raw request bytes)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str) -> bool:
    """Is `header` (the X-Tagger-Signature value) the signature of `body` under `secret`? Constant time."""
    return hmac.compare_digest(sign(body, secret), header)
