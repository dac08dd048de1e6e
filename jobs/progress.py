"""Follow a job until it ends, with a progress bar for people and a plain summary for scripts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api_client.contract import ItemState, JobState
from tagger.db.schema import Image, Job, JobItem


@dataclass(frozen=True)
class JobSummary:
    id: str
    state: JobState
    source: str
    total: int
    done: int
    failed: int
    skipped: int
    listing_complete: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(self.started_at.tzinfo)
        return max((end - self.started_at).total_seconds(), 1e-6)

    @property
    def rate(self) -> float | None:
        seconds = self.seconds
        return (self.done + self.failed) / seconds if seconds else None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "state": self.state.value,
            "source": self.source,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "skipped": self.skipped,
            "listing_complete": self.listing_complete,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "images_per_second": round(self.rate, 2) if self.rate else None,
        }


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
