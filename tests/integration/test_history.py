"""History within bounds, on SQLite and PostgreSQL: `jobs prune` and `models prune` delete what nobody reads
and leave everything a person or a backend can still reach exactly as it was (compared before and after)."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from tagger import promotion, registry
from tagger.cli import main
from tagger.db.schema import Embedding, Image, Job, JobItem, ModelVersion, Suggestion
from tagger.db.vectors import write_vectors
from tagger.errors import ConfigError
from tagger.jobs import control
from tagger.jobs.progress import failures, outcomes, summary
from tagger.jobs.retention import held, prunable, prune_job
from tagger.results import export, find_images, images_with_tag, latest_failure, suggestions_for
from tagger.settings import Settings
from tagger.worker.sink import Refused, Tagged, record_batch
from tagger_client.contract import ItemState
from tests.conftest import fill_job, new_job
from tests.integration.test_paging import images, suggest, versions

KEYS = [f"s/{i:02d}.jpg" for i in range(12)]


def _reachable(sessions: Any, url: str, jobs: list[str]) -> dict[str, Any]:
    """Everything a person or a backend reads: each image's results and latest failure, each job's counts and
    failures, the export, every page of each tag."""
    shown: dict[str, Any] = {}
    for key in KEYS:
        (image,) = find_images(sessions, key, storage_url=url)
        failure = latest_failure(sessions, image)
        shown[key] = (image.version, suggestions_for(sessions, image), failure and failure.as_dict())
    for job_id in jobs:
        job = summary(sessions, job_id)
        shown[job_id] = (job.state, job.total, job.done, job.failed, job.skipped, failures(sessions, job_id))
    out = io.StringIO()
    export(sessions, out, fmt="jsonl")
    shown["export"] = out.getvalue()
    for tag in ("x", "y"):
        shown[tag] = [i.as_dict() for i in images_with_tag(sessions, tag, limit=1000).items]
    return shown


def _age(sessions: Any, job_id: str, days: int) -> None:
    with sessions() as session, session.begin():
        job = session.get(Job, job_id)
        assert job is not None and job.finished_at is not None
        job.finished_at -= timedelta(days=days)


def _items(sessions: Any, job_id: str) -> dict[int, str]:
    with sessions() as session:
        return dict(session.execute(select(JobItem.image_id, JobItem.state).where(JobItem.job_id == job_id)).all())


def test_jobs_prune_keeps_counts_failures_and_every_result(
    settings: Settings, sessions, engine, tmp_path: Path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    url = tmp_path.as_uri()
    version = versions(sessions, ("v1",))["v1"]
    with sessions() as session, session.begin():
        x, y = registry.ensure_tags(session, ["x", "y"]).values()
    tagged = lambda ids: [Tagged(i, [(x, 1.0 if i % 2 else 0.6), (y, 0.3)]) for i in ids]  # noqa: E731

    # An old job: 9 tagged, 3 failed.
    old = new_job(sessions, url).job_id
    ids = fill_job(sessions, old, KEYS, url)
    image = [ids[k] for k in KEYS]
    refused = [Refused(i, f"corrupt or truncated image {i}") for i in image[9:]]
    record_batch(engine, job_id=old, model_version_id=version, tagged=tagged(image[:9]), refused=refused)
    # An old re-run, cancelled: image 9 now reads, 10 fails again, 0 is tagged again, the rest skipped.
    rerun = new_job(sessions, url).job_id
    fill_job(sessions, rerun, [KEYS[0], *KEYS[9:]], url)
    record_batch(engine, job_id=rerun, model_version_id=version, tagged=tagged([image[0], image[9]]))
    record_batch(engine, job_id=rerun, model_version_id=version, refused=[Refused(image[10], "still corrupt")])
    control.cancel(sessions, rerun)
    # A recent job: inside the retention, untouched.
    recent = new_job(sessions, url).job_id
    fill_job(sessions, recent, KEYS[:3], url)
    record_batch(engine, job_id=recent, model_version_id=version, tagged=tagged(image[:3]))
    for job_id in (old, rerun):
        _age(sessions, job_id, 40)
    jobs = [old, rerun, recent]
    before = _reachable(sessions, url, jobs)
    assert before[KEYS[10]][2]["reason"] == "still corrupt" and before[KEYS[9]][2] is None
    recent_items = _items(sessions, recent)

    assert [j.id for j in prunable(sessions, timedelta(days=30))] == [old, rerun]
    assert held(sessions, old) == {"done": 9, "failed": 3} and held(sessions, rerun) == {
        "done": 2,
        "failed": 1,
        "skipped": 1,
    }
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert main(["jobs", "prune", "--dry-run"]) == 0  # TAGGER_JOB_RETENTION_DAYS: 30
    said = capsys.readouterr().out
    assert "would prune 2 job(s)" in said and "12 rows of done" in said and "4 failures stay" in said
    assert held(sessions, old)["done"] == 9  # a dry run deletes nothing

    batches: list[int] = []
    assert prune_job(sessions, old, batch=4, progress=batches.append) == 9 and batches == [4, 4, 1]
    said = _run(capsys, ["jobs", "prune", "--older-than", "30d", "--batch", "2"])
    assert "pruned 1 job(s) that finished more than 30 day(s) ago: 3 rows" in said

    assert _items(sessions, old) == {i: "failed" for i in image[9:]}
    assert _items(sessions, rerun) == {image[10]: "failed"}
    assert _items(sessions, recent) == recent_items
    assert _reachable(sessions, url, jobs) == before  # results, latest failures, counts, failures, export, pages
    assert prunable(sessions, timedelta(days=30)) == []  # done: the next prune has nothing to do
    shown = json.loads(_run(capsys, ["jobs", "show", old, "--json"]))
    assert shown["items_pruned_at"] and shown["failed"] == 3

    # A retried job runs again: its rows are its own until it ends, whatever a prune says meanwhile.
    assert control.retry_failed(sessions, lambda *message: None, old) == 3
    record_batch(engine, job_id=old, model_version_id=version, tagged=tagged(image[9:10]))
    assert prune_job(sessions, old) == 0
    assert _items(sessions, old) == {image[9]: "done", image[10]: "pending", image[11]: "pending"}


def _run(capsys: Any, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 0
    return str(capsys.readouterr().out)


def test_jobs_show_pages_through_items_by_image_id(
    settings: Settings, sessions, engine, tmp_path: Path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    url = tmp_path.as_uri()
    version = versions(sessions, ("v1",))["v1"]
    job = new_job(sessions, url).job_id
    ids = fill_job(sessions, job, KEYS, url)
    order = sorted(ids.values())
    record_batch(
        engine,
        job_id=job,
        model_version_id=version,
        tagged=[Tagged(i, []) for i in order[:7]],
        refused=[Refused(i, "unreadable") for i in order[7:]],
    )
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    walked, after = [], 0
    while True:
        page = json.loads(_run(capsys, ["jobs", "show", job, "--json", "--items", "5", "--after", str(after)]))
        walked += [item["image_id"] for item in page["items"]]
        if page["items_after"] is None:
            break
        after = page["items_after"]
    assert walked == order  # every item once, by image id
    text = _run(capsys, ["jobs", "show", job[:8], "--items", "5"])
    assert f"--items 5 --after {order[4]}" in text
    assert [o["image_id"] for o in outcomes(sessions, job, limit=3, after=order[7], state=ItemState.FAILED)] == order[
        8:11
    ]


def test_models_prune_never_touches_the_active_or_kept_versions(
    settings: Settings, sessions, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    ids = versions(sessions, ("v1", "v2", "v3", "v4"))  # activated in turn: v4 is active
    image = images(sessions, 30)
    for version_id in ids.values():
        suggest(
            sessions, version_id, [(i, 1.0 if k % 2 else 0.4 + version_id / 100) for k, i in enumerate(image)], tag="x"
        )
    with sessions() as session, session.begin():
        session.execute(update(Image).values(model_version_id=ids["v4"]))
        session.execute(update(Image).where(Image.id == image[0]).values(model_version_id=ids["v1"]))  # not re-tagged

    def rows(version: str) -> list[tuple[int, int, float]]:
        with sessions() as session:
            return sorted(
                session.execute(
                    select(Suggestion.image_id, Suggestion.tag_id, Suggestion.probability).where(
                        Suggestion.model_version_id == ids[version]
                    )
                ).all()
            )

    kept_rows = {v: rows(v) for v in ("v2", "v3", "v4")}
    with sessions() as session, session.begin():  # each version's embeddings: the pruned one's go with it
        for version_id in ids.values():
            write_vectors(session, version_id, image, np.eye(len(image), 8, dtype=np.float16))

    def vectors() -> dict[int, int]:
        with sessions() as session:
            return dict(
                session.execute(
                    select(Embedding.model_version_id, func.count()).group_by(Embedding.model_version_id)
                ).all()
            )

    pages = [i.as_dict() for i in images_with_tag(sessions, "x", limit=1000).items]
    assert promotion.pruning(sessions, keep=2) == (["v4", "v3", "v2"], ["v1"])
    assert promotion.pruning(sessions, keep=0) == (["v4"], ["v3", "v2", "v1"])
    assert promotion.held(sessions, "v1") == (30, 1)
    with pytest.raises(ConfigError, match="1 image"):  # its newest tags: refused, nothing deleted or marked
        promotion.prune(sessions, "v1")
    with pytest.raises(ConfigError, match="never pruned"):
        promotion.prune(sessions, "v4")
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    said = _run(capsys, ["models", "prune", "--dry-run"])  # TAGGER_MODELS_KEEP: 2
    assert "kept: v4, v3, v2" in said and "v1: kept back: 1 image(s)" in said
    assert len(rows("v1")) == 30

    said = _run(capsys, ["models", "prune", "--force", "--batch", "7"])
    assert "v1: pruned, 30 suggestions deleted" in said
    assert rows("v1") == [] and {v: rows(v) for v in kept_rows} == kept_rows
    assert vectors() == {ids[v]: 30 for v in kept_rows}
    assert [i.as_dict() for i in images_with_tag(sessions, "x", limit=1000).items] == pages
    with sessions() as session:
        v1 = registry.get(session, "v1")
        assert v1.status == "pruned" and v1.pruned_at is not None and v1.meta["tags"]  # the row stays, as history
        assert session.get(Image, image[0]).model_version_id is None  # untagged: `--query untagged` finds it
        with pytest.raises(ConfigError, match="pruned"):
            registry.activate(session, "v1")
        back, to = registry.rollback(session)  # a rollback walks to a kept version, never to a pruned one
        assert (back.version, to.version) == ("v4", "v3")
        session.rollback()
    with pytest.raises(ConfigError, match="cannot be activated"):
        promotion.activate(sessions, "v1", broker_url=None)  # refused before any artifact is loaded
    with pytest.raises(IntegrityError, match="ck_model_versions_pruned_not_active"), sessions.begin() as session:
        session.execute(update(ModelVersion).values(is_active=False))
        session.execute(update(ModelVersion).where(ModelVersion.version == "v1").values(is_active=True))
    assert "nothing to prune" in _run(capsys, ["models", "prune"])  # at keep 2, nothing left
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Suggestion)) == 90
