"""Cancel, pause, resume and retry a job, and its time limit: state changes in SQL, checked by every batch.

A worker reads the job's state before any I/O: batches of a cancelled (or timed-out) job are
skipped, batches of a paused job are sent back to the queue with a delay and acknowledged,
so they wait in the broker, not in a worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api_client.contract import QUEUE_INTERACTIVE, TASK_NOTIFY_JOB, TASK_TAG_BATCH, ItemState, JobState
from jobs.lifecycle import finish_if_complete
from jobs.sources import chunked
from tagger.db.schema import Image, Job, JobItem, utcnow
from tagger.errors import ConfigError, NotFoundError

_ACTIVE = (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)


def _transition(sessions: sessionmaker[Session], job_id: str, allowed: tuple[JobState, ...], **values: Any) -> str:
    with sessions() as session, session.begin():
        job = session.get(Job, job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}; see `tagger jobs list`")
        if JobState(job.state) not in allowed:
            raise ConfigError(
                f"job {job_id} is {job.state}; this needs it to be {' or '.join(s.value for s in allowed)}"
            )
        session.execute(update(Job).where(Job.id == job_id, Job.state.in_(allowed)).values(**values))
        return JobState(values.get("state", job.state)).value


Send = Callable[[str, list[Any], str], None]


def _notify(send: Send | None, job_id: str) -> None:
    if send is not None:
        send(TASK_NOTIFY_JOB, [job_id], QUEUE_INTERACTIVE)


def cancel(sessions: sessionmaker[Session], job_id: str, *, send: Send | None = None) -> str:
    """Remaining batches are skipped without I/O; images already tagged keep their tags."""
    state = _transition(sessions, job_id, _ACTIVE, state=JobState.CANCELLED, finished_at=utcnow())
    _notify(send, job_id)
    return state


def pause(sessions: sessionmaker[Session], job_id: str, *, send: Send | None = None) -> str:
    return _transition(sessions, job_id, (JobState.QUEUED, JobState.RUNNING), state=JobState.PAUSED)


def resume(sessions: sessionmaker[Session], job_id: str, *, send: Send | None = None) -> str:
    state = _transition(sessions, job_id, (JobState.PAUSED,), state=JobState.RUNNING)
    with sessions() as session, session.begin():  # the last batch may have landed while it was paused
        closed = finish_if_complete(session, job_id)
        if closed:
            state = JobState(session.scalar(select(Job.state).where(Job.id == job_id))).value
    if closed:
        _notify(send, job_id)
    return state


def retry_failed(sessions: sessionmaker[Session], send: Callable[[str, list[Any], str], None], job_id: str) -> int:
    """Put the job's failed images back to pending and enqueue them again; returns how many."""
    with sessions() as session, session.begin():
        job = session.get(Job, job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}; see `tagger jobs list`")
        if JobState(job.state) in (JobState.CANCELLED, JobState.PAUSED):
            raise ConfigError(f"job {job_id} is {job.state}; resume it (or submit a new job) before retrying")
        keys = list(
            session.scalars(
                select(Image.key)
                .join(JobItem, JobItem.image_id == Image.id)
                .where(JobItem.job_id == job_id, JobItem.state == ItemState.FAILED)
                .order_by(Image.key)
            )
        )
        if not keys:
            return 0
        moved = session.execute(
            update(JobItem)
            .where(JobItem.job_id == job_id, JobItem.state == ItemState.FAILED)
            .values(state=ItemState.PENDING, error=None, attempts=0, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(failed=Job.failed - moved, state=JobState.RUNNING, finished_at=None, error=None)
        )
        queue, batch_size = job.queue, job.batch_size
    for chunk in chunked(keys, batch_size):  # committed above, then sent: a crash here leaves them pending
        send(TASK_TAG_BATCH, [job_id, chunk], queue)
    return len(keys)


def expire_if_overdue(session: Session, job_id: str) -> bool:
    """Fail a job past its time limit (the rest of its batches are then skipped); true if it expired now."""
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.deadline_at.is_not(None),
            Job.deadline_at < utcnow(),
            Job.state.in_([JobState.QUEUED, JobState.RUNNING, JobState.PAUSED]),
        )
        .values(state=JobState.FAILED, error="job time limit exceeded", finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def reconcile(sessions: sessionmaker[Session], send: Send, job_id: str | None = None) -> dict[str, int]:
    """Queue again every pending image of unfinished jobs (all, or one): for a broker that lost its data.

    Safe to run at any time: an image already queued is then processed twice, which writes the same rows.
    """
    with sessions() as session:
        query = select(Job.id, Job.queue, Job.batch_size).where(Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
        if job_id:
            query = query.where(Job.id == job_id)
        jobs = session.execute(query).all()
    requeued: dict[str, int] = {}
    for jid, queue, batch_size in jobs:
        last, n = 0, 0
        while True:
            with sessions() as session:
                rows = session.execute(
                    select(Image.id, Image.key)
                    .join(JobItem, JobItem.image_id == Image.id)
                    .where(JobItem.job_id == jid, JobItem.state == ItemState.PENDING, Image.id > last)
                    .order_by(Image.id)
                    .limit(batch_size)
                ).all()
            if not rows:
                break
            send(TASK_TAG_BATCH, [jid, [key for _, key in rows]], queue)
            last, n = rows[-1][0], n + len(rows)
        requeued[jid] = n
    return requeued
