"""Job history within bounds: finished jobs older than the retention keep their row, their counts and the
items of their failed images with the reasons; the per-image rows of their done and skipped images go.

Those rows are most of the database after a few full runs (one per image per job) and nothing reads them
once a job has ended: `tagger results` shows an image's tags from the image itself and its latest failure
from the failed items kept here. Deleting is done in bounded transactions (`batch` rows each, one range of
the (job, state, image) index after the last image deleted), so workers keep writing meanwhile; a job
that is running again (a retry) is left alone, batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from tagger.db.schema import Job, JobItem, utcnow
from tagger.db.upsert import affected
from tagger_client.contract import FINISHED_JOB_STATES, ItemState
from tagger_client.paging import among

FINISHED = sorted(state.value for state in FINISHED_JOB_STATES)
PRUNED_STATES = (ItemState.DONE.value, ItemState.SKIPPED.value)


@dataclass(frozen=True)
class Prunable:
    """A finished job past the retention, with the per-image rows it still holds (by the job's own counts:
    an estimate after an interrupted prune; `held` counts them)."""

    id: str
    state: str
    finished_at: datetime
    done: int
    skipped: int
    failed: int


def prunable(sessions: sessionmaker[Session], older_than: timedelta) -> list[Prunable]:
    """Finished jobs that ended more than `older_than` ago and still hold rows of done or skipped images
    (never pruned, or finished again after a retry since), oldest first."""
    cutoff = utcnow() - older_than
    with sessions() as session:
        rows = session.execute(
            select(Job.id, Job.state, Job.finished_at, Job.done, Job.skipped, Job.failed)
            .where(
                Job.state.in_(FINISHED),
                Job.finished_at < cutoff,
                or_(Job.items_pruned_at.is_(None), Job.items_pruned_at < Job.finished_at),
            )
            .order_by(Job.finished_at, Job.id)
        ).all()
    return [
        Prunable(i, state, finished, done, skipped, failed)
        for i, state, finished, done, skipped, failed in rows
        if finished
    ]


def held(sessions: sessionmaker[Session], job_id: str) -> dict[str, int]:
    """The job's item rows by state (done, skipped, failed), counted from the index: what a prune would
    delete and keep."""
    with sessions() as session:
        rows = session.execute(
            select(JobItem.state, func.count())
            .where(JobItem.job_id == job_id, JobItem.state.in_([*PRUNED_STATES, ItemState.FAILED.value]))
            .group_by(JobItem.state)
        ).all()
    return {state: int(n) for state, n in rows}


def prune_job(
    sessions: sessionmaker[Session], job_id: str, *, batch: int = 5000, progress: Callable[[int], None] | None = None
) -> int:
    """Delete the job's rows of done and skipped images, `batch` at a time, each batch its own transaction
    and only while the job is still finished; then record when. Returns the rows deleted."""
    still_finished = exists().where(Job.id == job_id, Job.state.in_(FINISHED))
    deleted = 0
    for state in PRUNED_STATES:
        after = 0
        while True:
            with sessions() as session, session.begin():
                ids = list(
                    session.scalars(
                        select(JobItem.image_id)
                        .where(JobItem.job_id == job_id, JobItem.state == state, JobItem.image_id > after)
                        .order_by(JobItem.image_id)
                        .limit(batch)
                    )
                )
                if not ids:
                    break
                gone = affected(
                    session.execute(
                        delete(JobItem)
                        .where(
                            JobItem.job_id == job_id,
                            JobItem.state == state,
                            among(session.connection(), JobItem.image_id, ids),
                            still_finished,
                        )
                        .execution_options(synchronize_session=False)
                    )
                )
            if not gone:
                return deleted  # running again (a retry): its rows are its own until it ends
            deleted += gone
            after = ids[-1]
            if progress is not None:
                progress(gone)
    with sessions() as session, session.begin():
        session.execute(update(Job).where(Job.id == job_id, Job.state.in_(FINISHED)).values(items_pruned_at=utcnow()))
    return deleted
