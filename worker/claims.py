"""The claim ledger of a batch: which of its images are still pending, and their attempts.

An attempt is counted in the database before the work starts, so a delivery that dies mid-batch
still counts; an image that keeps killing its worker is given up after `max_attempts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tagger.db.schema import Image, JobItem, Storage, utcnow
from tagger.jobs.lifecycle import mark_running
from tagger_client.contract import ItemState


@dataclass(frozen=True)
class Pending:
    """One image this delivery may work on."""

    image_id: int
    storage_url: str
    key: str
    attempts: int  # attempts before this delivery
    last_error: str | None


def pending_items(session_factory: Callable[[], Session], job_id: str, image_ids: Sequence[int]) -> list[Pending]:
    """The batch's images still pending in this job, with where they live and their attempts so far."""
    with session_factory() as session:
        rows = session.execute(
            select(JobItem.image_id, Storage.url, Image.key, JobItem.attempts, JobItem.error)
            .join(Image, Image.id == JobItem.image_id)
            .join(Storage, Storage.id == Image.storage_id)
            .where(JobItem.job_id == job_id, JobItem.image_id.in_(list(image_ids)), JobItem.state == ItemState.PENDING)
            .order_by(JobItem.image_id)
        ).all()
    return [Pending(*row) for row in rows]


def count_attempt(session_factory: Callable[[], Session], job_id: str, image_ids: Sequence[int]) -> None:
    """An attempt starts: counted before the work; the job's first attempt also starts its clock."""
    with session_factory() as session, session.begin():
        mark_running(session, job_id)
        _update_pending(session, job_id, image_ids, attempts=JobItem.attempts + 1, updated_at=utcnow())


def note_error(session_factory: Callable[[], Session], job_id: str, image_ids: Sequence[int], error: str) -> None:
    """Keep the latest error on still-pending items, so a final give-up can say what went wrong."""
    with session_factory() as session, session.begin():
        _update_pending(session, job_id, image_ids, error=error[:2000])


def _update_pending(session: Session, job_id: str, image_ids: Sequence[int], **values: object) -> None:
    session.execute(
        update(JobItem)
        .where(JobItem.job_id == job_id, JobItem.image_id.in_(sorted(image_ids)), JobItem.state == ItemState.PENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
