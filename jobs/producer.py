"""Create a job and fill it with batches: each batch is committed to the database, then enqueued."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from tagger.db.images import image_ids
from tagger.db.schema import Job, JobItem, utcnow
from tagger.db.upsert import insert_ignore
from tagger.errors import ConfigError
from tagger.jobs.lifecycle import Send, announce_end, finish_if_complete
from tagger.jobs.sources import chunked
from tagger.settings import Settings
from tagger.storage import validate_key
from tagger_client.contract import QUEUE_BULK, TASK_TAG_BATCH, JobSpec

DEFAULT_MAX_ATTEMPTS = 5  # deliveries per image: a poison image fails with a reason instead of looping


@dataclass(frozen=True)
class Submitted:
    job_id: str
    created: bool


def create_job(
    sessions: sessionmaker[Session],
    spec: JobSpec,
    *,
    source: str,
    storage_url: str,
    batch_size: int,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> Submitted:
    """Insert the job row; the same idempotency key (or job id) always returns the same job.

    `created` is also true for an existing job whose listing never completed (a producer that
    crashed mid-listing), so that submitting again finishes the listing.
    """
    key = spec.idempotency_key
    notify = {name: value for name, value in (("webhook", spec.webhook), ("notify_task", spec.notify_task)) if value}
    with sessions() as session, session.begin():
        found = session.execute(
            select(Job.id, Job.listing_complete).where(
                (Job.id == spec.job_id) | (Job.idempotency_key == key) if key else Job.id == spec.job_id
            )
        ).first()
        if found:
            return Submitted(found[0], created=not found[1])
        session.add(
            Job(
                id=spec.job_id,
                source=source,
                storage_url=storage_url,
                queue=spec.queue,
                batch_size=batch_size,
                idempotency_key=key,
                options={"notify": notify},
                max_attempts=max_attempts,
                deadline_at=utcnow() + timedelta(seconds=spec.time_limit) if spec.time_limit else None,
            )
        )
    return Submitted(spec.job_id, created=True)


def enqueue_keys(
    sessions: sessionmaker[Session],
    send: Send,
    *,
    job_id: str,
    keys: Iterable[str],
    batch_size: int,
    queue: str = QUEUE_BULK,
    storage_url: str | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Stream keys into batches; returns how many new items the job received.

    Keys are validated before any I/O; an invalid one aborts the submission with its reason.
    Memory stays flat: one batch of keys is held at a time.
    """
    total = 0
    for chunk in chunked(keys, batch_size):
        chunk = list(dict.fromkeys(validate_key(k) for k in chunk))
        with sessions() as session, session.begin():
            ids = image_ids(session, chunk, storage_url=storage_url)
            rows = [{"job_id": job_id, "image_id": ids[k]} for k in chunk]
            inserted = session.execute(
                insert_ignore(session, JobItem, rows, ["job_id", "image_id"]).returning(JobItem.image_id)
            )
            added = len(inserted.all())
            session.execute(
                update(Job).where(Job.id == job_id).values(total=Job.total + added, batches=Job.batches + 1)
            )
        send(TASK_TAG_BATCH, [job_id, chunk], queue)
        total += added
        if on_batch:
            on_batch(len(chunk))
    with sessions() as session, session.begin():
        session.execute(update(Job).where(Job.id == job_id).values(listing_complete=True))
        closed = finish_if_complete(session, job_id)
    if closed:  # every item was already done (or there were none): the job ends here
        announce_end(send, job_id)
    return total


def submit(sessions: sessionmaker[Session], send: Send, spec: JobSpec, settings: Settings) -> Submitted:
    """Create the job `spec` describes and, unless its listing already completed, fill it with batches.

    Defaults come from `settings` once, here: the batch size and, for keys and prefixes, the storage.
    """
    from tagger.jobs.queries import query_source
    from tagger.jobs.sources import keys_for

    batch_size = spec.batch_size or settings.batch_size
    if spec.query is not None:
        storage_url, keys = query_source(sessions, spec, default_storage=settings.storage_url)
    else:
        storage_url = spec.storage_url or settings.storage_url
        if not storage_url:
            raise ConfigError("no storage: pass a storage URL or set TAGGER_STORAGE_URL (file:///dir or s3://bucket)")
        keys = keys_for(spec, storage_url)
    submitted = create_job(
        sessions, spec, source=spec.describe(storage_url), storage_url=storage_url, batch_size=batch_size
    )
    if submitted.created:
        enqueue_keys(
            sessions,
            send,
            job_id=submitted.job_id,
            keys=keys,
            batch_size=batch_size,
            queue=spec.queue,
            storage_url=storage_url,
        )
    return submitted


def celery_sender(app: Any) -> Send:
    def send(task: str, args: list[Any], queue: str) -> None:
        app.send_task(task, args=args, queue=queue)

    return send


def broker_sender(settings: Settings, broker_url: str | None = None) -> Send:
    """A sender to TAGGER_BROKER_URL (or `broker_url`) through a producer-only Celery app (no torch)."""
    from tagger.celeryconfig import make_producer_app

    url = broker_url or settings.broker_url
    if not url:
        raise ConfigError("this needs TAGGER_BROKER_URL, the Redis the workers listen on")
    return celery_sender(make_producer_app(settings, url))
