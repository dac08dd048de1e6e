"""Liveness is part of a job: while a worker cannot reach the database or the broker, the job says why
(its row, else the broker), every reader shows it in words, and the write that moves items clears it."""

from __future__ import annotations

import io
import re
import time
import uuid
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tagger.processes import run_tagger
from tagger.settings import Settings

pytestmark = pytest.mark.timeout(120)

DEAD_DATABASE = "postgresql+psycopg://tagger:s3cret@127.0.0.1:1/gone"  # nothing listens on port 1


def _refused() -> BaseException:
    """The error a worker meets when PostgreSQL refuses its connection, with the password in the URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(DEAD_DATABASE, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("a database on port 1 answered")


def _job(settings: Settings, sessions: Any) -> tuple[str, dict[str, int]]:
    from tests.conftest import fill_job, new_job

    url = settings.var_dir.parent.as_uri()
    job = new_job(sessions, url).job_id
    return job, fill_job(sessions, job, ["a.jpg", "b.jpg"], url)


def test_the_reason_names_the_error_and_masks_passwords() -> None:
    from tagger.worker.liveness import mask, reason

    why = reason(_refused(), out_of_connections=False)
    assert why.startswith("the database refuses connections: OperationalError: "), why
    short = reason(_refused(), out_of_connections=True)  # refused a slot: the fleet is short, not the server down
    assert short.startswith("the database has no connection to spare (workers take turns; ") and (
        "`tagger config` shows the budget): OperationalError: " in short
    ), short
    assert mask("postgresql://tagger:s3cret@db:5432/x and redis://:pw@r:6379/0") == (
        "postgresql://tagger:***@db:5432/x and redis://:***@r:6379/0"
    )
    assert reason(ConnectionError("redis://u:pw@broker:6379 refused"), out_of_connections=False) == (
        "the broker cannot be reached: ConnectionError: redis://u:***@broker:6379 refused"
    )


def test_a_note_goes_to_the_row_or_the_broker_and_progress_clears_it(
    settings: Settings, sessions: Any, redis_url: str
) -> None:
    from tagger.db import make_sessionmaker
    from tagger.db.engine import make_engine
    from tagger.jobs.progress import summary, with_broker_note
    from tagger.worker.liveness import note_waiting
    from tagger.worker.sink import record_batch

    job, images = _job(settings, sessions)
    worker_settings = replace(settings, broker_url=redis_url)
    up = SimpleNamespace(sessions=sessions, settings=worker_settings)
    assert summary(sessions, job).waiting is None

    # The database answers: the note is on the job's row, and a later note keeps the first one's time.
    note_waiting(up, job, "the broker cannot be reached: ConnectionError: first")  # type: ignore[arg-type]
    first = summary(sessions, job)
    time.sleep(0.05)
    note_waiting(up, job, "the broker cannot be reached: ConnectionError: second")  # type: ignore[arg-type]
    second = summary(sessions, job)
    assert second.waiting_reason == "the broker cannot be reached: ConnectionError: second"
    assert second.waiting_since == first.waiting_since is not None
    assert second.waiting is not None and second.waiting.startswith("waiting 0 s: the broker cannot be reached")
    assert second.as_dict()["waiting_reason"] == second.waiting_reason

    # Items move: the same write clears the note and says when.
    dead_engine = make_engine(DEAD_DATABASE, connect_args={"connect_timeout": 2})
    counts = record_batch(sessions.kw["bind"], job_id=job, model_version_id=None, skipped=[images["a.jpg"]])
    assert counts.skipped == 1
    moved = summary(sessions, job)
    assert moved.waiting_reason is None and moved.waiting_since is None and moved.waiting is None
    assert moved.progress_at is not None

    # The database is down: the note cannot go to the row, so it goes to the broker, never raising.
    down = SimpleNamespace(sessions=make_sessionmaker(dead_engine), settings=worker_settings)
    why = "the database refuses connections: OperationalError: connection refused"
    note_waiting(down, job, why)  # type: ignore[arg-type]
    row = summary(sessions, job)
    assert row.waiting_reason is None
    shown = with_broker_note(row, redis_url)
    assert shown.waiting_reason == why and shown.waiting is not None and shown.waiting.startswith("waiting ")
    assert shown.as_dict()["waiting"] == shown.waiting

    # Neither answers: still no exception.
    lost = SimpleNamespace(
        sessions=make_sessionmaker(dead_engine), settings=replace(settings, broker_url="redis://127.0.0.1:1/0")
    )
    note_waiting(lost, job, why)  # type: ignore[arg-type]

    # Progress after the broker's note: the note is over.
    time.sleep(0.05)
    record_batch(sessions.kw["bind"], job_id=job, model_version_id=None, skipped=[images["b.jpg"]])
    done = summary(sessions, job)
    assert done.state.finished and with_broker_note(done, redis_url).waiting is None
    dead_engine.dispose()


def test_a_broker_note_older_than_progress_is_not_shown(settings: Settings, sessions: Any, redis_url: str) -> None:
    from tagger.broker.waiting import note
    from tagger.jobs.progress import summary, with_broker_note
    from tagger.worker.sink import record_batch

    job, images = _job(settings, sessions)
    note(redis_url, job, "the database refuses connections: OperationalError: gone")
    assert with_broker_note(summary(sessions, job), redis_url).waiting_reason is not None
    time.sleep(0.05)
    record_batch(sessions.kw["bind"], job_id=job, model_version_id=None, skipped=[images["a.jpg"]])
    running = summary(sessions, job)
    assert not running.state.finished and with_broker_note(running, redis_url).waiting is None


def test_following_a_waiting_job_says_why_and_not_that_no_worker_runs(settings: Settings, sessions: Any) -> None:
    from tagger.jobs.progress import wait
    from tagger.worker.liveness import note_waiting

    job, _ = _job(settings, sessions)
    said: list[str] = []
    with pytest.raises(TimeoutError):
        wait(sessions, job, timeout=0.6, poll=0.05, idle_warning=0.2, say=said.append, live_workers=lambda: 2)
    assert not [line for line in said if "no worker" in line]  # workers run: they are busy, not absent

    why = "the database refuses connections: OperationalError: remaining connection slots are reserved"
    note_waiting(SimpleNamespace(sessions=sessions, settings=settings), job, why)  # type: ignore[arg-type]
    said.clear()
    with pytest.raises(TimeoutError):
        wait(sessions, job, timeout=0.8, poll=0.05, progress_every=0.2, idle_warning=0.2, say=said.append)
    assert [line for line in said if line.endswith(f"waiting 0 s: {why}") and "queued for" in line], said
    assert [line for line in said if line.startswith(f"job {job[:8]}: queued, 0/2") and why in line], said
    assert not [line for line in said if "no worker" in line]


def test_jobs_show_prints_the_wait(settings: Settings, sessions: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from tagger.cli.shared import print_job
    from tagger.jobs.progress import summary
    from tagger.worker.liveness import note_waiting

    job, _ = _job(settings, sessions)
    note_waiting(SimpleNamespace(sessions=sessions, settings=settings), job, "the broker cannot be reached: X: y")  # type: ignore[arg-type]
    print_job(summary(sessions, job), [])
    assert "\n  waiting 0 s: the broker cannot be reached: X: y\n" in capsys.readouterr().out


def test_jobs_list_says_which_jobs_wait_and_for_what(settings: Settings, sessions: Any, redis_url: str) -> None:
    """A real `tagger jobs list`: a job whose row says why it waits, one whose note is in the broker (its
    worker could not write the row), and one that does not wait."""
    from tagger.broker.waiting import note
    from tagger.worker.liveness import note_waiting

    listed = replace(settings, broker_url=redis_url)
    on_row, in_broker, moving = (_job(listed, sessions)[0] for _ in range(3))
    full = "the disk under the database is full: OperationalError: database or disk is full"
    note_waiting(SimpleNamespace(sessions=sessions, settings=listed), on_row, full)  # type: ignore[arg-type]
    note(redis_url, in_broker, "the database refuses connections: OperationalError: too many clients already")
    result = run_tagger(listed, "jobs", "list", timeout=60)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    shown = r"  queued +0/2 done, 0 failed  test; waiting \d+ s: the disk under the database is full$"
    assert re.search(shown, lines[on_row]), lines[on_row]
    assert re.search(r"; waiting \d+ s: the database refuses connections$", lines[in_broker]), lines[in_broker]
    assert "waiting" not in lines[moving]


class _Terminal(io.StringIO):
    """Where a bar is drawn: a file that says it is a terminal, as a person's stderr does."""

    def isatty(self) -> bool:
        return True


def test_the_bar_shows_the_wait_and_asks_the_broker_at_most_every_few_seconds(
    settings: Settings, sessions: Any, redis_url: str
) -> None:
    import redis

    from tagger.broker.waiting import note
    from tagger.jobs.progress import wait

    job, _ = _job(settings, sessions)
    note(redis_url, job, "the disk under the database is full: OperationalError: database or disk is full")
    terminal = _Terminal()
    with redis.Redis.from_url(redis_url) as client:
        client.config_resetstat()
        with pytest.raises(TimeoutError):
            wait(sessions, job, timeout=1.2, poll=0.02, broker_url=redis_url, note_every=0.5, file=terminal)
        reads = int(client.info("commandstats").get("cmdstat_mget", {}).get("calls", 0))
    drawn = terminal.getvalue().split("\r")[-2]  # the bar's last drawing before it closed
    assert re.search(r", queued, waiting \d s: the disk under the database is full\]$", drawn), drawn
    assert f"job {job[:8]}:" in drawn and "0/2" in drawn, drawn
    assert 1 < reads <= 3, reads  # every 0.5 s over 1.2 s, where a poll every 0.02 s would ask 60 times


@pytest.mark.timeout(300)
def test_a_worker_short_of_connections_says_so_on_the_job_and_takes_turns_on_the_one_it_has(
    postgres: Any, redis_url: str, tmp_path: Path
) -> None:
    """Kind 2, a fleet short of connections, on a real `tagger worker` whose PostgreSQL role has a connection
    limit. Its budget is 5 (`tagger config`); at 4 nothing is refused (it holds 3 at most here), so its role
    is left one: the worker starts (its migrations on the lock's connection) and tags, its healer and its
    batches taking turns (the healer holds no connection between rounds). With none, `tagger jobs show`
    says within a minute why the job waits (read from the broker: the worker cannot write the job's row);
    given one back, the job ends: slower, never stopped."""
    import psycopg
    import redis

    from tagger.broker.config import make_producer_app
    from tagger.broker.send import celery_sender
    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.jobs.progress import wait
    from tagger.worker.local import LocalWorkers
    from tagger.worker.shape import worker_connections
    from tests.conftest import make_model, make_settings, submit_keys, write_stills

    name = f"liv_{uuid.uuid4().hex[:10]}"
    admin_url = postgres.create_database(name)

    def admin(sql: str, dbname: str = "postgres") -> None:
        dsn = f"host=127.0.0.1 port={postgres.port} user=postgres dbname={dbname}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql)

    admin(f"CREATE ROLE {name} LOGIN")
    admin(f"ALTER DATABASE {name} OWNER TO {name}")  # the role owns the schema it migrates
    admin("CREATE EXTENSION vector", dbname=name)  # as a DBA does: pgvector is not an extension owners may create
    worker = make_settings(
        tmp_path, admin_url.replace("//postgres@", f"//{name}@"), broker_url=redis_url, heal_seconds=2
    )
    assert worker_connections(worker, gpu=False) == 5
    engine = make_engine(worker.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    make_model(worker, sessions)
    engine.dispose()
    looker = replace(worker, database_url=admin_url)  # a person's `tagger jobs show`, as another role
    admin_engine = make_engine(admin_url)
    people = make_sessionmaker(admin_engine)
    keys = write_stills(tmp_path / "archive", 16, seed=27)
    send = celery_sender(make_producer_app(worker, redis_url))
    log = tmp_path / "workers.log"
    redis.Redis.from_url(redis_url).flushdb()
    admin(f"ALTER ROLE {name} CONNECTION LIMIT 1")
    try:
        with LocalWorkers(worker, count=1, log_file=log) as workers:
            warm = submit_keys(people, send, keys[:4], storage_url=(tmp_path / "archive").as_uri()).job_id
            assert wait(people, warm, timeout=120, show_progress=False, alive=workers.alive).state.value == "done"
            admin(f"ALTER ROLE {name} CONNECTION LIMIT 0")
            admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'")
            job = submit_keys(people, send, keys, storage_url=(tmp_path / "archive").as_uri()).job_id
            deadline, shown = time.monotonic() + 60, ""
            while "too many connections" not in shown:
                assert time.monotonic() < deadline, shown + "\nworkers log:\n" + log.read_text()[-3000:]
                time.sleep(1)
                shown = run_tagger(looker, "jobs", "show", job, timeout=60).stdout
            assert "\n  waiting " in shown and "the database has no connection to spare (" in shown, shown
            admin(f"ALTER ROLE {name} CONNECTION LIMIT 1")
            result = wait(people, job, timeout=150, show_progress=False, alive=workers.alive)
            assert "waiting" not in run_tagger(looker, "jobs", "show", job, timeout=60).stdout
            # The server drops the idle connections; the healer's rounds, with nothing queued, take the slot:
            # it lets go after each round, or the next job's batches wait on it for ever.
            admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'")
            time.sleep(2 * worker.heal_seconds + 0.5)
            after = submit_keys(people, send, keys[:4], storage_url=(tmp_path / "archive").as_uri()).job_id
            last = wait(people, after, timeout=60, show_progress=False, alive=workers.alive)
        assert (result.state.value, result.done) == ("done", len(keys))
        assert (last.state.value, last.done) == ("done", 4)
    finally:
        admin(f"ALTER ROLE {name} CONNECTION LIMIT -1")
        admin_engine.dispose()


def test_the_http_api_and_the_job_page_carry_the_wait_escaped(
    settings: Settings, sessions: Any, redis_url: str, tmp_path: Path
) -> None:
    import httpx

    from tagger.processes import child_env
    from tagger.tokens import create
    from tagger.worker.liveness import note_waiting
    from tests.support.servers import tagger_serve

    site = replace(settings, broker_url=redis_url, web_cookie_secure=0, web_secret="s" * 40)
    job, _ = _job(site, sessions)
    why = "the database refuses connections: OperationalError: <script>alert(1)</script>"
    note_waiting(SimpleNamespace(sessions=sessions, settings=site), job, why)  # type: ignore[arg-type]
    token = create(sessions, "liveness-reader", "read")
    with tagger_serve(child_env(site), tmp_path / "serve.log") as base, httpx.Client(base_url=base, timeout=30) as web:
        status = web.get(f"/api/v1/jobs/{job}", headers={"Authorization": f"Bearer {token}"}).json()
        assert status["waiting_reason"] == why and status["waiting"].endswith(f" s: {why}"), status
        assert status["waiting_since"] is not None
        page = web.get("/login").text
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        assert web.post("/login", data={"token": token, "csrf": csrf}).status_code == 303
        shown = web.get(f"/review/jobs/{job}").text
    assert " s: the database refuses connections: OperationalError: &lt;script&gt;alert(1)&lt;/script&gt;" in shown
    assert "<script>alert(1)" not in shown


def test_each_unfinished_job_is_scraped_with_its_seconds_since_progress(
    settings: Settings, sessions: Any, redis_url: str
) -> None:
    from prometheus_client import CollectorRegistry

    from tagger.worker.health import Readiness, ScrapeCollector
    from tagger.worker.sink import record_batch

    job, images = _job(settings, sessions)
    scraped = replace(settings, broker_url=redis_url)
    readiness = Readiness(scraped)
    collector = ScrapeCollector(scraped, SimpleNamespace(queues=()), readiness, CollectorRegistry())  # type: ignore[arg-type]

    def seconds() -> dict[str, float]:
        family = next(m for m in collector.collect() if m.name == "tagger_job_seconds_since_progress")
        return {s.labels["job_id"]: s.value for s in family.samples}

    time.sleep(1.1)
    assert seconds()[job] >= 1.0  # queued since its creation, nothing moved
    record_batch(sessions.kw["bind"], job_id=job, model_version_id=None, skipped=[images["a.jpg"]])
    assert seconds()[job] < 1.0  # its items moved just now
    record_batch(sessions.kw["bind"], job_id=job, model_version_id=None, skipped=[images["b.jpg"]])
    assert job not in seconds()  # ended: nothing to watch
    readiness.engine.dispose()
