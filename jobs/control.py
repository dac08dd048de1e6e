"""Cancel, pause, resume and retry a job, and its time limit: state changes in SQL, checked by every batch.

A worker reads the job's state before any I/O: batches of a cancelled (or timed-out) job are
skipped, batches of a paused job are sent back to the queue with a delay and acknowledged,
so they wait in the broker, not in a worker. A cancelled or timed-out job is over for good (neither
resume nor retry brings it back): its queued batches are taken out of the broker, and a worker that
still meets one answers it from memory (tagger.worker.ended).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from tagger.broker.send import Send, drop_queued_batches
from tagger.db.schema import Image, Job, JobItem, utcnow
from tagger.db.upsert import affected
from tagger.errors import ConfigError, NotFoundError
from tagger.jobs.lifecycle import announce_end, finish_if_complete
from tagger.jobs.sources import chunked, paged_ids
from tagger_client.contract import FINISHED_JOB_STATES, TASK_TAG_BATCH, ItemState, JobState

_ACTIVE = (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)
FINISHED = [state.value for state in FINISHED_JOB_STATES]


def _job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id!r}; see `tagger jobs list`")
    return job


def _not_allowed(job: Job, allowed: tuple[JobState, ...]) -> ConfigError:
    return ConfigError(f"job {job.id} is {job.state}; this needs it to be {' or '.join(s.value for s in allowed)}")


def _transition(sessions: sessionmaker[Session], job_id: str, allowed: tuple[JobState, ...], **values: Any) -> str:
    with sessions() as session, session.begin():
        job = _job(session, job_id)
        if JobState(job.state) not in allowed:
            raise _not_allowed(job, allowed)
        session.execute(update(Job).where(Job.id == job_id, Job.state.in_(allowed)).values(**values))
        return JobState(values.get("state", job.state)).value


def _skip_pending_items(session: Session, job_id: str) -> int:
    """Skip the job's images not written yet, now: a cancelled or expired job adds up at once (done + failed +
    skipped = total), even when its remaining batches die with a command's own broker. A batch in flight
    then writes nothing (its fence finds no pending image). Items before the job row: every write's order."""
    return affected(
        session.execute(
            update(JobItem)
            .where(JobItem.job_id == job_id, JobItem.state == ItemState.PENDING)
            .values(state=ItemState.SKIPPED, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    )


def skip_pending(session: Session, job_id: str) -> int:
    """Skip, and count on the job, the images still pending in a job that has ended: those a producer added
    while it ended (its page committed after the end's own skip). Returns how many."""
    skipped = _skip_pending_items(session, job_id)
    if skipped:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(skipped=Job.skipped + skipped)
            .execution_options(synchronize_session=False)
        )
    return skipped


def cancel(sessions: sessionmaker[Session], job_id: str, *, send: Send | None = None) -> str:
    """Every image not yet written is skipped, and the job's batches still queued are taken out of the broker
    (where `send` can: tagger.broker.send.drop_queued_batches); any other batch of it is then answered without
    I/O. Images already tagged keep their tags."""
    with sessions() as session, session.begin():
        job = _job(session, job_id)
        if JobState(job.state) not in _ACTIVE:
            raise _not_allowed(job, _ACTIVE)
        queue = job.queue
        skipped = _skip_pending_items(session, job_id)
        ended = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state.in_(_ACTIVE))
            .values(state=JobState.CANCELLED, finished_at=utcnow(), skipped=Job.skipped + skipped)
            .execution_options(synchronize_session=False)
        )
        if not affected(ended):  # it ended meanwhile: nothing of this transaction stays
            raise ConfigError(f"job {job_id} ended while it was being cancelled; see `tagger jobs show {job_id[:8]}`")
    with sessions() as session, session.begin():  # a producer's page that committed after the skip above
        skip_pending(session, job_id)
    drop_queued_batches(send, job_id, queue)
    announce_end(send, job_id)
    return JobState.CANCELLED.value


def pause(sessions: sessionmaker[Session], job_id: str, *, send: Send | None = None) -> str:
    return _transition(sessions, job_id, (JobState.QUEUED, JobState.RUNNING), state=JobState.PAUSED)


def resume(sessions: sessionmaker[Session], job_id: str, *, send: Send | None = None) -> str:
    state = _transition(sessions, job_id, (JobState.PAUSED,), state=JobState.RUNNING)
    with sessions() as session, session.begin():  # the last batch may have landed while it was paused
        closed = finish_if_complete(session, job_id)
        if closed:
            state = JobState(session.scalar(select(Job.state).where(Job.id == job_id))).value
    if closed:
        announce_end(send, job_id)
    return state


def retry_failed(sessions: sessionmaker[Session], send: Send, job_id: str) -> int:
    """Put the job's failed images back to pending and queue them again; returns how many (a name no storage
    could read keeps its failure).

    The queuing is `reconcile` for this job: any image of it still pending is queued again too,
    which is harmless (a second delivery of a written image writes nothing).
    """
    with sessions() as session, session.begin():
        job = _job(session, job_id)
        if JobState(job.state) in (JobState.CANCELLED, JobState.PAUSED):
            raise ConfigError(f"job {job_id} is {job.state}; resume it (or submit a new job) before retrying")
        if session.scalar(select(overdue()).where(Job.id == job_id)):  # it would only expire again
            raise ConfigError(f"job {job_id} passed its time limit; submit a new job to tag its images")
        # A name refused at listing is stored as its readable form, which holds a backslash that no valid key
        # holds: it can never be read, so it keeps its failure and its reason rather than gaining a wrong one.
        unreadable = exists().where(Image.id == JobItem.image_id, Image.key.contains("\\", autoescape=True))
        moved = affected(
            session.execute(
                update(JobItem)
                .where(JobItem.job_id == job_id, JobItem.state == ItemState.FAILED, ~unreadable)
                .values(state=ItemState.PENDING, error=None, attempts=0, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        )
        if not moved:
            return 0
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(failed=Job.failed - moved, state=JobState.RUNNING, finished_at=None, error=None)
        )
    reconcile(sessions, send, job_id)  # committed above, then sent: a crash here leaves them pending
    return int(moved)


def overdue() -> ColumnElement[bool]:
    """A job has a time limit and is past it (an SQL condition on `jobs`)."""
    return Job.deadline_at.is_not(None) & (Job.deadline_at < utcnow())


def expire_if_overdue(session: Session, job_id: str) -> bool:
    """Fail a job past its time limit (counted from its submission) and skip every image not yet written;
    true if it expired now. Such a job is over for good: `retry_failed` refuses it."""
    if session.scalar(select(Job.id).where(Job.id == job_id, overdue(), Job.state.in_(_ACTIVE))) is None:
        return False
    skipped = _skip_pending_items(session, job_id)
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_(_ACTIVE))
        .values(state=JobState.FAILED, error="job time limit exceeded", finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.execute(  # counted whether or not this call was the one that ended the job
        update(Job)
        .where(Job.id == job_id)
        .values(skipped=Job.skipped + skipped)
        .execution_options(synchronize_session=False)
    )
    return bool(affected(result))


def reconcile(sessions: sessionmaker[Session], send: Send, job_id: str | None = None) -> dict[str, int]:
    """Queue again every pending image of unfinished jobs (all, or one): for a broker that lost its data.
    Finished jobs whose webhook was never delivered (a worker lost mid-delivery) are announced again.

    Safe to run at any time: an image already queued is then processed twice, which writes the same rows.
    """
    with sessions() as session:
        query = select(Job.id, Job.queue, Job.batch_size).where(Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
        if job_id:
            query = query.where(Job.id == job_id)
        jobs = session.execute(query).all()
    requeued: dict[str, int] = {}
    if job_id is None or not jobs:  # finished jobs whose webhook a lost worker never delivered
        with sessions() as session:
            undelivered = select(Job.id, Job.options).where(Job.state.in_(FINISHED), Job.notified_at.is_(None))
            if job_id:
                undelivered = undelivered.where(Job.id == job_id)
            for jid, options in session.execute(undelivered).all():
                if ((options or {}).get("notify") or {}) and ((options or {}).get("webhook") or {}).get(
                    "state"
                ) != "given up":
                    announce_end(send, jid)
    for jid, queue, batch_size in jobs:
        pending = paged_ids(sessions, JobItem.job_id == jid, JobItem.state == ItemState.PENDING, join_items=True)
        requeued[jid] = 0
        for chunk in chunked(pending, batch_size):
            send(TASK_TAG_BATCH, [jid, chunk], queue)
            requeued[jid] += len(chunk)
    return requeued


def orphaned(sessions: sessionmaker[Session]) -> list[str]:
    """Unfinished jobs (queued or running, their listing complete) that still have a pending image: when the
    broker holds no message at all, waiting or in a worker's hands, nothing will ever move them.

    One indexed probe per unfinished job (its first pending item), so the cost does not grow with a job's size.
    """
    with sessions() as session:
        jobs = session.scalars(
            select(Job.id).where(Job.state.in_([JobState.QUEUED, JobState.RUNNING]), Job.listing_complete.is_(True))
        ).all()
        return [job_id for job_id in jobs if has_pending(session, job_id)]


def has_pending(session: Session, job_id: str) -> bool:
    """Whether any image of the job is still pending: one probe of the pending index (its first such item)."""
    first = select(JobItem.image_id).where(JobItem.job_id == job_id, JobItem.state == ItemState.PENDING).limit(1)
    return session.scalar(first) is not None


def heal(sessions: sessionmaker[Session], send: Send, *, broker_idle: bool) -> dict[str, int]:
    """Re-queue the pending images of jobs whose messages the broker lost (evicted, a Redis restarted without
    persistence, a batch dropped after its retries): only when `broker_idle` (no message waiting in any
    queue, none delivered and unacknowledged), which is when nothing else can move them. Safe under the
    fence: an image queued twice writes its rows once. Returns job -> images re-queued."""
    if not broker_idle:
        return {}
    healed: dict[str, int] = {}
    for job_id in orphaned(sessions):
        healed |= reconcile(sessions, send, job_id)
    return healed
