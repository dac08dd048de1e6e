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
