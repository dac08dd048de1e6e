"""Follow a job until it ends, with a progress bar for people and a plain summary for scripts."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tagger.db.schema import Image, Job, JobItem
from tagger_client.contract import ItemState, JobState
from tagger_client.status import JobStatus

JobSummary = JobStatus  # one shape for the CLI, the workers and the client


def summary(sessions: sessionmaker[Session], job_id: str) -> JobSummary:
    from tagger.errors import NotFoundError

    with sessions() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}; see `tagger jobs list`")
        return _summarise(job)


def recent(sessions: sessionmaker[Session], limit: int) -> list[JobSummary]:
    """The newest jobs first, in one query."""
    with sessions() as session:
        return [_summarise(j) for j in session.scalars(select(Job).order_by(Job.created_at.desc()).limit(limit))]


def _summarise(job: Job) -> JobSummary:
    return JobSummary(
        id=job.id,
        state=JobState(job.state),
        source=job.source,
        total=job.total,
        done=job.done,
        failed=job.failed,
        skipped=job.skipped,
        listing_complete=job.listing_complete,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def failures(sessions: sessionmaker[Session], job_id: str, limit: int = 1000) -> list[tuple[str, str]]:
    """(key, reason) for each failed image of the job."""
    with sessions() as session:
        rows = session.execute(
            select(Image.key, JobItem.error)
            .join(Image, Image.id == JobItem.image_id)
            .where(JobItem.job_id == job_id, JobItem.state == ItemState.FAILED)
            .order_by(Image.key)
            .limit(limit)
        ).all()
    return [(key, error or "") for key, error in rows]


def wait(
    sessions: sessionmaker[Session],
    job_id: str,
    *,
    timeout: float | None = None,
    poll: float = 0.5,
    show_progress: bool = True,
    alive: Callable[[], bool] | None = None,
) -> JobSummary:
    """Block until the job reaches a finished state (or timeout), drawing a progress bar."""
    from tqdm import tqdm

    deadline = None if timeout is None else time.monotonic() + timeout
    bar = tqdm(
        total=0, unit="img", desc=f"job {job_id[:8]}", disable=None if show_progress else True, dynamic_ncols=True
    )  # None: no bar when not a terminal
    try:
        while True:
            current = summary(sessions, job_id)
            bar.total = current.total
            bar.n = current.done + current.failed + current.skipped
            bar.set_postfix(failed=current.failed, state=current.state.value, refresh=False)
            bar.refresh()
            if current.state.finished:
                return current
            if alive is not None and not alive():
                raise RuntimeError(f"worker processes exited while job {job_id} was {current.state.value}")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {current.state.value} after {timeout}s")
            time.sleep(poll)
    finally:
        bar.close()


def outcomes(sessions: sessionmaker[Session], job_id: str, limit: int = 1000) -> list[dict[str, object]]:
    """Per-image outcomes: key, state, attempts, error and the model version that tagged it."""
    from tagger.db.schema import ModelVersion

    with sessions() as session:
        rows = session.execute(
            select(Image.key, JobItem.state, JobItem.attempts, JobItem.error, ModelVersion.version)
            .join(Image, Image.id == JobItem.image_id)
            .outerjoin(ModelVersion, ModelVersion.id == JobItem.model_version_id)
            .where(JobItem.job_id == job_id)
            .order_by(Image.key)
            .limit(limit)
        ).all()
    return [
        {"key": key, "state": state, "attempts": attempts, "error": error, "model_version": version}
        for key, state, attempts, error, version in rows
    ]
