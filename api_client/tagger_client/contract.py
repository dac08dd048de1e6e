"""The wire contract shared by producers (in any language), workers and the jobs code.

Everything a message carries is JSON: task names, queue names, states and argument shapes
live here so the worker, the jobs code and clients can never disagree about them.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, Literal

TASK_TAG_BATCH = "tagger.tag_batch"
"""Celery task name (internal): args = [job_id: str, image_ids: list[int]]."""

TASK_RETRAIN = "tagger.retrain"
# Build a model version's vector index off the hot path: queued by the worker whose write ended a job.
TASK_INDEX_VECTORS = "tagger.index_vectors"
"""Celery task name of scheduled retraining (no arguments); queued by `tagger beat`."""

QUEUE_BULK = "tagger.bulk"
QUEUE_INTERACTIVE = "tagger.interactive"
QUEUE_TRAINING = "tagger.training"
QUEUE_NOTIFICATIONS = "tagger.notifications"
"""Where a job's `notify_task` message goes: consumed by the submitter's own Celery worker, not tagger's."""

MAX_KEYS_PER_MESSAGE = 1024
MAX_KEY_LENGTH = 1024
# A similar-image search: how many images it returns unless told, and at most (the CLI, the API, the client).
SIMILAR_LIMIT = 10
SIMILAR_MAX_LIMIT = 1000
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


def is_job_id(value: str) -> bool:
    """32 lowercase hex characters: a uuid4().hex, or `job_id_for(idempotency key)`."""
    return bool(_JOB_ID.match(value))


class MessageError(ValueError):
    """A task message that does not follow the contract; it is refused before any I/O."""


def validate_tag_batch_args(args: Any) -> tuple[str, list[int]]:
    """Check the positional arguments of a `tagger.tag_batch` message and return them typed.

    The message is internal (producers and workers send it): a job id and the image ids of one batch.
    """
    if not isinstance(args, list | tuple) or len(args) != 2:
        raise MessageError("tag_batch takes exactly two arguments: [job_id, image_ids]")
    job_id, ids = args
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise MessageError(f"job_id must be 32 lowercase hex characters, got {job_id!r:.80}")
    if not isinstance(ids, list) or not ids:
        raise MessageError("image_ids must be a non-empty list of integers")
    if len(ids) > MAX_KEYS_PER_MESSAGE:
        raise MessageError(f"at most {MAX_KEYS_PER_MESSAGE} images per message, got {len(ids)}")
    if not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids):
        raise MessageError("image_ids must be positive integers")
    return job_id, list(ids)


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

Priority = Literal["bulk", "interactive"]
QueryName = Literal["untagged", "stale", "missing"]


def job_id_for(idempotency_key: str) -> str:
    """The job id an idempotency key always maps to, so any client can compute it (uuid5, URL namespace)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"tagger:{idempotency_key}").hex


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """A tagging job as submitted: which images, where they live, and how to run it.

    Built once, by `JobSpec.new` (the client, the CLI) or `JobSpec.from_message` (a worker taking a
    `tagger.submit_job` message), and passed down unchanged. Every field is checked when the value is
    built, so an instance is always valid; a bad one raises MessageError saying what would be right.

    Exactly one source: `keys` (explicit storage keys), `prefix` (a storage listing, streamed), `query`
    (images in the database: `untagged`, `stale`, or `missing` any of `tags`), or `key_file` (a file of
    keys on the submitter's machine; the CLI reads it itself, so it never travels in a message).

    A listing is incremental unless `incremental` is False: it passes over the images the active version
    tagged from bytes that look the same now (size and modification time, or ETag), and counts them.
    Keys and a key file tag what they name (`incremental` may only be False there); a query selects its
    own images. `content_hash` records the SHA-256 of every image's bytes as it is tagged, and makes an
    incremental listing read what looks unchanged and compare hashes (None: the producer's
    TAGGER_CONTENT_HASH).
    """

    job_id: str
    keys: tuple[str, ...] | None = None
    prefix: str | None = None
    query: QueryName | None = None
    key_file: str | None = None
    tags: tuple[str, ...] = ()
    include: tuple[str, ...] = ()  # a listing's glob patterns to tag; () = files with an image suffix
    exclude: tuple[str, ...] = ()  # glob patterns a listing passes over, besides hidden files and NAS clutter
    storage_url: str | None = None  # None: the worker's TAGGER_STORAGE_URL (a query: where each image was read)
    priority: Priority = "bulk"
    batch_size: int | None = None  # images per task message, 1-1024; None: the worker's TAGGER_BATCH_SIZE
    idempotency_key: str | None = None
    webhook: str | None = None
    notify_task: str | None = None
    time_limit: float | None = None  # seconds from submission; then the job fails and the rest is skipped
    incremental: bool | None = None  # a listing: pass over what is unchanged since tagged (None: True); False: all
    content_hash: bool | None = None  # record SHA-256s and compare by them; None: the producer's TAGGER_CONTENT_HASH

    def __post_init__(self) -> None:
        if not isinstance(self.job_id, str) or not _JOB_ID.match(self.job_id):
            raise MessageError("job_id must be 32 lowercase hex characters (a uuid4().hex, or job_id_for(key))")
        idem = self.idempotency_key
        if idem is not None and (not isinstance(idem, str) or not idem or self.job_id != job_id_for(idem)):
            raise MessageError("with an idempotency_key, job_id must be job_id_for(idempotency_key)")
        sources = [n for n in ("keys", "prefix", "query", "key_file") if getattr(self, n) is not None]
        if len(sources) != 1:
            raise MessageError("give exactly one of keys (a list), prefix (a string) or query")
        if self.keys is not None and (
            not isinstance(self.keys, tuple)
            or not all(isinstance(k, str) and 0 < len(k) <= MAX_KEY_LENGTH for k in self.keys)
        ):
            raise MessageError(f"keys must be a list of non-empty strings of at most {MAX_KEY_LENGTH} characters")
        if self.query is not None and self.query not in QUERIES:
            raise MessageError(f"query must be one of {', '.join(QUERIES)}")
        if not isinstance(self.tags, tuple) or not all(isinstance(t, str) and t for t in self.tags):
            raise MessageError("tags must be a list of tag names")
        if self.query == "missing" and not self.tags:
            raise MessageError("the `missing` query needs tags: the tag set to look for")
        if self.tags and self.query != "missing":
            raise MessageError("tags go with query `missing` only")
        for name in ("include", "exclude"):
            patterns = getattr(self, name)
            if not isinstance(patterns, tuple) or not all(isinstance(p, str) and p for p in patterns):
                raise MessageError(f"{name} must be a list of glob patterns")
            if patterns and self.prefix is None:
                raise MessageError(f"{name} patterns filter a listing: they go with prefix")
        if self.priority not in PRIORITIES:
            raise MessageError(f"priority must be one of {', '.join(sorted(PRIORITIES))}")
        batch = self.batch_size
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 1024):
            raise MessageError(f"batch_size must be an integer from 1 to {MAX_KEYS_PER_MESSAGE}, got {batch!r}")
        limit = self.time_limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float) or not limit > 0):
            raise MessageError(f"time_limit must be a positive number of seconds, got {limit!r}")
        for name in ("incremental", "content_hash"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise MessageError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.incremental is not None and self.query is not None:
            raise MessageError("incremental goes with a prefix (a listing): a query selects its own images")
        if self.incremental and self.prefix is None:
            raise MessageError(
                "incremental needs a prefix (a listing, which says what each file's bytes are): explicit keys "
                "are tagged as named"
            )
        for name in ("prefix", "storage_url", "webhook", "notify_task", "key_file"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise MessageError(f"{name} must be a string")
        if self.webhook is not None and not self.webhook.startswith(("http://", "https://")):
            raise MessageError("webhook must be an http:// or https:// URL")
        if self.storage_url is not None and not self.storage_url.startswith(("file:///", "s3://")):
            raise MessageError("storage_url must be file:///absolute/dir or s3://bucket/prefix")

    @classmethod
    def new(cls, **values: Any) -> JobSpec:
        """A new submission: job_id from the idempotency key when there is one, else a fresh uuid4; lists
        become tuples. Raises MessageError on anything the contract refuses."""
        if values.get("job_id") is None:
            key = values.get("idempotency_key")
            values["job_id"] = job_id_for(key) if isinstance(key, str) and key else uuid.uuid4().hex
        return cls.from_message(values, allow_local=True)

    @classmethod
    def from_message(cls, kwargs: Any, *, allow_local: bool = False) -> JobSpec:
        """Check a `tagger.submit_job` message's keyword arguments and build the spec; unknown fields are refused."""
        if not isinstance(kwargs, dict):
            raise MessageError("submit_job takes keyword arguments (a JSON object)")
        values = {k: v for k, v in kwargs.items() if v is not None}
        known = set(_SUBMIT_FIELDS) | ({"key_file"} if allow_local else set())
        unknown = set(values) - known
        if unknown:
            hint = " (key_file names a file on the submitter's machine: send its keys)" if "key_file" in unknown else ""
            raise MessageError(f"unknown submit_job fields {sorted(unknown)}{hint}; known: {sorted(_SUBMIT_FIELDS)}")
        for name in ("keys", "tags", "include", "exclude"):
            if name in values:
                if not isinstance(values[name], list | tuple):
                    raise MessageError(f"{name} must be a list of strings")
                values[name] = tuple(values[name])
        return cls(**values)

    def to_message(self) -> dict[str, Any]:
        """The keyword arguments of the `tagger.submit_job` message (JSON types, None fields left out)."""
        if self.key_file is not None:
            raise MessageError("a key file is read by the submitter; send its keys instead")
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == () or (f.name == "priority" and value == "bulk"):
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @property
    def queue(self) -> str:
        """The queue this job's batches go to."""
        return PRIORITIES[self.priority]

    @property
    def passes_over_unchanged(self) -> bool:
        """Whether the listing passes over what is unchanged since tagged: a prefix's default."""
        return self.prefix is not None and self.incremental is not False

    def describe(self, storage_url: str | None = None) -> str:
        """What the job reads, for people (`tagger jobs list`); `storage_url` stands in for a default storage."""
        if self.keys is not None:
            return f"keys ({len(self.keys)})"
        if self.key_file is not None:
            return self.key_file
        if self.query is not None:
            return f"query:{self.query}" + (f" tags={','.join(self.tags)}" if self.tags else "")
        root = (self.storage_url or storage_url or "").rstrip("/")
        return f"{root}/{self.prefix}" if self.prefix else root


_SUBMIT_FIELDS = tuple(f.name for f in fields(JobSpec) if f.name != "key_file")


def validate_submit_kwargs(kwargs: Any) -> JobSpec:
    """Check a `tagger.submit_job` message: exactly one of keys, prefix or query; everything JSON-typed."""
    return JobSpec.from_message(kwargs)


def validate_control_kwargs(kwargs: Any) -> tuple[str, str]:
    if not isinstance(kwargs, dict) or set(kwargs) != {"job_id", "action"}:
        raise MessageError('control_job takes {"job_id": ..., "action": ...}')
    job_id, action = kwargs["job_id"], kwargs["action"]
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise MessageError("job_id must be 32 lowercase hex characters")
    if action not in ACTIONS:
        raise MessageError(f"action must be one of {ACTIONS}")
    return job_id, action
