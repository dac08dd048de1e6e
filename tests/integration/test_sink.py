"""The sink against SQLite and real PostgreSQL: redelivery rewrites the same rows, counters stay exact."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tagger import registry
from tagger.db.schema import Image, JobItem, Suggestion
from tagger.jobs.progress import failures, summary
from tagger.settings import Settings
from tagger.worker.claims import count_attempt
from tagger.worker.sink import Refused, Tagged, record_batch
from tagger_client.contract import job_id_for
from tests.conftest import fill_job, make_model, new_job

KEYS = [f"s/{i}.jpg" for i in range(6)]


def _job(sessions, tmp_path: Path) -> tuple[str, list[int]]:  # type: ignore[no-untyped-def]
    """A job over KEYS, sent as two messages (a key repeated in the stream is one item, sent once); image ids."""
    sent: list[tuple[str, list[object], str]] = []
    job = new_job(sessions, tmp_path.as_uri(), batch_size=3)
    ids = fill_job(
        sessions, job.job_id, KEYS + KEYS[:2], tmp_path.as_uri(), batch_size=3, send=lambda *m: sent.append(m)
    )
    assert summary(sessions, job.job_id).total == 6
    order = [ids[k] for k in KEYS]
    batches = [args[1] for task, args, _ in sent if task == "tagger.tag_batch"]
    assert batches == [sorted(order[0:3]), sorted(order[3:6])]
    return job.job_id, order


def _count(sessions) -> int:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return int(session.execute(select(func.count()).select_from(Suggestion)).scalar_one())


def test_redelivered_batches_write_each_row_once(settings: Settings, sessions, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_model(settings, sessions, tags=("a", "b", "c"))
    with sessions() as session:
        version_id = registry.active(session).id
        tag_ids = registry.ensure_tags(session, ["a", "b", "c"])
    job_id, ids = _job(sessions, tmp_path)
    first = [Tagged(i, [(tag_ids["a"], 0.9), (tag_ids["b"], 0.4)]) for i in ids[:3]]
    counts = [record_batch(engine, job_id=job_id, model_version_id=version_id, tagged=first) for _ in range(3)]
    assert [c.done for c in counts] == [3, 0, 0]  # the same batch delivered three times: only the first moves
    # second batch: one failure; redelivered with a probability now below threshold for tag b
    second = [Tagged(i, [(tag_ids["a"], 0.8), (tag_ids["b"], 0.3)]) for i in ids[3:5]]
    corrupt = [Refused(ids[5], "corrupt or truncated image")]
    last = record_batch(engine, job_id=job_id, model_version_id=version_id, tagged=second, refused=corrupt)
    assert (last.done, last.failed, last.closed) == (2, 1, True)
    second_again = [Tagged(i, [(tag_ids["a"], 0.8)]) for i in ids[3:5]]  # a late duplicate: fenced off
    again = record_batch(engine, job_id=job_id, model_version_id=version_id, tagged=second_again, refused=corrupt)
    assert (again.done, again.failed, again.closed) == (0, 0, False)

    job = summary(sessions, job_id)
    assert (job.total, job.done, job.failed, job.state.value) == (6, 5, 1, "done_with_failures")
    assert failures(sessions, job_id) == [(KEYS[5], "corrupt or truncated image")]
    with sessions() as session:
        distinct = session.execute(
            select(func.count()).select_from(
                select(Suggestion.image_id, Suggestion.tag_id, Suggestion.model_version_id).distinct().subquery()
            )
        ).scalar_one()
    assert _count(sessions) == distinct == 3 * 2 + 2 * 2  # the first delivery to commit wins; duplicates write nothing

    # A later job re-tagging the same images with the same model leaves no row that fell below threshold.
    later = new_job(sessions, tmp_path.as_uri(), batch_size=3).job_id
    assert fill_job(sessions, later, KEYS[3:5], tmp_path.as_uri(), batch_size=3) == {
        k: i for k, i in zip(KEYS[3:5], ids[3:5], strict=True)
    }
    record_batch(engine, job_id=later, model_version_id=version_id, tagged=second_again)
    assert _count(sessions) == 3 * 2 + 2 * 1


def test_a_write_names_the_refusals_it_moved_so_failure_classes_go_to_the_right_images(
    settings: Settings, sessions, engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A delivery whose refusals were partly written by an earlier one: only the rest move, and the write
    says which (the worker's failure metrics are credited per image, not to the first n refusals)."""
    job_id, ids = _job(sessions, tmp_path)
    first = record_batch(engine, job_id=job_id, model_version_id=None, refused=[Refused(ids[1], "corrupt")])
    assert (first.failed, first.failed_ids) == (1, frozenset({ids[1]}))
    both = [Refused(ids[1], "corrupt"), Refused(ids[2], "missing")]
    again = record_batch(engine, job_id=job_id, model_version_id=None, refused=both)
    assert (again.failed, again.failed_ids) == (1, frozenset({ids[2]}))
    none = record_batch(engine, job_id=job_id, model_version_id=None, refused=both)
    assert (none.failed, none.failed_ids) == (0, frozenset())


def test_a_duplicate_that_outlived_the_visibility_timeout_cannot_write_a_second_version(
    settings: Settings, sessions, engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Two deliveries of one batch, served by different model versions, race to write: one wins, whole."""
    first_version = make_model(settings, sessions, tags=("a",))
    second_version = make_model(settings, sessions, tags=("a",), seed=1)
    with sessions() as session:
        versions = {v: registry.get(session, v).id for v in (first_version, second_version)}
        tag = registry.tag_ids(session, ["a"])["a"]
    job_id, ids = _job(sessions, tmp_path)
    barrier = threading.Barrier(2)
    won = []

    def deliver(version_id: int) -> None:
        barrier.wait()
        counts = record_batch(
            engine, job_id=job_id, model_version_id=version_id, tagged=[Tagged(i, [(tag, 0.9)]) for i in ids[:3]]
        )
        won.append(counts.done)

    threads = [threading.Thread(target=deliver, args=(versions[v],)) for v in (first_version, second_version)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with sessions() as session:
        suggested = set(session.scalars(select(Suggestion.model_version_id).distinct()))
        item_versions = set(
            session.scalars(select(JobItem.model_version_id).where(JobItem.model_version_id.is_not(None)))
        )
        image_versions = set(session.scalars(select(Image.model_version_id).where(Image.model_version_id.is_not(None))))
    assert sorted(won) == [0, 3] and len(suggested) == 1 and suggested == item_versions == image_versions
    assert summary(sessions, job_id).done == 3


def test_empty_job_finishes_immediately(settings: Settings, sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job = new_job(sessions, tmp_path.as_uri())
    fill_job(sessions, job.job_id, [], tmp_path.as_uri())
    assert summary(sessions, job.job_id).state.value == "done"


def test_idempotency_key_returns_the_same_job(settings: Settings, sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = new_job(sessions, tmp_path.as_uri(), idempotency_key="upload-1")
    b = new_job(sessions, tmp_path.as_uri(), idempotency_key="upload-1")
    # Until its listing completes, submitting again resumes the listing (a producer may have crashed).
    assert a.job_id == b.job_id == job_id_for("upload-1") and a.created and b.created
    fill_job(sessions, a.job_id, ["k.jpg"], tmp_path.as_uri())
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


def test_skipped_items_count_once_and_are_not_attempts(settings: Settings, sessions, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_model(settings, sessions, tags=("a",))
    with sessions() as session:
        version_id = registry.active(session).id
    job_id, ids = _job(sessions, tmp_path)
    record_batch(engine, job_id=job_id, model_version_id=version_id, tagged=[Tagged(ids[0], [])])
    counts = [record_batch(engine, job_id=job_id, model_version_id=None, skipped=ids[:3]) for _ in range(2)]
    assert [c.skipped for c in counts] == [2, 0]  # a cancelled job's batch, delivered twice; ids[0] was done
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


def test_a_job_starts_its_clock_when_its_first_batch_starts(
    settings: Settings, sessions, engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Rates and ETAs must count the first batch's own work, not start once it is written."""
    make_model(settings, sessions, tags=("a",))
    job_id, ids = _job(sessions, tmp_path)
    assert summary(sessions, job_id).started_at is None
    count_attempt(sessions, job_id, ids[:3])
    started = summary(sessions, job_id)
    assert started.state.value == "running" and started.started_at is not None
    with sessions() as session:
        version_id = registry.active(session).id
    record_batch(engine, job_id=job_id, model_version_id=version_id, tagged=[Tagged(i, []) for i in ids[:3]])
    assert summary(sessions, job_id).started_at == started.started_at


def test_the_same_file_name_in_two_folders_is_two_images(settings: Settings, sessions, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Identity is (storage root, key): tagging ./other/x.jpg never overwrites ./stills/x.jpg's tags."""
    from tagger.results import find_images, suggestions_for

    make_model(settings, sessions, tags=("a", "b"))
    with sessions() as session:
        version_id = registry.active(session).id
        tag_ids = registry.ensure_tags(session, ["a", "b"])
    (tmp_path / "stills").mkdir()
    (tmp_path / "other").mkdir()
    for folder, tag in (("stills", "a"), ("other", "b")):
        job = new_job(sessions, (tmp_path / folder).as_uri()).job_id
        ids = fill_job(sessions, job, ["x.jpg", "y.jpg"], (tmp_path / folder).as_uri())
        tagged = [Tagged(ids["x.jpg"], [(tag_ids[tag], 0.9)]), Tagged(ids["y.jpg"], [])]
        record_batch(engine, job_id=job, model_version_id=version_id, tagged=tagged)
    both = find_images(sessions, "x.jpg")
    assert sorted(i.storage_url for i in both) == [(tmp_path / "other").as_uri(), (tmp_path / "stills").as_uri()]
    by_folder = {i.storage_url.rsplit("/", 1)[1]: [r["tag"] for r in suggestions_for(sessions, i)] for i in both}
    assert by_folder == {"stills": ["a"], "other": ["b"]}
    (tmp_path / "stills" / "x.jpg").write_bytes(b"")  # a path to the file names exactly one of them
    (only,) = find_images(sessions, str(tmp_path / "stills" / "x.jpg"))
    assert only.storage_url == (tmp_path / "stills").as_uri() and suggestions_for(sessions, only)[0]["tag"] == "a"
    (url_named,) = find_images(sessions, (tmp_path / "other").as_uri() + "/x.jpg")
    assert suggestions_for(sessions, url_named)[0]["tag"] == "b"


def test_the_database_itself_allows_one_active_model(settings: Settings, sessions) -> None:  # type: ignore[no-untyped-def]
    import pytest
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    from tagger.db.schema import ModelVersion

    first = make_model(settings, sessions, tags=("a",))
    second = make_model(settings, sessions, tags=("a",), activate=False)
    with pytest.raises(IntegrityError), sessions() as session, session.begin():  # not the code: the index
        session.execute(update(ModelVersion).where(ModelVersion.version == second).values(is_active=True))
    with sessions() as session:
        assert registry.active(session).version == first


def test_query_producers_page_past_a_thousand_images(settings: Settings, sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tagger.jobs.sources import paged_ids

    job = new_job(sessions, tmp_path.as_uri(), batch_size=500).job_id
    ids = fill_job(sessions, job, [f"p/{i:05d}.jpg" for i in range(2345)], tmp_path.as_uri(), batch_size=500)
    streamed = list(paged_ids(sessions, Image.model_version_id.is_(None), page=1000))
    assert streamed == sorted(ids.values())  # every id once, in order, across three pages


def test_a_statement_on_a_connection_the_server_dropped_is_sent_again_on_a_new_one(postgres) -> None:  # type: ignore[no-untyped-def]
    """The hot path's engine does not ping on checkout: a connection the server terminated (a restart, a
    failover) is found by the statement, and `run_statement` empties the pool and sends it once more."""
    import time

    from sqlalchemy import text

    from tagger.db import make_engine, make_statement_engine, run_statement

    url = postgres.create_database(f"drop_{threading.get_ident()}")
    hot, admin = make_statement_engine(url, pool_size=2), make_engine(url)
    try:
        first = run_statement(hot, "SELECT pg_backend_pid()", {})[0][0]
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            conn.commit()
            while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": first}).scalar():
                time.sleep(0.05)
        again = run_statement(hot, "SELECT pg_backend_pid()", {})[0][0]
        assert again != first
        with pytest.raises(Exception, match="division by zero"):  # other errors are not retried
            run_statement(hot, "SELECT 1 / 0", {})
    finally:
        hot.dispose()
        admin.dispose()


def test_each_image_keeps_how_unfamiliar_it_looked_and_each_job_counts_the_unfamiliar_once(  # type: ignore[no-untyped-def]
    settings: Settings, sessions, engine, tmp_path: Path
) -> None:
    """The worker's rows carry each image's unfamiliarity: the sink stores it beside the version that tagged the
    image, counts the job's images above the 99th percentile once (a redelivery adds nothing), the workers
    export the share per job, `tagger results` words it, and a bulk accept leaves those images to a person."""
    import numpy as np
    import torch

    from tagger.labels import accept_above
    from tagger.results import find_images, unfamiliar_images
    from tagger.worker.health import Readiness
    from tagger.worker.inference import suggestion_rows

    make_model(settings, sessions, tags=("a", "b"), arch="mobilenet_v3_small")
    with sessions() as session:
        version_id = registry.active(session).id
        tag_ids = registry.ensure_tags(session, ["a", "b"])
    job_id, ids = _job(sessions, tmp_path)
    quantiles = list(np.linspace(10.0, 20.0, 101))  # held-out energies spread evenly over 10..20
    energy = torch.tensor([20.0, 15.0, 5.0])  # as familiar as the most familiar, the median, below them all
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.95, 0.1]])
    rows = suggestion_rows(
        probs, torch.tensor([0.5, 0.5]), ids[:3], [tag_ids["a"], tag_ids["b"]], None, energy, quantiles
    )
    assert rows.unfamiliarity is not None and rows.unfamiliarity.tolist() == [0.0, 50.0, 100.0]
    for _ in range(2):  # delivered twice: the second is fenced off
        record_batch(engine, job_id=job_id, model_version_id=version_id, tagged=rows)
    with sessions() as session:
        stored = dict(session.execute(select(Image.id, Image.unfamiliarity).where(Image.id.in_(ids[:3]))).all())
    assert [stored[i] for i in ids[:3]] == [0.0, 50.0, 100.0]
    assert Readiness(settings).running_jobs()[job_id][1:] == (3, 1)  # 3 tagged, 1 unfamiliar: 1/3 exported

    version, first = unfamiliar_images(sessions, limit=2)  # the review queue "unfamiliar first", by keyset
    assert [i.id for i in first] == [ids[2], ids[1]]
    last = first[-1]
    assert [i.id for i in unfamiliar_images(sessions, limit=2, after=(last.unfamiliarity, last.id))[1]] == [ids[0]]
    (strange,) = find_images(sessions, KEYS[2])
    assert strange.familiarity == "less familiar than 100% of the held-out stills"
    assert accept_above(sessions, "a", 0.5) == 2  # the unfamiliar image is left for a person ...
    assert accept_above(sessions, "a", 0.5, max_unfamiliarity=None) == 1  # ... unless asked
