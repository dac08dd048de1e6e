"""Write one batch's outcome in one transaction: per-image outcomes, suggestion rows, job counters.

Idempotent under redelivery: every write is gated by items leaving the `pending` state in this
very transaction (the fence); suggestions and counters move only for those items.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from tagger.db.images import image_ids
from tagger.db.schema import Image, Job, JobItem, Suggestion, utcnow
from tagger.db.upsert import upsert_many
from tagger.jobs.lifecycle import finish_if_complete, mark_running
from tagger_client.contract import ItemState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tagged:
    key: str
    tags: list[tuple[int, float]]  # (tag id, probability)


@dataclass(frozen=True)
class Refused:
    key: str
    reason: str


@dataclass(frozen=True)
class BatchCounts:
    done: int
    failed: int
    skipped: int = 0
    closed: bool = False  # this batch finished the job: time to notify


def record_batch(
    session_factory: Callable[[], Session],
    *,
    job_id: str,
    model_version_id: int | None,
    tagged: Sequence[Tagged] = (),
    refused: Sequence[Refused] = (),
    skipped: Sequence[str] = (),
) -> BatchCounts:
    """One transaction: suggestions of the tagged images, then every item's outcome and the job counters."""
    with session_factory() as session, session.begin():
        ids = image_ids(session, [t.key for t in tagged] + [r.key for r in refused] + list(skipped))
        done = _write_tagged(session, job_id, model_version_id, tagged, ids) if tagged else 0
        failed = sum(
            _leave_pending(session, job_id, [ids[r.key]], ItemState.FAILED, error=r.reason[:2000]) for r in refused
        )
        skip = _leave_pending(session, job_id, [ids[k] for k in skipped], ItemState.SKIPPED) if skipped else 0
        mark_running(session, job_id)
        if done or failed or skip:
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(done=Job.done + done, failed=Job.failed + failed, skipped=Job.skipped + skip)
            )
        closed = finish_if_complete(session, job_id)
    return BatchCounts(done=done, failed=failed, skipped=skip, closed=closed)


def _leave_pending(session: Session, job_id: str, image_ids: list[int], state: ItemState, **values: object) -> int:
    """Move this job's still-pending items to `state`; returns how many moved (0 on a redelivery)."""
    return len(_leave_pending_ids(session, job_id, image_ids, state, **values))


def _leave_pending_ids(
    session: Session, job_id: str, image_ids: list[int], state: ItemState, **values: object
) -> set[int]:
    """The fence: UPDATE ... WHERE state = 'pending' RETURNING the items this transaction moved.

    A concurrent second delivery waits on the row locks, then finds nothing pending.
    """
    return set(
        session.scalars(
            update(JobItem)
            .where(JobItem.job_id == job_id, JobItem.image_id.in_(image_ids), JobItem.state == ItemState.PENDING)
            .values(state=state, updated_at=utcnow(), **values)
            .returning(JobItem.image_id)
            .execution_options(synchronize_session=False)
        )
    )


def _write_tagged(
    session: Session, job_id: str, version_id: int | None, tagged: Sequence[Tagged], ids: dict[str, int]
) -> int:
    """Fence, then write: only images this transaction moves out of `pending` get suggestion rows.

    So a second delivery of the same batch (a redelivery, or a duplicate that outlived the
    visibility timeout, perhaps on another model version) writes nothing.
    """
    assert version_id is not None, "tagged images need the model version that tagged them"
    claimed = _leave_pending_ids(
        session, job_id, [ids[t.key] for t in tagged], ItemState.DONE, error=None, model_version_id=version_id
    )
    if len(claimed) < len(tagged):
        log.warning(
            "job %s: %d of %d images were already written by another delivery of this batch; not rewritten",
            job_id,
            len(tagged) - len(claimed),
            len(tagged),
        )
    if not claimed:
        return 0
    image_list = sorted(claimed)
    rows = [(ids[t.key], tag_id, version_id, float(p)) for t in tagged if ids[t.key] in claimed for tag_id, p in t.tags]
    # Re-tagging an image with the same version (a later job) first clears what that version said before,
    # so no row that fell below threshold survives; the fence above makes this safe.
    session.execute(
        delete(Suggestion)
        .where(Suggestion.model_version_id == version_id, Suggestion.image_id.in_(image_list))
        .execution_options(synchronize_session=False)
    )
    if rows:
        write_suggestions(session, rows)
    session.execute(
        update(Image)
        .where(Image.id.in_(image_list))
        .values(model_version_id=version_id, tagged_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return len(claimed)


def write_suggestions(session: Session, rows: list[tuple[int, int, int, float]]) -> None:
    """(image, tag, version, probability) rows, upserted. PostgreSQL: COPY into a per-connection staging table,
    then one INSERT ... SELECT ... ON CONFLICT (the fast path, hundreds of thousands of rows/s); elsewhere
    a batched executemany."""
    if session.get_bind().dialect.name == "postgresql":
        raw = session.connection().connection.driver_connection  # psycopg, inside this very transaction
        with raw.cursor() as cur:  # type: ignore[union-attr]
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS suggestion_staging (image_id bigint, tag_id integer, "
                "model_version_id integer, probability double precision) ON COMMIT DELETE ROWS"
            )
            with cur.copy("COPY suggestion_staging (image_id, tag_id, model_version_id, probability) FROM STDIN") as cp:
                cp.write("".join(f"{i}\t{t}\t{v}\t{p!r}\n" for i, t, v, p in rows).encode())
            cur.execute(
                "INSERT INTO suggestions (image_id, tag_id, model_version_id, probability, created_at) "
                "SELECT image_id, tag_id, model_version_id, probability, now() FROM suggestion_staging "
                "ON CONFLICT (image_id, tag_id, model_version_id) DO UPDATE SET probability = EXCLUDED.probability"
            )
            cur.execute("DELETE FROM suggestion_staging")  # cheaper than TRUNCATE on a small temp table
        return
    now = utcnow()
    params = [
        {"image_id": i, "tag_id": t, "model_version_id": v, "probability": p, "created_at": now} for i, t, v, p in rows
    ]
    session.execute(
        upsert_many(session, Suggestion, ["image_id", "tag_id", "model_version_id"], ["probability"]), params
    )


@dataclass(frozen=True)
class Claim:
    """This delivery's share of a batch: what to process, and what was already attempted before."""

    attempts: dict[str, int]  # pending key -> attempts before this delivery
    last_errors: dict[str, str]


def pending_items(session_factory: Callable[[], Session], job_id: str, keys: Sequence[str]) -> Claim:
    """The batch's keys still pending in this job, with their attempt counts (done ones are not redone)."""
    with session_factory() as session:
        rows = session.execute(
            select(Image.key, JobItem.attempts, JobItem.error)
            .join(JobItem, JobItem.image_id == Image.id)
            .where(JobItem.job_id == job_id, Image.key.in_(list(keys)), JobItem.state == ItemState.PENDING)
        ).all()
    return Claim({k: n for k, n, _ in rows}, {k: e for k, _, e in rows if e})


def count_attempt(session_factory: Callable[[], Session], job_id: str, keys: Sequence[str]) -> None:
    """An attempt starts: counted before the work, so a delivery that dies mid-batch still counts.

    The job's first attempt also starts its clock (`started_at`), so rates and ETAs include the first batch.
    """
    with session_factory() as session, session.begin():
        mark_running(session, job_id)
        _update_pending(session, job_id, keys, attempts=JobItem.attempts + 1, updated_at=utcnow())


def note_error(session_factory: Callable[[], Session], job_id: str, keys: Sequence[str], error: str) -> None:
    """Keep the latest error on still-pending items, so a final give-up can say what went wrong."""
    with session_factory() as session, session.begin():
        _update_pending(session, job_id, keys, error=error[:2000])


def _update_pending(session: Session, job_id: str, keys: Sequence[str], **values: object) -> None:
    ids = select(Image.id).where(Image.key.in_(list(keys))).scalar_subquery()
    session.execute(
        update(JobItem)
        .where(JobItem.job_id == job_id, JobItem.image_id.in_(ids), JobItem.state == ItemState.PENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
