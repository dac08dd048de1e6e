"""The claims of tagger/worker/claims.py, statement by statement, on SQLite and PostgreSQL: which items a
delivery takes, the attempts it counts, the errors it notes, and the one-statement fresh claim.

Written against the survivors of a mutation run (`make mutation`), as test_ledger.py beside it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from tagger.db.schema import Job, JobItem
from tagger.jobs.control import pause
from tagger.jobs.progress import summary
from tagger.worker.claims import count_attempt, note_error, pending_items
from tagger.worker.sink import Tagged, record_batch
from tests.conftest import fill_job, new_job

KEYS = ["a.jpg", "b.jpg", "c.jpg"]


def _item(sessions, job: str, image: int) -> JobItem:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return session.scalars(select(JobItem).where(JobItem.job_id == job, JobItem.image_id == image)).one()


def test_count_attempt_adds_one_to_pending_items_only(sessions, engine, version: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job = new_job(sessions, tmp_path.as_uri()).job_id
    ids = [fill_job(sessions, job, KEYS, tmp_path.as_uri())[k] for k in KEYS]
    record_batch(engine, job_id=job, model_version_id=version, tagged=[Tagged(ids[0], [])])
    count_attempt(sessions, job, ids)
    count_attempt(sessions, job, ids[1:2])
    note_error(sessions, job, ids, "late")
    attempts = {i: (_item(sessions, job, i).attempts, _item(sessions, job, i).error) for i in ids}
    assert attempts == {ids[0]: (0, None), ids[1]: (2, "late"), ids[2]: (1, "late")}
    pending = pending_items(sessions, job, ids)
    assert [(p.image_id, p.key, p.attempts, p.last_error) for p in pending] == [
        (ids[1], KEYS[1], 2, "late"),
        (ids[2], KEYS[2], 1, "late"),
    ]
    assert {p.storage_url for p in pending} == {tmp_path.as_uri()}


def test_a_batch_claims_its_own_images_in_id_order_and_no_others(sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job = new_job(sessions, tmp_path.as_uri()).job_id
    ids = sorted(fill_job(sessions, job, ["p.jpg", "q.jpg", "r.jpg", "s.jpg"], tmp_path.as_uri()).values())
    asked = [ids[3], ids[0]]  # another batch of the same job holds ids[1] and ids[2]
    assert [p.image_id for p in pending_items(sessions, job, asked)] == [ids[0], ids[3]]


def test_a_noted_error_is_kept_to_two_thousand_characters(sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job = new_job(sessions, tmp_path.as_uri()).job_id
    image = fill_job(sessions, job, KEYS[:1], tmp_path.as_uri())[KEYS[0]]
    note_error(sessions, job, [image], "e" * 5000)
    assert _item(sessions, job, image).error == "e" * 2000


ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _attempts(sessions, job: str) -> dict[int, int]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return dict(session.execute(select(JobItem.image_id, JobItem.attempts).where(JobItem.job_id == job)).all())


@ON_POSTGRES
def test_a_first_delivery_is_claimed_in_one_statement_as_the_general_path_would(  # type: ignore[no-untyped-def]
    sessions, engine, version: int, tmp_path: Path
) -> None:
    from tagger.worker.claims import claim_fresh

    job = new_job(sessions, tmp_path.as_uri()).job_id
    ids = sorted(fill_job(sessions, job, ["p.jpg", "q.jpg", "r.jpg", "s.jpg"], tmp_path.as_uri()).values())
    asked = [ids[3], ids[0], ids[1]]
    record_batch(engine, job_id=job, model_version_id=version, tagged=[Tagged(ids[1], [])])  # written already
    expected = pending_items(sessions, job, asked)
    claim = claim_fresh(engine, job, asked)
    assert claim is not None
    assert claim.items == expected and [p.image_id for p in expected] == [ids[0], ids[3]]
    assert (claim.state, claim.queue, claim.max_attempts, claim.active_version_id) == (
        "running",
        "tagger.bulk",
        5,
        version,
    )
    assert _attempts(sessions, job) == {ids[0]: 1, ids[1]: 0, ids[2]: 0, ids[3]: 1}


@ON_POSTGRES
def test_a_fresh_claim_starts_a_queued_job(sessions, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tagger.worker.claims import claim_fresh

    job = new_job(sessions, tmp_path.as_uri()).job_id
    ids = list(fill_job(sessions, job, KEYS, tmp_path.as_uri()).values())
    assert summary(sessions, job).state.value == "queued"
    claim = claim_fresh(engine, job, ids)
    assert claim is not None and claim.state == "queued" and claim.active_version_id is None
    with sessions() as session:
        started = session.get(Job, job)
        assert started is not None and (started.state, started.started_at is not None) == ("running", True)


@ON_POSTGRES
@pytest.mark.parametrize("why", ["retried", "paused", "cancelled", "overdue", "no_such_job", "all_written"])
def test_a_delivery_the_fresh_claim_cannot_take_writes_nothing(  # type: ignore[no-untyped-def]
    why: str, sessions, engine, version: int, tmp_path: Path
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from tagger.db.schema import utcnow
    from tagger.jobs.control import cancel
    from tagger.worker.claims import claim_fresh

    job = new_job(sessions, tmp_path.as_uri()).job_id
    ids = list(fill_job(sessions, job, KEYS, tmp_path.as_uri()).values())
    if why == "retried":
        count_attempt(sessions, job, ids[:1])  # one image of the batch was tried before: the batch is split
    elif why == "paused":
        pause(sessions, job)
    elif why == "cancelled":
        cancel(sessions, job)
    elif why == "overdue":
        with sessions() as session, session.begin():
            session.execute(update(Job).where(Job.id == job).values(deadline_at=utcnow() - timedelta(seconds=1)))
    elif why == "all_written":
        record_batch(engine, job_id=job, model_version_id=version, tagged=[Tagged(i, []) for i in ids])
    before = (_attempts(sessions, job), summary(sessions, job).state)
    assert claim_fresh(engine, "0" * 32 if why == "no_such_job" else job, ids) is None
    assert (_attempts(sessions, job), summary(sessions, job).state) == before
