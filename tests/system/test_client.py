"""The web-backend path: the `tagger-client` distribution, one Celery message from any language,
webhooks and task notifications, idempotency, interactive images overtaking a bulk job."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.db.schema import Job, JobItem
from tagger.settings import Settings
from tagger.worker.local import LocalWorkers
from tagger_client import TaggerClient, job_id_for
from tagger_client.contract import QUEUE_INTERACTIVE, QUEUE_NOTIFICATIONS, TASK_SUBMIT_JOB
from tagger_client.errors import JobNotFound
from tagger_client.webhooks import SIGNATURE_HEADER, verify
from tests.conftest import make_model, make_settings, write_stills

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-for-tests"


def _deployment(settings: Settings, archive: Path, stills: int, *, seed: int) -> tuple[Any, Any, list[str], str]:
    """A migrated database with an active model and an archive of stills: (engine, sessions, keys, URL)."""
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    make_model(settings, sessions)
    return engine, sessions, write_stills(archive, stills, seed=seed), archive.as_uri()


class Hook(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes, int]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 500 if not Hook.received else 204  # the first delivery fails: the worker must retry
        Hook.received.append((dict(self.headers), body, status))
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Hook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/tags"
    server.shutdown()
    server.server_close()


def raw_message(task: str, kwargs: dict[str, object], queue: str = QUEUE_INTERACTIVE) -> bytes:
    """The documented Celery protocol-2 envelope, built by hand as a backend in any language would."""
    task_id = str(uuid.uuid4())
    body = json.dumps([[], kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    return json.dumps(
        {
            "body": base64.b64encode(body.encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "retries": 0},
            "properties": {
                "correlation_id": task_id,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    ).encode()


def test_backend_path_end_to_end(postgres, redis_url: str, tmp_path: Path, webhook: str) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        tmp_path,
        postgres.create_database(f"cli_{uuid.uuid4().hex[:10]}"),
        broker_url=redis_url,
        webhook_secret=SECRET,
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    make_model(settings, sessions)
    archive = tmp_path / "archive"
    keys = write_stills(archive, 240, seed=8)
    url = archive.as_uri()
    broker = redis.Redis.from_url(redis_url)
    broker.delete(QUEUE_NOTIFICATIONS)

    with (
        LocalWorkers(settings, count=1, log_file=tmp_path / "workers.log") as workers,
        TaggerClient(broker_url=redis_url, database_url=settings.database_url) as client,
    ):
        # Idempotency key, webhook (first delivery fails, then succeeds, signed) and a task notification.
        first = client.submit(
            keys=keys[:10],
            storage_url=url,
            idempotency_key="upload-batch-1",
            webhook=webhook,
            notify_task="site.tags_ready",
            priority="interactive",
        )
        again = client.submit(keys=keys[:10], storage_url=url, idempotency_key="upload-batch-1", webhook=webhook)
        assert first == again == job_id_for("upload-batch-1")
        status = client.wait(first, timeout=60)
        assert (status.state.value, status.done, status.total, status.eta_seconds) == ("done", 10, 10, 0.0)
        assert client.results(keys[0]) and all(s.model_version for s in client.results(keys[0]))
        deadline = time.monotonic() + 30
        while len(Hook.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)

        # One message from "any language": the raw envelope pushed onto the Redis list.
        raw_id = uuid.uuid4().hex
        broker.lpush(
            QUEUE_INTERACTIVE,
            raw_message(
                TASK_SUBMIT_JOB, {"job_id": raw_id, "keys": keys[10:15], "storage_url": url}, QUEUE_INTERACTIVE
            ),
        )
        raw = client.wait(raw_id, timeout=60)
        bad_id = uuid.uuid4().hex
        broker.lpush(
            QUEUE_INTERACTIVE,
            raw_message(
                TASK_SUBMIT_JOB, {"job_id": bad_id, "keys": ["../etc/passwd"], "storage_url": url}, QUEUE_INTERACTIVE
            ),
        )
        refused = client.wait(bad_id, timeout=60)

        # A bulk job, cancelled mid-way through the client.
        bulk = client.submit(keys=keys[20:], storage_url=url, batch_size=8)
        while _done(client, bulk) < 16:
            time.sleep(0.05)
        client.cancel(bulk)
        cancelled = client.wait(bulk, timeout=60)
        assert workers.alive()

    assert (raw.state.value, raw.done) == ("done", 5)
    # A key that could leave the storage root fails alone, refused before any I/O, with its reason.
    assert (refused.state.value, refused.total, refused.failed) == ("done_with_failures", 1, 1)
    with sessions() as session:
        reason = session.scalar(select(JobItem.error).where(JobItem.job_id == bad_id))
    assert "'..'" in reason and "../etc/passwd" in reason
    assert cancelled.skipped > 0 and cancelled.done < len(keys) - 20
    assert cancelled.state.value == "cancelled"

    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.idempotency_key == "upload-batch-1")) == 1
    assert [status for _, _, status in Hook.received[:2]] == [500, 204]
    headers, body, _ = Hook.received[1]
    assert verify(body, SECRET, headers[SIGNATURE_HEADER]) and json.loads(body)["id"] == first
    assert json.loads(body)["state"] == "done" and headers["X-Tagger-Delivery-Attempt"] == "2"
    assert headers["X-Tagger-Job"] == first and Hook.received[0][0]["X-Tagger-Delivery-Attempt"] == "1"
    note = json.loads(broker.lindex(QUEUE_NOTIFICATIONS, 0))
    assert note["headers"]["task"] == "site.tags_ready"
    assert json.loads(base64.b64decode(note["body"]))[1]["job"]["id"] == first
    broker.delete(QUEUE_NOTIFICATIONS)
    broker.close()
    engine.dispose()


def _done(client: TaggerClient, job_id: str) -> int:
    try:
        return client.status(job_id).done
    except JobNotFound:  # the worker has not taken the submission yet
        return 0


def test_every_documented_source_form_sent_as_raw_json_ends_in_a_finished_job(  # type: ignore[no-untyped-def]
    postgres, redis_url: str, tmp_path: Path
) -> None:
    """keys, prefix and each query, pushed as the documented envelope with a plain Redis client."""
    settings = make_settings(tmp_path, postgres.create_database(f"src_{uuid.uuid4().hex[:10]}"), broker_url=redis_url)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    make_model(settings, sessions)
    archive = tmp_path / "archive"
    keys = write_stills(archive, 12, seed=13)
    url = archive.as_uri()
    broker = redis.Redis.from_url(redis_url)
    forms: list[dict[str, object]] = [
        {"keys": keys[:4], "storage_url": url},
        {"prefix": "stills/", "storage_url": url},
        {"query": "untagged"},
        {"query": "stale"},
        {"query": "missing", "tags": ["night"]},
        {"keys": keys[:1], "storage_url": url, "colour": "red"},  # refused, but its job says why
    ]
    finished = {}
    with (
        LocalWorkers(settings, count=1, log_file=tmp_path / "workers.log"),
        TaggerClient(broker_url=redis_url, database_url=settings.database_url) as client,
    ):
        for form in forms:
            job_id = uuid.uuid4().hex
            broker.lpush(QUEUE_INTERACTIVE, raw_message(TASK_SUBMIT_JOB, {"job_id": job_id, **form}))
            finished[str(form)] = client.wait(job_id, timeout=60)
    broker.close()
    engine.dispose()
    states = {form: (s.state.value, s.total, s.done) for form, s in finished.items()}
    assert states == {
        str(forms[0]): ("done", 4, 4),
        str(forms[1]): ("done", 8, 8),  # a listing: the four keys tagged just before are unchanged
        str(forms[2]): ("done", 0, 0),  # the prefix job tagged every image already
        str(forms[3]): ("done", 0, 0),  # one model: nothing is stale
        str(forms[4]): ("done", finished[str(forms[4])].total, finished[str(forms[4])].total),
        str(forms[5]): ("failed", 0, 0),
    }, states
    assert "unknown submit_job fields ['colour']" in (finished[str(forms[5])].error or "")
    assert finished[str(forms[1])].unchanged == 4


def test_an_interactive_image_is_taken_before_a_waiting_bulk_backlog(  # type: ignore[no-untyped-def]
    postgres, redis_url: str, tmp_path: Path
) -> None:
    """The only worker is held mid-batch on an interactive image; meanwhile ten bulk batches and one more
    interactive image queue up. Released, the worker must take the interactive one next: workers poll
    tagger.interactive first (kombu's round-robin would take a bulk batch here, as the queue just used
    goes to the back)."""
    from tagger.broker.config import make_producer_app
    from tagger.broker.send import celery_sender
    from tagger.jobs.progress import summary
    from tests.conftest import submit_keys
    from tests.support.holds import Holds

    settings = make_settings(
        tmp_path, postgres.create_database(f"ovt_{uuid.uuid4().hex[:10]}"), broker_url=redis_url, test_holds=1
    )
    engine, sessions, keys, url = _deployment(settings, tmp_path / "archive", 42, seed=12)
    send = celery_sender(make_producer_app(settings, redis_url))
    holds = Holds(settings.var_dir)
    holds.arm("fetched")
    log = tmp_path / "workers.log"
    with LocalWorkers(settings, count=1, log_file=log) as workers:
        first = submit_keys(sessions, send, keys[:1], storage_url=url, priority="interactive").job_id
        held = holds.wait("fetched", log=log)
        assert held.job_id == first
        bulk = submit_keys(sessions, send, keys[2:], storage_url=url, batch_size=4).job_id
        late = submit_keys(sessions, send, keys[1:2], storage_url=url, priority="interactive").job_id
        holds.release(held)
        deadline = time.monotonic() + 90
        while not summary(sessions, bulk).state.finished:
            assert time.monotonic() < deadline and workers.alive(), log.read_text()[-3000:]
            time.sleep(0.1)
    late_done, bulk_job = summary(sessions, late), summary(sessions, bulk)
    assert late_done.state.value == "done" and bulk_job.state.value == "done"
    assert late_done.finished_at is not None and bulk_job.started_at is not None
    assert late_done.finished_at <= bulk_job.started_at  # the next batch after the held one was `late`
    engine.dispose()


def test_a_webhook_receiver_that_never_answers_holds_up_no_tagging(  # type: ignore[no-untyped-def]
    postgres, redis_url: str, tmp_path: Path
) -> None:
    """One worker process; a job's webhook receiver accepts the connection and never answers. An
    interactive image queued behind it is tagged while that POST is still waiting (the delivery runs in
    a thread of its own, not in the only pool slot), and the job says the webhook is being retried."""
    import socket

    settings = make_settings(
        tmp_path,
        postgres.create_database(f"wh_{uuid.uuid4().hex[:10]}"),
        broker_url=redis_url,
        webhook_timeout=300,  # the POST waits far longer than the upload may take
    )
    engine, sessions, keys, url = _deployment(settings, tmp_path / "archive", 4, seed=17)
    silent = socket.create_server(("127.0.0.1", 0))
    connected = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        conn, _ = silent.accept()  # read nothing, answer nothing
        held.append(conn)
        connected.set()

    threading.Thread(target=accept, daemon=True).start()
    hook = f"http://127.0.0.1:{silent.getsockname()[1]}/never"
    with (
        LocalWorkers(settings, count=1, concurrency=1, log_file=tmp_path / "workers.log"),
        TaggerClient(broker_url=redis_url, database_url=settings.database_url) as client,
    ):
        first = client.submit(keys=keys[:2], storage_url=url, webhook=hook, priority="interactive")
        client.wait(first, timeout=60)
        assert connected.wait(30), "the webhook was never posted"
        upload = client.submit(keys=keys[2:3], storage_url=url, priority="interactive")
        tagged = client.wait(upload, timeout=60)  # a POST holding the only pool slot would take 300 s
        with sessions() as session:
            webhook = session.scalar(select(Job.options).where(Job.id == first)).get("webhook")
        for conn in held:
            conn.close()  # the POST fails now: recorded, and retried later
        deadline = time.monotonic() + 30
        while webhook is None or webhook["attempts"] < 1:
            assert time.monotonic() < deadline, "the failed attempt was never recorded"
            time.sleep(0.1)
            with sessions() as session:
                webhook = session.scalar(select(Job.options).where(Job.id == first)).get("webhook")
    silent.close()
    engine.dispose()
    assert tagged.state.value == "done"
    assert webhook["state"] == "retrying" and webhook["attempts"] == 1 and webhook["last_error"]
