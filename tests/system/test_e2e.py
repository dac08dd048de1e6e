"""End to end with real `tagger` processes: embedded Redis, real workers, SQLite, PostgreSQL, S3."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.db.schema import Image, ModelVersion, Suggestion
from tagger.settings import Settings
from tagger.worker.local import LocalWorkers
from tests.conftest import make_model, make_settings, write_bad_files, write_stills
from tests.support.cli import tagger


def suggestion_rows(settings: Settings) -> tuple[int, int, set[str]]:
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as session:
        total = session.execute(select(func.count()).select_from(Suggestion)).scalar_one()
        distinct_images = session.execute(select(func.count(func.distinct(Suggestion.image_id)))).scalar_one()
        versions = set(
            session.scalars(
                select(ModelVersion.version).join(Suggestion, Suggestion.model_version_id == ModelVersion.id).distinct()
            )
        )
    engine.dispose()
    return total, distinct_images, versions


def test_one_command_tags_a_folder_and_reports_bad_files(tmp_path: Path) -> None:
    """No broker configured: `tagger tag` starts embedded Redis and a worker process itself."""
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'tagger.db'}")
    archive = tmp_path / "archive"
    keys = write_stills(archive, 13)
    bad = write_bad_files(archive)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    version = make_model(settings, make_sessionmaker(engine))
    engine.dispose()

    result = tagger(settings, "tag", str(archive), "--wait", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert (report["state"], report["total"], report["done"], report["failed"]) == ("done_with_failures", 16, 13, 3)
    reasons = {f["key"]: f["reason"] for f in report["failures"]}
    assert set(reasons) == set(bad)
    for key, fragment in bad.items():
        assert fragment in reasons[key]
    total, images, versions = suggestion_rows(settings)
    assert images == len(keys) and versions == {version}
    shown = json.loads(tagger(settings, "jobs", "show", report["id"], "--json", "--items", "100").stdout)
    outcomes = {item["key"]: item for item in shown["items"]}
    assert len(outcomes) == 16 and shown["eta_seconds"] == 0.0
    assert all(outcomes[k]["state"] == "failed" and outcomes[k]["attempts"] == 1 for k in bad)
    assert {outcomes[k]["model_version"] for k in keys} == {version}

    shown = tagger(settings, "results", keys[0], "--json")
    assert shown.returncode == 0
    (image,) = json.loads(shown.stdout)
    assert image["model_version"] == version and all(r["model_version"] == version for r in image["suggestions"])
    exported = tagger(settings, "export", "--format", "csv")
    assert exported.stdout.count("\n") == total + 1

    # Each tagged still kept its embedding: itself first, by key and as a file not in the archive.
    similar = tagger(settings, "similar", keys[0], "--json", "--limit", "20")
    assert similar.returncode == 0, similar.stderr[-2000:]
    found = json.loads(similar.stdout)
    assert found["images"][0]["key"] == keys[0] and len(found["images"]) == len(keys)
    assert (found["model_version"], found["awaiting_vectors"]) == (version, 0)
    upload = tmp_path / "upload.jpg"
    upload.write_bytes((archive / keys[3]).read_bytes())
    by_file = tagger(settings, "similar", "--file", str(upload), "--json")
    assert by_file.returncode == 0 and json.loads(by_file.stdout)["images"][0]["key"] == keys[3], by_file.stderr
    corrupt = tagger(settings, "similar", "--file", str(archive / "stills" / "corrupt.jpg"))
    assert corrupt.returncode == 2 and "is not an image tagger reads" in corrupt.stderr, corrupt.stderr

    # JSON lines, one tag, a probability floor: every row says so, and the CSV agrees on the count.
    rows = [json.loads(line) for line in tagger(settings, "export", "--format", "jsonl").stdout.splitlines()]
    tag = rows[0]["tag"]
    seen = sorted({r["probability"] for r in rows if r["tag"] == tag})
    floor = (seen[len(seen) // 2 - 1] + seen[len(seen) // 2]) / 2 if len(seen) > 1 else seen[0] - 1e-3  # between two
    only = tagger(settings, "export", "--format", "jsonl", "--tag", tag, "--min-probability", str(floor))
    picked = [json.loads(line) for line in only.stdout.splitlines()]
    assert picked and all(r["tag"] == tag and r["probability"] >= floor for r in picked)
    assert len(picked) == sum(1 for r in rows if r["tag"] == tag and r["probability"] >= floor)

    # People accept one image's suggestions: its labels are exactly those tags.
    accepted = tagger(settings, "labels", "accept", str(archive / keys[1]))
    assert accepted.returncode == 0, accepted.stderr
    suggested = {r["tag"] for r in json.loads(tagger(settings, "results", keys[1], "--json").stdout)[0]["suggestions"]}
    refused = tagger(settings, "labels", "accept", str(archive / keys[2]), "no-such-tag")  # nothing recorded
    assert refused.returncode == 3 and "not suggested for this image: no-such-tag" in refused.stderr
    stats = json.loads(tagger(settings, "labels", "stats", "--json").stdout)
    assert stats["images"] == 1 and set(stats["tags"]) == suggested

    # The jobs subcommands through the CLI, with a shortened id.
    short = report["id"][:6]
    waited = tagger(settings, "jobs", "wait", short)
    assert waited.returncode == 0 and report["id"] in waited.stdout and "done_with_failures" in waited.stdout
    paused = tagger(settings, "jobs", "pause", short)
    assert paused.returncode == 2 and "is done_with_failures" in paused.stderr  # a finished job cannot pause


@pytest.fixture
def pg_s3_settings(postgres, s3, redis_url: str, tmp_path: Path) -> Settings:  # type: ignore[no-untyped-def]
    url = postgres.create_database(f"e2e_{uuid.uuid4().hex[:10]}")
    return make_settings(tmp_path, url, broker_url=redis_url)


def test_s3_prefix_on_postgres_again_tags_nothing_and_all_leaves_the_same_rows(  # type: ignore[no-untyped-def]
    pg_s3_settings: Settings, s3, tmp_path: Path
) -> None:
    """Through the real CLI and a worker: a re-run over an unchanged prefix queues nothing and ends at once,
    `--all` re-tags every image, rewriting the same rows; a key file is tagged as listed."""
    settings = pg_s3_settings
    bucket = f"stills-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    local = tmp_path / "upload"
    keys = write_stills(local, 20, seed=3)
    for key in keys:
        s3.client().put_object(Bucket=bucket, Key=f"archive/{key}", Body=(local / key).read_bytes())
    engine = make_engine(settings.database_url)
    upgrade(engine)
    make_model(settings, make_sessionmaker(engine))
    engine.dispose()

    source = f"s3://{bucket}/archive"
    with LocalWorkers(settings, count=1, log_file=tmp_path / "workers.log") as workers:
        first = tagger(settings, "tag", source, "--wait", "--json")
        assert first.returncode == 0, first.stderr[-3000:] + (tmp_path / "workers.log").read_text()[-3000:]
        rows_after_first = suggestion_rows(settings)
        again = tagger(settings, "tag", source, "--wait", "--json")
        assert again.returncode == 0 and "20 unchanged since tagged by the active model" in again.stderr, again.stderr
        second = tagger(settings, "tag", source, "--all", "--wait", "--json")
        assert second.returncode == 0, second.stderr[-3000:]
        key_file = tmp_path / "keys.txt"
        key_file.write_text("# a few keys, relative to TAGGER_STORAGE_URL\n" + "\n".join(keys[:5]) + "\n")
        from_file = tagger(settings, "tag", str(key_file), "--wait", "--json", extra_env={"TAGGER_STORAGE_URL": source})
        assert from_file.returncode == 0, from_file.stderr[-3000:]
        assert workers.alive()
    listed = json.loads(tagger(settings, "jobs", "list", "--json").stdout)
    assert [j["source"] for j in listed] == [str(key_file), source, source, source]
    report = json.loads(from_file.stdout)
    assert (report["state"], report["total"], report["done"], report["failed"]) == ("done", 5, 5, 0)
    for run in (first, second):
        report = json.loads(run.stdout)
        assert (report["state"], report["done"], report["failed"], report["unchanged"]) == ("done", 20, 0, 0)
    nothing = json.loads(again.stdout)
    assert (nothing["state"], nothing["total"], nothing["unchanged"]) == ("done", 0, 20)
    assert len({json.loads(run.stdout)["id"] for run in (first, again, second)}) == 3
    total, images, _ = rows_after_first
    assert images == 20 and total > 0
    assert suggestion_rows(settings) == rows_after_first  # no duplicates, nothing lost
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as session:
        assert session.execute(select(func.count()).select_from(Image)).scalar_one() == 20
    engine.dispose()
