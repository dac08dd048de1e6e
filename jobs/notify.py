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

import contextlib
import http.client
import json
import socket
import threading
import urllib.parse
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tagger_client.webhooks import SIGNATURE_HEADER, sign

MAX_ATTEMPTS = 9
MAX_FAILURES = 100  # failures listed in a payload; the summary's counts cover the rest
_ANSWER_BYTES = 65536  # of a receiver's answer body read (within the deadline); the rest is not waited for


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
    """POST the payload once; returns the receiver's 2xx status.

    One deadline of `timeout` seconds covers the whole attempt: connecting, the status line and headers,
    and the body of the answer. A receiver that trickles its answer is cut off at the deadline. No
    redirect is followed (a 3xx is a failed attempt that names where it pointed): following one would turn
    the POST into a bodyless GET or lead outside TAGGER_WEBHOOK_HOSTS. Proxies from the environment are
    not used either: the request goes to the host the job names, or nowhere.

    Raises:
        DeliveryError: no 2xx within the deadline, with the reason (status, redirect, timeout, unreachable).
    """
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "tagger-webhook/1",
        "X-Tagger-Job": str(payload.get("id", "")),
        "X-Tagger-Delivery-Attempt": str(attempt),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError(f"webhook {url} is not an http(s) URL")
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    deadline = _Deadline(connection, timeout)
    try:
        connection.connect()
        if deadline.expired:  # it fired while the socket was being made: nothing to shut yet
            raise TimeoutError
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read(_ANSWER_BYTES)
        status, location = response.status, response.getheader("Location")
    except (OSError, http.client.HTTPException) as exc:
        # The socket's own timeout (the same `timeout`) may fire a moment before the deadline's timer does
        # on a busy machine: either way the attempt ran out of its one deadline.
        if deadline.expired or isinstance(exc, TimeoutError):
            raise DeliveryError(f"webhook {url} gave no complete answer within {timeout:g} s") from None
        raise DeliveryError(f"webhook {url} unreachable: {exc}") from None
    finally:
        deadline.cancel()
        connection.close()
    if deadline.expired:
        raise DeliveryError(f"webhook {url} gave no complete answer within {timeout:g} s")
    if 300 <= status < 400:
        raise DeliveryError(
            f"webhook {url} answered {status}, a redirect to {location or 'nowhere'}: webhooks follow no "
            "redirect; give the receiver's final URL"
        )
    if not 200 <= status < 300:
        raise DeliveryError(f"webhook {url} answered {status}")
    return status


class _Deadline:
    """Shuts a connection's socket when its attempt runs out of time, which ends a blocked read at once."""

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self.expired = False
        self._connection = connection  # its socket exists once connected; before that, connect's own timeout
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.expired = True
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()
