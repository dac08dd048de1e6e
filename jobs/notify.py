"""Completion notifications: a signed webhook POST and/or a named Celery task, once a job ends.

Delivery never holds up tagging: a worker posts webhooks from a thread of its own, one attempt at a
time, and each attempt's outcome is recorded on the job (`tagger jobs show`). A failed attempt is
tried again by a new message, after 1 s, 2 s, 4 s, ... (at most 5 min), 9 attempts in all; then it is
given up and the job says so. `tagger jobs reconcile` sends again whatever a lost worker left undelivered.

The payload is the job summary as JSON, with up to 100 failures. With TAGGER_WEBHOOK_SECRET set, the request carries
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

from sqlalchemy.orm import Session, sessionmaker

from tagger_client.webhooks import SIGNATURE_HEADER, sign

MAX_ATTEMPTS = 9
MAX_FAILURES = 100  # failures listed in a payload; the summary's counts cover the rest


class DeliveryError(Exception):
    """The webhook did not accept the notification; retried with backoff."""


def retry_delay(attempt: int) -> float:
    """Seconds before the attempt after `attempt` (1-based): 1, 2, 4, ... capped at 5 minutes."""
    return float(min(300, 2 ** (attempt - 1)))


def payload(sessions: sessionmaker[Session], job_id: str) -> dict[str, Any]:
    """What a notification says: the job summary and up to MAX_FAILURES failures with their reasons."""
    from tagger.jobs.progress import failures, summary

    failed = failures(sessions, job_id, limit=MAX_FAILURES)
    return summary(sessions, job_id).as_dict() | {"failures": [{"key": k, "reason": r} for k, r in failed]}


def record_attempt(sessions: sessionmaker[Session], job_id: str, *, attempt: int, error: str | None) -> None:
    """Keep the delivery's state on the job: delivered, retrying, or given up (after MAX_ATTEMPTS)."""
    from sqlalchemy import select

    from tagger.db.schema import Job, utcnow

    with sessions() as session, session.begin():
        job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one()
        options = dict(job.options or {})
        state = "delivered" if error is None else ("given up" if attempt >= MAX_ATTEMPTS else "retrying")
        options["webhook"] = {"state": state, "attempts": attempt, "last_error": error}
        job.options = options
        if error is None or attempt >= MAX_ATTEMPTS:
            job.notified_at = utcnow()


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
