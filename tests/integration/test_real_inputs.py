"""Inputs people really have, against real servers: a mistyped S3 source refused before a job exists, and a
job no worker takes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tagger.cli import main
from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.db.schema import Job
from tagger.settings import Settings
from tests.conftest import make_model, make_settings


def test_a_mistyped_or_missing_bucket_is_refused_before_a_job_exists(
    postgres, s3, tmp_path: Path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        tmp_path, postgres.create_database(f"src_{uuid.uuid4().hex[:10]}"), broker_url="redis://127.0.0.1:1/0"
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    make_model(settings, make_sessionmaker(engine))
    bucket = f"stills-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    s3.client().put_object(Bucket=bucket, Key="archive/a.jpg", Body=b"x")
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert main(["tag", f"s3://{bucket}/archiv"]) == 3
    assert (
        f"nothing is stored under s3://{bucket}/archiv; did you mean s3://{bucket}/archive?" in capsys.readouterr().err
    )
    assert main(["tag", f"s3://no-such-{bucket}/x"]) == 3
    assert "no such bucket" in capsys.readouterr().err
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
    engine.dispose()


def test_a_job_nobody_takes_is_reported_and_progress_is_logged_without_a_terminal(  # type: ignore[no-untyped-def]
    settings: Settings, sessions
) -> None:
    from tagger.jobs.progress import wait
    from tests.conftest import fill_job, new_job

    job = new_job(sessions, settings.var_dir.parent.as_uri()).job_id
    fill_job(sessions, job, ["a.jpg", "b.jpg"], settings.var_dir.parent.as_uri())
    said: list[str] = []
    with pytest.raises(TimeoutError, match="still queued"):
        wait(sessions, job, timeout=1.0, poll=0.05, progress_every=0.2, idle_warning=0.5, say=said.append)
    warnings = [line for line in said if "no worker has taken a batch" in line]
    progress = [line for line in said if line.startswith(f"job {job[:8]}: queued, 0/2")]
    assert len(warnings) == 1 and len(progress) >= 3
