"""The wire contract shared by producers (in any language), workers and the jobs code.

Everything a message carries is JSON: task names, queue names, states and argument shapes
live here so the worker, the jobs code and clients can never disagree about them.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

TASK_TAG_BATCH = "tagger.tag_batch"
"""Celery task name: args = [job_id: str, keys: list[str]]."""

TASK_RETRAIN = "tagger.retrain"
"""Celery task name of scheduled retraining (no arguments); queued by `tagger beat`."""

QUEUE_BULK = "tagger.bulk"
QUEUE_INTERACTIVE = "tagger.interactive"
QUEUE_TRAINING = "tagger.training"
QUEUE_NOTIFICATIONS = "tagger.notifications"
"""Where a job's `notify_task` message goes: consumed by the submitter's own Celery worker, not tagger's."""

MAX_KEYS_PER_MESSAGE = 1024
MAX_KEY_LENGTH = 1024
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    DONE_WITH_FAILURES = "done_with_failures"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_JOB_STATES


FINISHED_JOB_STATES = frozenset({JobState.DONE, JobState.DONE_WITH_FAILURES, JobState.FAILED, JobState.CANCELLED})


class ItemState(str, Enum):
    """Outcome of one image within one job."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class MessageError(ValueError):
    """A task message that does not follow the contract; it is refused before any I/O."""


def validate_tag_batch_args(args: Any) -> tuple[str, list[str]]:
    """Check the positional arguments of a `tagger.tag_batch` message and return them typed."""
    if not isinstance(args, list | tuple) or len(args) != 2:
        raise MessageError("tag_batch takes exactly two arguments: [job_id, keys]")
    job_id, keys = args
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise MessageError(f"job_id must be 32 lowercase hex characters, got {job_id!r:.80}")
    if not isinstance(keys, list) or not keys:
        raise MessageError("keys must be a non-empty list of strings")
    if len(keys) > MAX_KEYS_PER_MESSAGE:
        raise MessageError(f"at most {MAX_KEYS_PER_MESSAGE} keys per message, got {len(keys)}")
    for key in keys:
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
            raise MessageError(f"each key must be a non-empty string of at most {MAX_KEY_LENGTH} chars")
    return job_id, list(keys)


# --- Submitting a job from any language ---------------------------------------------------------

TASK_SUBMIT_JOB = "tagger.submit_job"
"""Celery task name: kwargs follow `validate_submit_kwargs`; a worker creates the job and its batches."""

TASK_CONTROL_JOB = "tagger.control_job"
"""Celery task name: kwargs = {"job_id": str, "action": "cancel" | "pause" | "resume" | "retry"}."""

TASK_NOTIFY_JOB = "tagger.notify_job"
"""Celery task name (internal): kwargs = {"job_id": str}; delivers a finished job's notifications."""

ACTIONS = ("cancel", "pause", "resume", "retry")
QUERIES = ("untagged", "stale", "missing")
PRIORITIES = {"bulk": QUEUE_BULK, "interactive": QUEUE_INTERACTIVE}
_SUBMIT_FIELDS = {
    "job_id",
    "keys",
    "prefix",
    "query",
    "tags",
    "storage_url",
    "priority",
    "batch_size",
    "idempotency_key",
    "webhook",
    "notify_task",
    "time_limit",
}


def job_id_for(idempotency_key: str) -> str:
    """The job id an idempotency key always maps to, so any client can compute it (uuid5, URL namespace)."""
    import uuid

    return uuid.uuid5(uuid.NAMESPACE_URL, f"tagger:{idempotency_key}").hex


def validate_submit_kwargs(kwargs: Any) -> dict[str, Any]:
    """Check a `tagger.submit_job` message: exactly one of keys, prefix or query; everything JSON-typed."""
    if not isinstance(kwargs, dict):
        raise MessageError("submit_job takes keyword arguments (a JSON object)")
    unknown = set(kwargs) - _SUBMIT_FIELDS
    if unknown:
        raise MessageError(f"unknown submit_job fields {sorted(unknown)}; known: {sorted(_SUBMIT_FIELDS)}")
    job_id = kwargs.get("job_id")
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise MessageError("job_id must be 32 lowercase hex characters (a uuid4().hex, or job_id_for(key))")
    idem = kwargs.get("idempotency_key")
    if idem is not None and (not isinstance(idem, str) or job_id != job_id_for(idem)):
        raise MessageError("with an idempotency_key, job_id must be job_id_for(idempotency_key)")
    sources = [name for name in ("keys", "prefix", "query") if kwargs.get(name) is not None]
    if len(sources) != 1:
        raise MessageError("give exactly one of keys (a list), prefix (a string) or query")
    keys = kwargs.get("keys")
    if keys is not None and (
        not isinstance(keys, list) or not all(isinstance(k, str) and 0 < len(k) <= MAX_KEY_LENGTH for k in keys)
    ):
        raise MessageError("keys must be a list of non-empty strings")
    if kwargs.get("query") is not None and kwargs["query"] not in QUERIES:
        raise MessageError(f"query must be one of {QUERIES}")
    if kwargs.get("priority", "bulk") not in PRIORITIES:
        raise MessageError(f"priority must be one of {sorted(PRIORITIES)}")
    batch = kwargs.get("batch_size")
    if batch is not None and (not isinstance(batch, int) or not 1 <= batch <= MAX_KEYS_PER_MESSAGE):
        raise MessageError(f"batch_size must be an integer from 1 to {MAX_KEYS_PER_MESSAGE}")
    limit = kwargs.get("time_limit")
    if limit is not None and (not isinstance(limit, int | float) or limit <= 0):
        raise MessageError("time_limit must be a positive number of seconds")
    for name in ("prefix", "storage_url", "webhook", "notify_task"):
        if kwargs.get(name) is not None and not isinstance(kwargs[name], str):
            raise MessageError(f"{name} must be a string")
    webhook = kwargs.get("webhook")
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        raise MessageError("webhook must be an http:// or https:// URL")
    tags = kwargs.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise MessageError("tags must be a list of strings")
    return dict(kwargs)


def validate_control_kwargs(kwargs: Any) -> tuple[str, str]:
    if not isinstance(kwargs, dict) or set(kwargs) != {"job_id", "action"}:
        raise MessageError('control_job takes {"job_id": ..., "action": ...}')
    job_id, action = kwargs["job_id"], kwargs["action"]
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise MessageError("job_id must be 32 lowercase hex characters")
    if action not in ACTIONS:
        raise MessageError(f"action must be one of {ACTIONS}")
    return job_id, action
