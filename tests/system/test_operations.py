"""Operating a fleet: two real workers with their metrics endpoints, scraped by a real Prometheus,
watched by Flower and `tagger workers`, one of them killed at the end.

The tests share one fleet (PostgreSQL, Redis, two `tagger worker` processes) and run in file order:
readiness first (it starts without a model), the kill last.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tagger.broker.events import announce
from tagger.broker.presence import present
from tagger.broker.send import celery_sender
from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.jobs.progress import summary
from tagger.settings import Settings
from tagger.worker.local import LocalWorkers
from tests.conftest import make_model, make_settings, submit_keys, write_stills
from tests.support.cli import tagger
from tests.support.debian import debian_binary
from tests.support.servers import PrometheusServer, free_port, wait_port
from tests.support.waiting import children, until

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-for-the-tests-0123"
STAGES = ("claim", "load", "inference", "write")


@dataclass
class Fleet:
    settings: Settings
    sessions: Any
    workers: LocalWorkers
    ports: list[int]
    log: Path
    url: str
    keys: list[str]
    versions: list[str] = field(default_factory=list)

    def model(self) -> str:
        """The active version, registered and announced on first use."""
        if not self.versions:
            self.versions.append(make_model(self.settings, self.sessions))
            announce(self.settings.broker_url, self.versions[0])
        return self.versions[0]

    def tag(self, keys: list[str]) -> Any:
        """A job over `keys` in batches of 4, through the real producer, followed to its end."""
        from tagger.broker.config import make_producer_app

        send = celery_sender(make_producer_app(self.settings, self.settings.broker_url))
        job = submit_keys(self.sessions, send, keys, storage_url=self.url, batch_size=4).job_id
        until(lambda: summary(self.sessions, job).state.finished, 120, self.log)
        return summary(self.sessions, job)

    def cli(self, *args: str) -> Any:
        done = tagger(self.settings, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout


def http(port: int, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except OSError:
        return 0, None
    return status, json.loads(body) if body.startswith(b"{") else body.decode()


@pytest.fixture(scope="module")
def fleet(postgres, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("fleet")
    port = free_port(plus=1)  # worker i listens on port + i
    settings = make_settings(
        tmp,
        postgres.create_database(f"ops_{os.getpid()}"),
        broker_url=redis_url.rsplit("/", 1)[0] + "/7",  # queue depths of this fleet's own broker database
        metrics_port=port,
        metrics_token=TOKEN,
        log_format="json",
        batch_size=4,
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    keys = write_stills(tmp / "archive", 24, seed=5)
    log = tmp / "workers.log"
    workers = LocalWorkers(settings, count=2, log_file=log).start()
    fleet = Fleet(settings, make_sessionmaker(engine), workers, [port, port + 1], log, (tmp / "archive").as_uri(), keys)
    try:
        until(lambda: all(http(p, "/livez")[0] == 200 for p in fleet.ports), 90, log)
        yield fleet
    finally:
        workers.stop()
        engine.dispose()


def test_the_alert_rules_load_and_fire_on_the_series_they_watch() -> None:
    promtool = debian_binary("promtool", "prometheus")
    rules = ROOT / "deploy" / "prometheus"
    checked = subprocess.run([promtool, "check", "rules", rules / "alerts.yml"], capture_output=True, text=True)
    assert checked.returncode == 0 and "SUCCESS: 9 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", rules / "alerts_test.yml"], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_compose_prometheus_configuration_is_valid(tmp_path: Path) -> None:
    promtool = debian_binary("promtool", "prometheus")
    (tmp_path / "token").write_text("x" * 24)  # the compose service writes it from .env at start
    config = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    (tmp_path / "prometheus.yml").write_text(config.replace("/prometheus/metrics-token", str(tmp_path / "token")))
    (tmp_path / "alerts.yml").write_text((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    checked = subprocess.run([promtool, "check", "config", tmp_path / "prometheus.yml"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_readiness_waits_for_a_model_and_follows_the_database(fleet: Fleet, postgres) -> None:  # type: ignore[no-untyped-def]
    for port in fleet.ports:
        assert http(port, "/readyz", token=None)[0] == 401
        assert http(port, "/metrics", token="not-the-token-of-this-fleet")[0] == 401
        status, body = http(port, "/readyz")
        assert status == 503, body
        assert {k: v["ok"] for k, v in body["checks"].items()} == {
            "database": True,
            "broker": True,
            "broker_eviction": True,
            "model": False,
        }
    fleet.model()
    until(lambda: all(http(p, "/readyz")[0] == 200 for p in fleet.ports), 60, fleet.log)
    postgres.stop()
    try:
        for port in fleet.ports:
            status, body = http(port, "/readyz")
            assert status == 503 and body["checks"]["database"]["ok"] is False, body
            assert body["checks"]["model"]["ok"] and body["checks"]["broker"]["ok"]
    finally:
        postgres.start()
    until(lambda: all(http(p, "/readyz")[0] == 200 for p in fleet.ports), 30, fleet.log)


def test_prometheus_scrapes_both_workers_during_a_job(fleet: Fleet) -> None:
    version = fleet.model()
    targets = ", ".join(f"'127.0.0.1:{p}'" for p in fleet.ports)
    prometheus = PrometheusServer(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{ROOT / 'deploy' / 'prometheus' / 'alerts.yml'}']\n"
        "scrape_configs:\n"
        "  - job_name: tagger-workers\n"
        f"    authorization: {{type: Bearer, credentials: '{TOKEN}'}}\n"
        f"    static_configs: [{{targets: [{targets}]}}]\n"
    ).start()
    try:
        job = fleet.tag(fleet.keys)
        assert (job.state.value, job.done) == ("done", len(fleet.keys))

        def value(promql: str) -> float:
            result = prometheus.query(promql)
            return float(result[0]["value"][1]) if result else -1.0  # type: ignore[index]

        # Prometheus sees what the database says: every image this fleet tagged, batch by batch.
        until(lambda: value('sum(tagger_images_total{outcome="tagged"})') >= len(fleet.keys), 30)
        tagged = value('sum(tagger_images_total{outcome="tagged"})')
        batches = value("sum(tagger_batches_total)")
        with fleet.sessions() as session:
            from sqlalchemy import func, select

            from tagger.db.schema import JobItem

            done_in_db = session.scalar(select(func.count()).where(JobItem.state == "done"))
            pending_in_db = session.scalar(select(func.count()).where(JobItem.state == "pending"))
        assert tagged == done_in_db and pending_in_db == 0
        assert batches == len(fleet.keys) / 4
        stages = {
            r["metric"]["stage"]: float(r["value"][1])
            for r in prometheus.query(  # type: ignore[index]
                "sum by (stage) (tagger_stage_seconds_count)"
            )
        }
        assert stages == dict.fromkeys(STAGES, batches)
        steps = {
            r["metric"]["step"]: float(r["value"][1])
            for r in prometheus.query(  # type: ignore[index]
                "sum by (step) (tagger_image_seconds_count)"
            )
        }
        assert steps == {"fetch": tagged, "decode": tagged}
        assert value("sum(tagger_stage_seconds_sum)") > 0
        # Nothing waits once the job is done, as the database says; every queue is reported.
        queues = {
            r["metric"]["queue"]: float(r["value"][1])
            for r in prometheus.query(  # type: ignore[index]
                "max by (queue) (tagger_queue_messages)"
            )
        }
        assert queues == {"tagger.interactive": 0, "tagger.bulk": 0, "tagger.training": 0, "tagger.notifications": 0}
        served = prometheus.query("tagger_model_served > 0")
        assert sorted((r["metric"]["instance"], r["metric"]["version"]) for r in served) == sorted(  # type: ignore[index]
            (f"127.0.0.1:{p}", version) for p in fleet.ports
        )
        assert [r["metric"]["version"] for r in prometheus.query("tagger_model_active")] == [version] * 2  # type: ignore[index]
        assert value("min(tagger_ready)") == 1

        def rules_evaluated() -> bool:
            groups = prometheus.get("/api/v1/rules")["data"]["groups"]  # type: ignore[index]
            return all(rule["health"] == "ok" for group in groups for rule in group["rules"])

        until(rules_evaluated, 15)
        assert prometheus.query('ALERTS{alertname=~"TaggerActiveModelNotServed|TaggerQueueWithoutConsumer"}') == []

        # Failures are counted by class of reason, each image once: a corrupt file, and two missing keys.
        folder = Path(fleet.url.removeprefix("file://"))
        (folder / "ops-corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        job = fleet.tag([*fleet.keys[:2], "ops-corrupt.jpg", "ops-missing-1.jpg", "ops-missing-2.jpg"])
        assert (job.state.value, job.done, job.failed) == ("done_with_failures", 2, 3)

        def failure_classes() -> dict[str, float]:
            by_reason = prometheus.query("sum by (reason) (tagger_image_failures_total)")
            return {r["metric"]["reason"]: float(r["value"][1]) for r in by_reason}  # type: ignore[index]

        until(lambda: failure_classes() == {"image": 1, "storage": 2}, 30, fleet.log)
    finally:
        prometheus.stop()


def test_flower_lists_the_workers_and_their_tasks(fleet: Fleet, tmp_path: Path) -> None:
    fleet.model()
    port = free_port()
    log = tmp_path / "flower.log"
    auth = "Basic " + base64.b64encode(b"ops:flower-secret").decode()
    with open(log, "ab") as out:
        flower = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                f"--broker={fleet.settings.broker_url}",
                "flower",
                f"--port={port}",
                "--address=127.0.0.1",
                "--basic-auth=ops:flower-secret",
            ],
            stdout=out,
            stderr=out,
        )
    try:
        wait_port(port, 60, flower, log)

        def get(path: str) -> Any:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": auth})
            with urllib.request.urlopen(request, timeout=15) as response:
                return json.loads(response.read())

        names = {f"local{i}-{os.getpid()}@" for i in range(2)}
        until(lambda: {w.split("@")[0] + "@" for w in get("/api/workers?refresh=1")} >= names, 30)
        job = fleet.tag(fleet.keys[:8])
        assert job.state.value == "done"

        def batch_tasks() -> list[dict[str, Any]]:
            return [t for t in get("/api/tasks").values() if t.get("name") == "tagger.tag_batch"]

        until(lambda: len([t for t in batch_tasks() if t.get("state") == "SUCCESS"]) >= 2, 30)
        assert {t["worker"].split("@")[0] + "@" for t in batch_tasks()} <= names
    finally:
        flower.terminate()
        flower.wait(20)


def test_log_lines_are_json_with_their_job_task_and_model_version(fleet: Fleet) -> None:
    version = fleet.model()
    job = fleet.tag(fleet.keys[8:12])
    lines = [json.loads(line) for line in fleet.log.read_text().splitlines() if line.startswith("{")]
    batch_lines = [r for r in lines if r.get("job_id") == job.id and "batch of" in r["message"]]
    assert batch_lines, "no JSON line about the job's batch"
    for record in batch_lines:
        assert record["model_version"] == version and record["task_id"] and record["level"] == "INFO"
    banner = fleet.log.read_text()  # Celery's start-up banner (not a log line): each queue its own exchange
    for queue in ("tagger.interactive", "tagger.bulk"):
        assert re.search(rf"> {queue} +exchange={queue}\(direct\) key={queue}$", banner, re.M), queue


def test_tagger_workers_lists_the_live_workers_and_drops_a_killed_one(fleet: Fleet) -> None:
    version = fleet.model()
    fleet.tag(fleet.keys[12:20])
    names = [f"local{i}-{os.getpid()}" for i in range(2)]
    assert [name.split("@")[0] for name in present(fleet.settings.broker_url)] == names
    asked = time.monotonic()  # the broadcast's window is 30 s: it ends once both listed workers have answered
    before = json.loads(fleet.cli("workers", "--json", "--timeout", "30"))
    assert time.monotonic() - asked < 15
    assert [w["hostname"].split("@")[0] for w in before["workers"]] == names
    for worker in before["workers"]:
        assert worker["models_served"] == {version: 1}
        assert (worker["pool"], worker["concurrency"], worker["device"]) == ("prefork", 1, "cpu")
        assert worker["queues"] == ["tagger.interactive", "tagger.bulk"]
    assert sum(w["images_tagged"] for w in before["workers"]) >= 20
    assert any(w["last_batch_at"] for w in before["workers"])
    assert before["queues"]["tagger.bulk"] == 0 and before["jobs"] == []

    # A pool process killed outright never says it left: its gauges must not be counted once it is gone.
    (child,) = children(fleet.workers.procs[0].pid)
    os.kill(child, signal.SIGKILL)

    def replaced() -> bool:
        status, text = http(fleet.ports[0], "/metrics")
        served = re.findall(rf'^tagger_model_served{{version="{version}"}} (\S+)$', text, re.M) if status == 200 else []
        return children(fleet.workers.procs[0].pid) not in ([], [child]) and served == ["1.0"]

    until(replaced, 60, fleet.log)
    # Ready again (each check has a deadline of its own: on a loaded machine one scrape may miss it).
    until(lambda: http(fleet.ports[0], "/readyz")[0] == 200, 30, fleet.log)
    killed = fleet.workers.procs[1]
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    after = json.loads(fleet.cli("workers", "--json"))
    assert [w["hostname"] for w in after["workers"]] == [before["workers"][0]["hostname"]]
    text = fleet.cli("workers")
    assert "1 worker(s) answered" in text and f"model {version} (1 proc)" in text
