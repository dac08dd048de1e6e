"""Job state transitions, done in SQL so concurrent batches and producers never race."""

from __future__ import annotations

from sqlalchemy import case, update
from sqlalchemy.orm import Session

from tagger.broker.send import Send
from tagger.db.schema import Job, utcnow
from tagger.db.upsert import affected
from tagger_client.contract import QUEUE_INTERACTIVE, TASK_NOTIFY_JOB, JobState


def announce_end(send: Send | None, job_id: str) -> None:
    """A job just ended: its notifications are delivered by a task of their own (retried apart from the caller)."""
    if send is not None:
        send(TASK_NOTIFY_JOB, [job_id], QUEUE_INTERACTIVE)


def mark_running(session: Session, job_id: str) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.QUEUED)
        .values(state=JobState.RUNNING, started_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def finish_if_complete(session: Session, job_id: str) -> bool:
    """Close the job once listing has ended and every item has an outcome; true if it closed now."""
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.listing_complete.is_(True),
            Job.done + Job.failed + Job.skipped >= Job.total,
            Job.state.in_([JobState.QUEUED, JobState.RUNNING]),
        )
        .values(
            state=case((Job.failed > 0, JobState.DONE_WITH_FAILURES.value), else_=JobState.DONE.value),
            finished_at=utcnow(),
            started_at=case((Job.started_at.is_(None), utcnow()), else_=Job.started_at),
        )
        .execution_options(synchronize_session=False)
    )
    return bool(affected(result))


def fail(session: Session, job_id: str, reason: str) -> bool:
    """End an unfinished job as failed, with the reason people will read; true if it failed now.

    Its batches still in the queue are then skipped by the workers without any I/O.
    """
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_([JobState.QUEUED, JobState.RUNNING, JobState.PAUSED]))
        .values(state=JobState.FAILED, error=reason[:2000], listing_complete=True, finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(affected(result))
