"""The claim ledger of a batch: which of its images are still pending, and their attempts.

An attempt is counted in the database before the work starts, so a delivery that dies mid-batch
still counts; an image that keeps killing its worker is given up after `max_attempts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from tagger.db.arrays import array_literal
from tagger.db.engine import run_statement
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


@dataclass(frozen=True)
class FreshClaim:
    """A first delivery claimed in one round trip: its job as read, and the images whose attempt it counted."""

    state: str
    queue: str
    max_attempts: int
    active_version_id: int | None
    content_hash: bool
    items: list[Pending]


# The common delivery, in one statement: the job is queued or running with no deadline passed, and every
# image of the batch still pending has no attempt yet (nothing to give up, nothing to split). Then its
# attempts are counted and the job started, exactly as `pending_items` + `count_attempt` would; otherwise
# nothing is written and the caller takes the general path. The job row is only locked when it starts.
_CLAIM_FRESH = """
WITH
job AS (
    SELECT j.state, j.queue, j.max_attempts,
           (SELECT m.id FROM model_versions m WHERE m.is_active) AS active_version_id,
           COALESCE((j.options ->> 'content_hash')::boolean, false) AS content_hash,
           j.state IN ('queued', 'running') AND j.max_attempts > 0
               AND (j.deadline_at IS NULL OR j.deadline_at > now()) AS open
    FROM jobs j WHERE j.id = %(job)s
),
counted AS (
    UPDATE job_items SET attempts = attempts + 1, updated_at = now()
    WHERE job_id = %(job)s AND image_id = ANY(%(ids)s::bigint[]) AND state = 'pending'
      AND (SELECT open FROM job)
      AND NOT EXISTS (
          SELECT 1 FROM job_items p
          WHERE p.job_id = %(job)s AND p.image_id = ANY(%(ids)s::bigint[]) AND p.state = 'pending' AND p.attempts > 0
      )
    RETURNING image_id, attempts
),
started AS (
    UPDATE jobs SET state = 'running', started_at = now()
    WHERE id = %(job)s AND state = 'queued' AND EXISTS (SELECT 1 FROM counted)
)
SELECT j.state, j.queue, j.max_attempts, j.active_version_id, j.content_hash, c.image_id, s.url, i.key, c.attempts - 1
FROM job j
LEFT JOIN counted c ON true
LEFT JOIN images i ON i.id = c.image_id
LEFT JOIN storages s ON s.id = i.storage_id
ORDER BY c.image_id
"""


def claim_fresh(engine: Engine, job_id: str, image_ids: Sequence[int]) -> FreshClaim | None:
    """PostgreSQL: read the job, the batch's pending images and count their attempt in one round trip.

    None when the delivery needs the general path (no such job, a job that is not queued or running, a
    deadline passed, nothing pending, or an image retried before); nothing is written then.
    """
    rows = run_statement(engine, _CLAIM_FRESH, {"job": job_id, "ids": array_literal(sorted(image_ids))})
    if not rows or rows[0][5] is None:
        return None
    state, queue, max_attempts, active_id, content_hash = rows[0][:5]
    items = [Pending(image_id, url, key, attempts, None) for *_, image_id, url, key, attempts in rows]
    return FreshClaim(state, queue, int(max_attempts), active_id, bool(content_hash), items)


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
