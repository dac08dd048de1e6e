"""The claim ledger, the fenced write and the job lifecycle, statement by statement, on SQLite and PostgreSQL.

Written against the survivors of a mutation run (`make mutation`): each test pins down one thing the
sink or the ledger must do that no broader test noticed when it was broken.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from sqlalchemy import event, select

from tagger import registry
from tagger.db.schema import Job, JobItem, Suggestion
from tagger.jobs.control import pause
from tagger.jobs.lifecycle import finish_if_complete, mark_running
from tagger.jobs.producer import complete_listing
from tagger.jobs.progress import summary
from tagger.jobs.sources import PassedOver
from tagger.settings import Settings
from tagger.worker.claims import count_attempt, note_error, pending_items
from tagger.worker.inference import suggestion_rows
from tagger.worker.sink import Refused, Tagged, record_batch
from tagger_client.contract import QUEUE_INTERACTIVE, TASK_NOTIFY_JOB
from tests.conftest import fill_job, make_model, new_job

KEYS = ["a.jpg", "b.jpg", "c.jpg"]


def _tags(sessions) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return registry.tag_ids(session, ["x", "y"])


def _item(sessions, job: str, image: int) -> JobItem:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return session.scalars(select(JobItem).where(JobItem.job_id == job, JobItem.image_id == image)).one()


def _two_jobs_over_the_same_images(sessions, tmp_path: Path) -> tuple[str, str, list[int]]:  # type: ignore[no-untyped-def]
    first, second = (new_job(sessions, tmp_path.as_uri()).job_id for _ in range(2))
    ids = fill_job(sessions, first, KEYS, tmp_path.as_uri())
    assert fill_job(sessions, second, KEYS, tmp_path.as_uri()) == ids
    return first, second, [ids[k] for k in KEYS]


def test_rows_from_the_model_s_tensors_are_written_as_given(sessions, engine, version: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tags = _tags(sessions)
    job = new_job(sessions, tmp_path.as_uri()).job_id
    ids = [fill_job(sessions, job, KEYS, tmp_path.as_uri())[k] for k in KEYS]
    probs = torch.tensor([[0.9, 0.1], [0.3, 0.6], [0.0, 0.0]])
    rows = suggestion_rows(probs, torch.tensor([0.5, 0.5]), ids, [tags["x"], tags["y"]])
    counts = record_batch(engine, job_id=job, model_version_id=version, tagged=rows)
    with sessions() as session:
        written = set(session.execute(select(Suggestion.image_id, Suggestion.tag_id)).all())
    assert (counts.done, counts.closed) == (3, True)
    assert written == {(ids[0], tags["x"]), (ids[1], tags["y"])}


def test_tagged_images_need_the_version_that_tagged_them(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="need the model version"):
        record_batch(engine, job_id="0" * 32, model_version_id=None, tagged=[Tagged(1, [])])


def test_a_redelivery_says_what_it_did_not_rewrite(sessions, engine, version: int, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    job = new_job(sessions, tmp_path.as_uri()).job_id
    ids = list(fill_job(sessions, job, KEYS, tmp_path.as_uri()).values())
    with caplog.at_level(logging.WARNING, logger="tagger.worker.sink"):
        record_batch(engine, job_id=job, model_version_id=version, tagged=[Tagged(i, []) for i in ids[:2]])
    assert "already written" not in caplog.text  # a first delivery wrote everything: nothing to say
    with caplog.at_level(logging.WARNING, logger="tagger.worker.sink"):
        record_batch(engine, job_id=job, model_version_id=version, tagged=[Tagged(i, []) for i in ids])
    assert f"job {job}: 2 of 3 images were already written by another delivery" in caplog.text


def test_a_reason_is_kept_to_two_thousand_characters(sessions, engine, version: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job = new_job(sessions, tmp_path.as_uri()).job_id
    image = fill_job(sessions, job, KEYS[:1], tmp_path.as_uri())[KEYS[0]]
    record_batch(engine, job_id=job, model_version_id=version, refused=[Refused(image, "r" * 5000)])
    assert _item(sessions, job, image).error == "r" * 2000


def test_a_done_image_forgets_the_error_of_an_earlier_delivery(sessions, engine, version: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job = new_job(sessions, tmp_path.as_uri()).job_id
    image = fill_job(sessions, job, KEYS[:2], tmp_path.as_uri())[KEYS[0]]
    note_error(sessions, job, [image], "OperationalError: the database went away")
    assert _item(sessions, job, image).error == "OperationalError: the database went away"
    record_batch(engine, job_id=job, model_version_id=version, tagged=[Tagged(image, [])])
    item = _item(sessions, job, image)
    assert (item.state, item.error, item.model_version_id) == ("done", None, version)


def test_a_first_outcome_starts_the_job_and_only_that_job(sessions, engine, version: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first, second, ids = _two_jobs_over_the_same_images(sessions, tmp_path)
    record_batch(engine, job_id=first, model_version_id=version, tagged=[Tagged(ids[0], [])])
    started, other = summary(sessions, first), summary(sessions, second)
    assert (started.state.value, other.state.value) == ("running", "queued")
    assert started.started_at is not None and other.started_at is None


def test_one_job_s_batch_never_touches_another_job_s_items(sessions, engine, version: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first, second, ids = _two_jobs_over_the_same_images(sessions, tmp_path)
    count_attempt(sessions, first, ids)
    note_error(sessions, first, ids, "boom")
    record_batch(engine, job_id=first, model_version_id=version, tagged=[Tagged(i, []) for i in ids[:2]])
    record_batch(engine, job_id=first, model_version_id=None, refused=[Refused(ids[2], "corrupt")])
    for image in ids:
        item = _item(sessions, second, image)
        assert (item.state, item.attempts, item.error) == ("pending", 0, None)
    assert [p.image_id for p in pending_items(sessions, second, ids)] == sorted(ids)
    assert pending_items(sessions, first, ids) == []
    assert (summary(sessions, first).state.value, summary(sessions, second).state.value) == (
        "done_with_failures",
        "queued",
    )


def test_a_new_version_leaves_the_old_version_s_rows(sessions, engine, settings: Settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    old = make_model(settings, sessions, tags=("x", "y"))
    new = make_model(settings, sessions, tags=("x", "y"), seed=1)
    with sessions() as session:
        old_id, new_id = registry.get(session, old).id, registry.get(session, new).id
    tags = _tags(sessions)
    image = None
    for version_id, tag in ((old_id, "x"), (new_id, "y")):
        job = new_job(sessions, tmp_path.as_uri()).job_id
        image = fill_job(sessions, job, KEYS[:1], tmp_path.as_uri())[KEYS[0]]
        record_batch(engine, job_id=job, model_version_id=version_id, tagged=[Tagged(image, [(tags[tag], 0.9)])])
    with sessions() as session:
        rows = set(session.execute(select(Suggestion.model_version_id, Suggestion.tag_id)).all())
    assert rows == {(old_id, tags["x"]), (new_id, tags["y"])}


def test_a_job_closes_only_once_its_listing_is_complete(sessions, engine, version: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tagger.jobs.producer import enqueue_keys

    job = new_job(sessions, tmp_path.as_uri()).job_id
    enqueue_keys(
        sessions, lambda *a: None, job_id=job, keys=KEYS[:2], storage_url=tmp_path.as_uri(), batch_size=4, queue="q"
    )
    ids = [p.image_id for p in pending_items(sessions, job, list(range(1, 100)))]
    closed = record_batch(engine, job_id=job, model_version_id=version, tagged=[Tagged(i, []) for i in ids])
    assert not closed.closed and summary(sessions, job).state.value == "running"  # the listing goes on
    sent: list[tuple[str, list[object], str]] = []
    complete_listing(sessions, lambda *m: sent.append(m), job, PassedOver())
    done = summary(sessions, job)
    assert done.state.value == "done" and done.finished_at is not None and done.started_at is not None
    assert sent == [(TASK_NOTIFY_JOB, [job], QUEUE_INTERACTIVE)]  # ended by the listing: it announces


def test_closing_keeps_when_the_job_started_and_says_when_it_finished(sessions, version: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first, second, ids = _two_jobs_over_the_same_images(sessions, tmp_path)
    with sessions() as session, session.begin():
        mark_running(session, first)
        session.execute(Job.__table__.update().where(Job.id == first).values(skipped=3))
    started = summary(sessions, first).started_at
    with sessions() as session, session.begin():
        assert finish_if_complete(session, first)  # all skipped counts as complete
        assert not finish_if_complete(session, first)  # and only once
        assert not finish_if_complete(session, second)
    ended, other = summary(sessions, first), summary(sessions, second)
    assert ended.state.value == "done" and ended.started_at == started and ended.finished_at is not None
    assert other.state.value == "queued" and other.finished_at is None
    with sessions() as session, session.begin():  # a job finished without ever starting gets a start time
        session.execute(Job.__table__.update().where(Job.id == second).values(skipped=3))
        assert finish_if_complete(session, second)
    assert summary(sessions, second).started_at is not None


def test_a_paused_job_is_not_marked_running(sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first, second, _ = _two_jobs_over_the_same_images(sessions, tmp_path)
    pause(sessions, second)
    with sessions() as session, session.begin():
        mark_running(session, first)
        mark_running(session, second)
    assert (summary(sessions, first).state.value, summary(sessions, second).state.value) == ("running", "paused")


def test_on_postgresql_a_batch_s_outcome_is_one_statement(sessions, engine, version: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job = new_job(sessions, tmp_path.as_uri()).job_id
    ids = list(fill_job(sessions, job, KEYS, tmp_path.as_uri()).values())
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    record_batch(engine, job_id=job, model_version_id=version, tagged=[Tagged(i, []) for i in ids])
    if engine.dialect.name == "postgresql":  # straight to the driver: no SQLAlchemy statement at all
        assert statements == []
    else:
        assert statements  # SQLite runs the same steps one by one in one transaction


def test_a_write_records_when_each_image_and_row_was_tagged(sessions, engine, version: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tagger.db.schema import Image

    tags = _tags(sessions)
    job = new_job(sessions, tmp_path.as_uri()).job_id
    ids = [fill_job(sessions, job, KEYS, tmp_path.as_uri())[k] for k in KEYS]
    record_batch(engine, job_id=job, model_version_id=version, tagged=[Tagged(i, [(tags["x"], 0.9)]) for i in ids])
    with sessions() as session:
        images = session.execute(select(Image.model_version_id, Image.tagged_at).where(Image.id.in_(ids))).all()
        created = session.scalars(select(Suggestion.created_at).where(Suggestion.image_id.in_(ids))).all()
    assert len(images) == 3 and all(v == version and at is not None for v, at in images)
    assert len(created) == 3 and all(at is not None for at in created)


def test_a_re_tag_by_the_same_version_drops_the_tags_now_below_threshold(
    sessions, engine, version: int, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Two images swap tags between two runs of one version: each keeps exactly its new tag (a tag kept
    for the other image must still go from this one)."""
    x, y = _tags(sessions)["x"], _tags(sessions)["y"]
    runs = ({"a.jpg": (x, 0.9), "b.jpg": (y, 0.8)}, {"a.jpg": (y, 0.7), "b.jpg": (x, 0.6)})
    for run in runs:
        job = new_job(sessions, tmp_path.as_uri()).job_id
        ids = fill_job(sessions, job, list(run), tmp_path.as_uri())
        record_batch(engine, job_id=job, model_version_id=version, tagged=[Tagged(ids[k], [t]) for k, t in run.items()])
        with sessions() as session:
            rows = set(session.execute(select(Suggestion.image_id, Suggestion.tag_id, Suggestion.probability)).all())
        assert {(i, t, round(p, 3)) for i, t, p in rows} == {(ids[k], t, p) for k, (t, p) in run.items()}


def test_closing_a_job_closes_that_job_only(sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    first, second = (new_job(sessions, tmp_path.as_uri()).job_id for _ in range(2))
    with sessions() as session, session.begin():  # both complete on paper; only one is being closed
        session.execute(update(Job).where(Job.id.in_([first, second])).values(listing_complete=True))
        assert finish_if_complete(session, first)
    assert (summary(sessions, first).state.value, summary(sessions, second).state.value) == ("done", "queued")
