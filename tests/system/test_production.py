"""The production walk-through of docs/operate.md, command by command, on empty servers: a real PostgreSQL, Redis and
S3 (with enforced credentials), two real worker processes, the CLI as an operator types it, the client as a
web backend calls it, and scheduled retraining as beat and a training worker run it. It ends with every
image, in two storages, tagged by the retrained model."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import redis
from sqlalchemy import func, select

from tagger.db import make_engine, make_sessionmaker
from tagger.db.schema import Image, Job, ModelVersion
from tagger.jobs.progress import wait
from tagger.processes import child_env
from tagger.worker.local import LocalWorkers
from tagger_client import TaggerClient
from tagger_client.contract import QUEUE_TRAINING
from tests.conftest import make_settings
from tests.support.cli import tagger
from tests.support.training import SMALL
from tests.support.training import TINY as TRAIN_TINY
from tests.support.waiting import until

TINY = [*TRAIN_TINY, *SMALL, "--epochs", "1"]


def test_from_empty_servers_to_an_archive_tagged_and_retagged_by_a_retrained_model(
    postgres, redis_url: str, s3, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    run = uuid.uuid4().hex[:8]
    stills, models = f"stills-{run}", f"models-{run}"
    settings = make_settings(
        tmp_path,
        postgres.create_database(f"prod_{run}"),
        broker_url=redis_url,
        storage_url=f"s3://{stills}/archive",
        model_store=f"s3://{models}/tagger",
    )

    def cli(*args: str) -> str:
        done = tagger(settings, *args, timeout=300)
        assert done.returncode == 0, f"tagger {' '.join(args)}:\n{done.stderr[-3000:]}"
        return done.stdout + done.stderr

    assert "created the schema" in cli("db", "upgrade")
    assert cli("storage", "init", f"s3://{stills}", f"s3://{models}").count(": created") == 2
    assert cli("storage", "init").count("already there") == 2  # TAGGER_STORAGE_URL and TAGGER_MODEL_STORE
    labels = tmp_path / "labels.csv"
    cli("sample", f"s3://{stills}/archive", "--count", "64", "--labels", str(labels))
    cli("train", "--labels", str(labels), "--images", f"s3://{stills}/archive", *TINY)

    # A second storage: uploads kept in a local folder, and the same file names as in S3.
    uploads = tmp_path / "uploads"
    cli("sample", str(uploads), "--count", "16", "--seed", "9")

    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    log = tmp_path / "workers.log"
    with LocalWorkers(settings, count=2, log_file=log) as workers:
        cli("tag", f"s3://{stills}/archive", "--wait")
        cli("tag", str(uploads), "--wait")
        with sessions() as session:
            first = session.scalars(select(ModelVersion).where(ModelVersion.is_active.is_(True))).one()
            assert session.scalar(select(func.count()).select_from(Image)) == 64 + 16
            assert session.scalar(select(func.count()).where(Image.model_version_id == first.id)) == 64 + 16

        with TaggerClient(broker_url=redis_url, database_url=settings.database_url) as client:
            key = "stills/still_00000.jpg"
            in_s3 = client.results(key, storage_url=f"s3://{stills}/archive")
            in_uploads = client.results(key, storage_url=uploads.as_uri())  # the same name, another image
            assert all(s.model_version == first.version for s in in_s3 + in_uploads)

        # Retraining on a schedule, as docs/operate.md runs it: `tagger beat` queues the retrain message, a worker
        # on tagger.training runs `tagger train` (gate, activation) and queues the stale re-tag of both storages.
        scheduled = settings.replace(
            retrain_schedule="1",
            retrain_labels=str(labels),
            retrain_args=f"--images s3://{stills}/archive {' '.join(TINY)} --seed 1 --force",
        )
        beat = subprocess.Popen(
            [sys.executable, "-m", "tagger", "beat"],
            cwd=tmp_path,
            env=child_env(scheduled),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:  # one scheduled run is enough: beat stops once its first message waits in tagger.training
            queued = redis.Redis.from_url(redis_url)
            until(lambda: queued.llen(QUEUE_TRAINING) > 0 or beat.poll() is not None, 60)
        finally:
            beat.terminate()
            beat.wait(30)
        queued.ltrim(QUEUE_TRAINING, 0, 0)  # one run: a second tick may have landed while beat stopped
        assert queued.llen(QUEUE_TRAINING) == 1
        with LocalWorkers(scheduled, count=1, log_file=log, queues=QUEUE_TRAINING) as trainer:

            def stale_job() -> str | None:
                with sessions() as session:
                    return session.scalars(select(Job.id).where(Job.source == "query:stale")).first()

            until(lambda: stale_job() is not None or not trainer.alive(), 300)
        stale = stale_job()
        assert stale, log.read_text()[-4000:]
        result = wait(sessions, stale, timeout=240, show_progress=False, alive=workers.alive)
        assert (result.state.value, result.done, result.failed) == ("done", 64 + 16, 0)
    with sessions() as session:
        second = session.scalars(select(ModelVersion).where(ModelVersion.is_active.is_(True))).one()
        assert second.version != first.version and second.meta["training"]["labels"] == str(labels)
        assert session.scalar(select(func.count()).where(Image.model_version_id == second.id)) == 64 + 16
        assert second.uri.startswith(f"s3://{models}/tagger")
    with TaggerClient(broker_url=redis_url, database_url=settings.database_url) as client:
        assert all(s.model_version == second.version for s in client.results(key, storage_url=uploads.as_uri()))
    engine.dispose()
