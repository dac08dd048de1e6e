"""Behind PgBouncer in transaction pooling (the usual pooler before managed PostgreSQL): migrations, the
sink's one-statement writes from several workers and the ORM's reads, each statement run far more often than
psycopg's threshold for preparing it, all work, where server-side prepared statements made on one server
connection were looked for on another ("prepared statement _pg3_0 already exists / does not exist")."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import func, select

from tagger import registry
from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.db.engine import make_statement_engine
from tagger.db.schema import Suggestion
from tagger.jobs.progress import summary
from tagger.worker.sink import Refused, Tagged, record_batch
from tests.conftest import fill_job, make_model, make_settings, new_job
from tests.support.servers import PgBouncer, Postgres


def test_a_fleet_writes_through_a_transaction_pooler(postgres: Postgres, pgbouncer: PgBouncer, tmp_path: Path) -> None:
    name = f"pooled_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    url = pgbouncer.url(name)
    engine = make_engine(url)
    upgrade(engine)  # the migrations' advisory lock and DDL, through the pooler
    sessions = make_sessionmaker(engine)
    settings = make_settings(tmp_path, url)
    make_model(settings, sessions, tags=("a", "b"))
    with sessions() as session:
        version_id = registry.active(session).id
        tags = registry.ensure_tags(session, ["a", "b"])
    keys = [f"s/{i:03d}.jpg" for i in range(96)]
    job = new_job(sessions, tmp_path.as_uri()).job_id
    ids = list(fill_job(sessions, job, keys, tmp_path.as_uri()).values())
    workers = [make_statement_engine(url) for _ in range(3)]  # three worker processes' statement engines
    try:
        for n, start in enumerate(range(0, len(ids), 4)):  # 24 batches, 8 per worker: past psycopg's 5
            batch = ids[start : start + 4]
            tagged = [Tagged(i, [(tags["a"], 0.9), (tags["b"], 0.2)]) for i in batch[:3]]
            record_batch(
                workers[n % 3],
                job_id=job,
                model_version_id=version_id,
                tagged=tagged,
                refused=[Refused(batch[3], "corrupt")],
            )
            assert summary(sessions, job).done == 3 * (n + 1)  # the ORM's reads, as often
    finally:
        for worker in workers:
            worker.dispose()
    final = summary(sessions, job)
    assert (final.state.value, final.done, final.failed) == ("done_with_failures", 72, 24)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Suggestion)) == 144
    # A worker's /readyz database check, through the pooler: no startup `options` (PgBouncer refuses them).
    from tagger.worker.health import Readiness

    check, active = Readiness(settings).database()
    assert check == (True, "answers") and active is not None
    engine.dispose()
