"""Why a job waits, kept in the broker for when the database itself is what it waits for.

One key per job with a TTL: a note outlives no outage by long, and the first note of an outage keeps its
`since` (a later one refreshes the reason, its `updated` and the TTL). Readers ignore a note not updated
since the job last made progress.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

NOTE_SECONDS = 900  # a note older than a quarter of an hour says nothing about now: the worker rewrites it each retry


@dataclass(frozen=True)
class Note:
    reason: str
    since: datetime  # the first note of this wait
    updated: datetime  # the latest


def _key(job_id: str) -> str:
    return f"tagger.waiting.{job_id}"


def note(broker_url: str, job_id: str, reason: str, *, timeout: float = 3.0) -> None:
    """Record why `job_id` waits, keeping the first note's `since`. Raises redis's errors when the broker
    cannot be reached (the caller decides what best effort means)."""
    import redis

    with redis.Redis.from_url(broker_url, socket_timeout=timeout, socket_connect_timeout=timeout) as client:
        found = _parse(client.get(_key(job_id)))
        now = datetime.now(UTC)
        since = found.since if found else now
        value = json.dumps({"reason": reason, "since": since.isoformat(), "updated": now.isoformat()})
        client.set(_key(job_id), value, ex=NOTE_SECONDS)


def read(broker_url: str, job_id: str, *, timeout: float = 3.0) -> Note | None:
    """The note on `job_id`, or None (none, or the broker does not answer: a reader must not fail on it)."""
    return read_all(broker_url, [job_id], timeout=timeout).get(job_id)


def read_all(broker_url: str, job_ids: list[str], *, timeout: float = 3.0) -> dict[str, Note]:
    """The notes on those of `job_ids` that have one, in one round trip (a list of jobs waits on one broker
    timeout at most); empty when the broker does not answer."""
    import redis

    if not job_ids:
        return {}
    try:
        with redis.Redis.from_url(broker_url, socket_timeout=timeout, socket_connect_timeout=timeout) as client:
            raws = client.mget([_key(job_id) for job_id in job_ids])
    except redis.RedisError:
        return {}
    notes = {job_id: _parse(raw) for job_id, raw in zip(job_ids, raws, strict=True)}
    return {job_id: found for job_id, found in notes.items() if found is not None}


def _parse(raw: bytes | str | None) -> Note | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return Note(str(data["reason"]), datetime.fromisoformat(data["since"]), datetime.fromisoformat(data["updated"]))
    except (ValueError, KeyError, TypeError):
        return None
