"""Completion notifications: a signed webhook POST and/or a named Celery task, once a job ends.

The payload is the job summary as JSON. With TAGGER_WEBHOOK_SECRET set, the request carries
`X-Tagger-Signature: sha256=<hex HMAC-SHA256 of the exact body>`; receivers recompute it with
the shared secret and compare in constant time (`tagger_client.webhooks.verify`). Delivery is at
least once: a receiver may see the same job twice (the `X-Tagger-Job` header and the body's `id`
make that easy to spot).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tagger_client.webhooks import SIGNATURE_HEADER, sign


class DeliveryError(Exception):
    """The webhook did not accept the notification; retried with backoff."""


def post_webhook(url: str, payload: dict[str, Any], *, secret: str, attempt: int, timeout: float = 10) -> int:
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "tagger-webhook/1",
        "X-Tagger-Job": str(payload.get("id", "")),
        "X-Tagger-Delivery-Attempt": str(attempt),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http/https checked on submit)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"webhook {url} answered {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DeliveryError(f"webhook {url} unreachable: {exc}") from None
