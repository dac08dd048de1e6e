"""The sink against SQLite and real PostgreSQL: redelivery rewrites the same rows, counters stay exact."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from tagger import registry
from tagger.db.schema import Image, JobItem, Suggestion
from tagger.jobs.producer import enqueue_keys
from tagger.jobs.progress import failures, summary
from tagger.settings import Settings
from tagger.worker.sink import Refused, Tagged, record_batch
from tagger_client.contract import job_id_for
from tests.conftest import make_model, new_job

KEYS = [f"s/{i}.jpg" for i in range(6)]


def _job(sessions, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    sent: list[tuple[str, list[object], str]] = []
    job = new_job(sessions, tmp_path.as_uri(), batch_size=3)
    added = enqueue_keys(
        sessions, lambda t, a, q: sent.append((t, a, q)), job_id=job.job_id, keys=KEYS + KEYS[:2], batch_size=3
    )
    assert added == 6  # duplicate keys in the stream become one item each
    assert [a[1] for _, a, _ in sent] == [KEYS[0:3], KEYS[3:6], KEYS[:2]]
    return job.job_id


def test_redelivered_batches_write_each_row_once(settings: Settings, sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_model(settings, sessions, tags=("a", "b", "c"))
    with sessions() as session:
        version_id = registry.active(session).id
        tag_ids = registry.ensure_tags(session, ["a", "b", "c"])
    job_id = _job(sessions, tmp_path)
    first = [Tagged(k, [(tag_ids["a"], 0.9), (tag_ids["b"], 0.4)]) for k in KEYS[:3]]
    for _ in range(3):  # the same batch delivered three times
        counts = record_batch(sessions, job_id=job_id, model_version_id=version_id, tagged=first, refused=[])
    assert counts.done == 0  # the redeliveries moved nothing
    # second batch: one failure; redelivered with a probability now below threshold for tag b
    second = [Tagged(k, [(tag_ids["a"], 0.8), (tag_ids["b"], 0.3)]) for k in KEYS[3:5]]
    record_batch(
        sessions,
        job_id=job_id,
        model_version_id=version_id,
        tagged=second,
        refused=[Refused(KEYS[5], "corrupt or truncated image")],
    )
    second_again = [Tagged(k, [(tag_ids["a"], 0.8)]) for k in KEYS[3:5]]  # a late duplicate: fenced off
    record_batch(
        sessions,
        job_id=job_id,
        model_version_id=version_id,
        tagged=second_again,
        refused=[Refused(KEYS[5], "corrupt or truncated image")],
    )

    job = summary(sessions, job_id)
    assert (job.total, job.done, job.failed, job.state.value) == (6, 5, 1, "done_with_failures")
    assert failures(sessions, job_id) == [(KEYS[5], "corrupt or truncated image")]
    with sessions() as session:
        rows = session.execute(select(func.count()).select_from(Suggestion)).scalar_one()
        distinct = session.execute(
            select(func.count()).select_from(
                select(Suggestion.image_id, Suggestion.tag_id, Suggestion.model_version_id).distinct().subquery()
            )
        ).scalar_one()
    assert rows == distinct == 3 * 2 + 2 * 2  # the first delivery to commit wins; duplicates write nothing

    # A later job re-tagging the same images with the same model leaves no row that fell below threshold.
    again = new_job(sessions, tmp_path.as_uri(), batch_size=3).job_id
    enqueue_keys(sessions, lambda *a: None, job_id=again, keys=KEYS[3:5], batch_size=3)
    record_batch(sessions, job_id=again, model_version_id=version_id, tagged=second_again)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Suggestion)) == 3 * 2 + 2 * 1


def test_a_duplicate_that_outlived_the_visibility_timeout_cannot_write_a_second_version(
    settings: Settings, sessions, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Two deliveries of one batch, served by different model versions, race to write: one wins, whole."""
    import threading

    first_version = make_model(settings, sessions, tags=("a",))
    second_version = make_model(settings, sessions, tags=("a",), seed=1)
    with sessions() as session:
        ids = {v: registry.get(session, v).id for v in (first_version, second_version)}
        tag = registry.tag_ids(session, ["a"])["a"]
    job_id = _job(sessions, tmp_path)
    batch = KEYS[:3]
    barrier = threading.Barrier(2)

    def deliver(version_id: int) -> None:
        barrier.wait()
        record_batch(
            sessions, job_id=job_id, model_version_id=version_id, tagged=[Tagged(k, [(tag, 0.9)]) for k in batch]
        )

    threads = [threading.Thread(target=deliver, args=(ids[v],)) for v in (first_version, second_version)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with sessions() as session:
        versions = set(session.scalars(select(Suggestion.model_version_id).distinct()))
        item_versions = set(
            session.scalars(select(JobItem.model_version_id).where(JobItem.model_version_id.is_not(None)))
        )
        image_versions = set(session.scalars(select(Image.model_version_id).where(Image.model_version_id.is_not(None))))
    assert len(versions) == 1 and versions == item_versions == image_versions
    assert summary(sessions, job_id).done == 3


def test_empty_job_finishes_immediately(settings: Settings, sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job = new_job(sessions, tmp_path.as_uri())
    enqueue_keys(sessions, lambda *a: None, job_id=job.job_id, keys=[], batch_size=4)
    assert summary(sessions, job.job_id).state.value == "done"


def test_idempotency_key_returns_the_same_job(settings: Settings, sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = new_job(sessions, tmp_path.as_uri(), idempotency_key="upload-1")
    b = new_job(sessions, tmp_path.as_uri(), idempotency_key="upload-1")
    # Until its listing completes, submitting again resumes the listing (a producer may have crashed).
    assert a.job_id == b.job_id == job_id_for("upload-1") and a.created and b.created
    enqueue_keys(sessions, lambda *a: None, job_id=a.job_id, keys=["k.jpg"], batch_size=4)
    c = new_job(sessions, tmp_path.as_uri(), idempotency_key="upload-1")
    assert c.job_id == a.job_id and not c.created
    assert summary(sessions, a.job_id).total == 1


def test_exactly_one_model_is_active(settings: Settings, sessions) -> None:  # type: ignore[no-untyped-def]
    first = make_model(settings, sessions, tags=("a",))
    second = make_model(settings, sessions, tags=("a",))
    with sessions() as session:
        assert registry.active(session).version == second
        statuses = {v.version: (v.status, v.is_active) for v in registry.list_versions(session)}
    assert statuses == {first: ("retired", False), second: ("active", True)}


def test_skipped_items_count_once_and_are_not_attempts(settings: Settings, sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_model(settings, sessions, tags=("a",))
    with sessions() as session:
        version_id = registry.active(session).id
    job_id = _job(sessions, tmp_path)
    record_batch(sessions, job_id=job_id, model_version_id=version_id, tagged=[Tagged(KEYS[0], [])])
    for _ in range(2):  # a cancelled job's batch, delivered twice; KEYS[0] is already done
        counts = record_batch(sessions, job_id=job_id, model_version_id=None, skipped=KEYS[:3])
    assert counts.skipped == 0
    job = summary(sessions, job_id)
    assert (job.done, job.failed, job.skipped) == (1, 0, 2)
    with sessions() as session:
        rows = dict(
            session.execute(
                select(Image.key, JobItem.attempts)
                .join(JobItem, JobItem.image_id == Image.id)
                .where(JobItem.job_id == job_id, JobItem.state == "skipped")
            ).all()
        )
    assert rows == {KEYS[1]: 0, KEYS[2]: 0}


def test_a_job_starts_its_clock_when_its_first_batch_starts(settings: Settings, sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Rates and ETAs must count the first batch's own work, not start once it is written."""
    from tagger.worker.sink import count_attempt

    make_model(settings, sessions, tags=("a",))
    job_id = _job(sessions, tmp_path)
    assert summary(sessions, job_id).started_at is None
    count_attempt(sessions, job_id, KEYS[:3])
    started = summary(sessions, job_id)
    assert started.state.value == "running" and started.started_at is not None
    with sessions() as session:
        version_id = registry.active(session).id
    record_batch(sessions, job_id=job_id, model_version_id=version_id, tagged=[Tagged(k, []) for k in KEYS[:3]])
    assert summary(sessions, job_id).started_at == started.started_at
