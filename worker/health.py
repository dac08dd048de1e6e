"""A worker's HTTP endpoint: /metrics for Prometheus, /livez and /readyz for orchestrators.

It runs in the `tagger worker` main process, beside Celery's consumer. Its figures come from the
multiprocess metric files every pool process writes (`tagger.worker.prometheus`), plus what only a
scrape-time look can say: the broker's queue depths, the registry's active version and readiness.

Ready means: the database answers, the broker answers, and a process of this worker has a model to
serve. Every route needs `Authorization: Bearer <TAGGER_METRICS_TOKEN>` (401 without it).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from tagger.errors import first_line
from tagger.settings import Settings
from tagger.worker.prometheus import RATE_WINDOW_SECONDS

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 3.0


@dataclass
class WorkerInfo:
    """What this worker is, as `tagger workers` and the metrics describe it."""

    hostname: str
    pool: str
    concurrency: int
    device: str
    queues: list[str]
    started_at: float = field(default_factory=time.time)


def registry_for_scrape() -> CollectorRegistry:
    """Every live process's metrics summed (multiprocess mode), or this process's own (in-process runs).

    A pool process that was killed (SIGKILL, the OOM killer, a crash) never says it left: its live
    gauges (model loaded, version served, batches in flight) are dropped here, before they are read.
    """
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        from prometheus_client import multiprocess

        for pid in _dead_pids(folder):
            multiprocess.mark_process_dead(pid, folder)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, folder)  # type: ignore[no-untyped-call]
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


def _dead_pids(folder: str) -> set[int]:
    """Pids that wrote live gauge files (`gauge_live*_<pid>.db`) and no longer run."""
    pids = {int(m.group(1)) for name in os.listdir(folder) if (m := re.fullmatch(r"gauge_live\w+_(\d+)\.db", name))}
    dead = set()
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.add(pid)
        except PermissionError:  # alive, another user's
            pass
    return dead


def samples(registry: CollectorRegistry, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample called `name` (a counter's `_total` included) in the registry."""
    return [(dict(s.labels), s.value) for metric in registry.collect() for s in metric.samples if s.name == name]


def snapshot(info: WorkerInfo) -> dict[str, Any]:
    """This worker now: what it is, the versions its processes serve, its last batch and recent rate."""
    registry = registry_for_scrape()

    def total(name: str, **match: str) -> float:
        return sum(v for labels, v in samples(registry, name) if all(labels.get(k) == m for k, m in match.items()))

    served = {labels["version"]: int(v) for labels, v in samples(registry, "tagger_model_served") if v > 0}
    last = max((v for _, v in samples(registry, "tagger_last_batch_timestamp_seconds")), default=0.0)
    recent = last > time.time() - RATE_WINDOW_SECONDS
    return {
        "hostname": info.hostname,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pool": info.pool,
        "concurrency": info.concurrency,
        "device": info.device,
        "queues": info.queues,
        "started_at": info.started_at,
        "models_served": served,
        "last_batch_at": last or None,
        "images_tagged": int(total("tagger_images_total", outcome="tagged")),
        "images_failed": int(total("tagger_images_total", outcome="failed")),
        "batches_in_flight": int(total("tagger_batches_in_flight")),
        # The gauge is set on each write: a worker idle for the whole window has done nothing in it.
        "images_per_second": round(total("tagger_recent_images_per_second"), 2) if recent else 0.0,
    }


class Readiness:
    """The checks, each with a reason when it fails; cheap enough for every probe and scrape."""

    def __init__(self, settings: Settings) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        from tagger.db.engine import normalise_url

        # A fresh connection per check, bounded in time: a pooled one could hang on a dead server's socket.
        # The statement's own limit is set inside its transaction (SET LOCAL), not as a startup option,
        # which a transaction pooler such as PgBouncer refuses ("unsupported startup parameter: options").
        self.postgres = settings.database_url.startswith("postgresql")
        connect_args: dict[str, Any] = {}
        if self.postgres:
            connect_args = {"connect_timeout": int(CHECK_TIMEOUT_SECONDS), "prepare_threshold": None}
        self.engine = create_engine(normalise_url(settings.database_url), poolclass=NullPool, connect_args=connect_args)

    def database(self) -> tuple[tuple[bool, str], str | None]:
        """The database check's verdict and the version the registry says is active, from one query."""
        from sqlalchemy import select

        from tagger.db.schema import ModelVersion

        try:
            with self.engine.begin() as conn:
                if self.postgres:
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(CHECK_TIMEOUT_SECONDS * 1000)}")
                active = conn.execute(select(ModelVersion.version).where(ModelVersion.is_active.is_(True))).scalar()
            return (True, "answers"), active
        except Exception as exc:
            return (False, first_line(exc)), None

    def running_jobs(self) -> dict[str, tuple[float, int, int]]:
        """Per queued or running job: seconds since its items last moved (since its creation before any did),
        its images tagged, and of those the unfamiliar ones (`jobs.unfamiliar`); empty when the database does
        not answer (the database check says so)."""
        from datetime import UTC, datetime

        from sqlalchemy import func, select

        from tagger.db.schema import Job

        try:
            with self.engine.begin() as conn:
                if self.postgres:
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(CHECK_TIMEOUT_SECONDS * 1000)}")
                rows = conn.execute(
                    select(Job.id, func.coalesce(Job.progress_at, Job.created_at), Job.done, Job.unfamiliar).where(
                        Job.state.in_(("queued", "running"))
                    )
                ).all()
        except Exception:  # the database check reports why, in the same scrape
            return {}
        now = datetime.now(UTC)
        return {
            job_id: (max(0.0, (now - (at if at.tzinfo else at.replace(tzinfo=UTC))).total_seconds()), done, unfamiliar)
            for job_id, at, done, unfamiliar in rows
        }

    @staticmethod
    def model(registry: CollectorRegistry) -> tuple[bool, str]:
        loaded = any(v > 0 for _, v in samples(registry, "tagger_model_loaded"))
        return (True, "loaded") if loaded else (False, "no model loaded yet (none active, or still loading)")


def observe(
    settings: Settings, readiness: Readiness, processes: CollectorRegistry, queues: tuple[str, ...] = ()
) -> tuple[dict[str, tuple[bool, str]], Any, str | None]:
    """The readiness checks (database, broker, model), the broker's depths of `queues` (None when it does
    not answer) and the active version: what /readyz and a scrape both report, read once."""
    depths, broker = _broker(settings.broker_url, queues)
    database, active = readiness.database()
    checks = {"database": database, "broker": broker, "model": Readiness.model(processes)}
    if broker[0]:
        checks["broker_eviction"] = _eviction(settings)
    return checks, depths, active


class ScrapeCollector(Collector):
    """What is read at scrape time: queue depths, the active version, readiness and its checks. One per
    scrape, given the processes' registry that scrape already read."""

    def __init__(
        self, settings: Settings, info: WorkerInfo, readiness: Readiness, processes: CollectorRegistry
    ) -> None:
        self.settings = settings
        self.info = info
        self.readiness = readiness
        self.processes = processes

    def collect(self) -> Iterator[Metric]:
        from tagger.broker.queues import QUEUES

        consuming = GaugeMetricFamily(
            "tagger_worker_consuming", "1 for each queue this worker consumes.", labels=["queue"]
        )
        for queue in self.info.queues:
            consuming.add_metric([queue], 1)
        yield consuming
        checks, depths, active = observe(self.settings, self.readiness, self.processes, QUEUES)
        if depths is not None:
            waiting = GaugeMetricFamily(
                "tagger_queue_messages", "Messages waiting in each broker queue.", labels=["queue"]
            )
            for queue, n in depths.waiting.items():
                waiting.add_metric([queue], n)
            yield waiting
            yield GaugeMetricFamily(
                "tagger_broker_unacked_messages",
                "Deliveries taken by some worker and not yet acknowledged (broker-wide).",
                value=depths.unacked,
            )
        if active:
            family = GaugeMetricFamily(
                "tagger_model_active", "1 for the version the registry says is active.", labels=["version"]
            )
            family.add_metric([active], 1)
            yield family
        per_check = GaugeMetricFamily("tagger_ready_check", "1 where a readiness check passes.", labels=["check"])
        for name, (ok, _) in sorted(checks.items()):
            per_check.add_metric([name], int(ok))
        yield per_check
        yield GaugeMetricFamily(
            "tagger_ready", "1 when database, broker and a loaded model are all there.", value=int(all_ok(checks))
        )
        stalled = GaugeMetricFamily(
            "tagger_job_seconds_since_progress",
            "Seconds since a queued or running job's items last moved (since it was created, before any did).",
            labels=["job_id"],
        )
        unfamiliar = GaugeMetricFamily(
            "tagger_job_unfamiliar_ratio",
            "Of a queued or running job's tagged images, the share less familiar than 99% of their model "
            "version's held-out stills (about 0.01 when the archive looks like the training data).",
            labels=["job_id"],
        )
        for job_id, (seconds, done, n_unfamiliar) in sorted(self.readiness.running_jobs().items()):
            stalled.add_metric([job_id], seconds)
            if done:
                unfamiliar.add_metric([job_id], n_unfamiliar / done)
        yield stalled
        yield unfamiliar


def _broker(broker_url: str, queues: tuple[str, ...]) -> tuple[Any, tuple[bool, str]]:
    """The broker's depths of `queues` (None when it does not answer) and the readiness check's verdict."""
    from tagger.broker.queues import broker_depths

    try:
        return broker_depths(broker_url, queues, timeout=CHECK_TIMEOUT_SECONDS), (True, "answers")
    except Exception as exc:
        return None, (False, first_line(exc))


def _eviction(settings: Settings) -> tuple[bool, str]:
    """The broker keeps every message (noeviction), or evicting was allowed on purpose."""
    from tagger.broker.eviction import eviction_problem

    try:
        problem = eviction_problem(settings.broker_url, timeout=CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        return False, first_line(exc)
    if problem is None:
        return True, "keeps every message"
    return (True, f"allowed: {problem}") if settings.broker_allow_eviction else (False, problem)


def all_ok(checks: dict[str, tuple[bool, str]]) -> bool:
    return all(ok for ok, _ in checks.values())


Start = Callable[[str, list[tuple[str, str]]], Any]


def make_app(settings: Settings, info: WorkerInfo) -> Callable[[dict[str, Any], Start], Iterable[bytes]]:
    """The WSGI application: /metrics, /livez, /readyz, each behind the bearer token."""
    readiness = Readiness(settings)
    expected = f"Bearer {settings.metrics_token}".encode()

    def app(environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        given = str(environ.get("HTTP_AUTHORIZATION", "")).encode()
        if not settings.metrics_token or not hmac.compare_digest(given, expected):
            return _reply(start, "401 Unauthorized", {"error": "a bearer token is required"}, bearer=True)
        path = environ.get("PATH_INFO", "")
        if path == "/livez":
            return _reply(start, "200 OK", {"live": True, "pid": os.getpid()})
        if path == "/readyz":
            checks = observe(settings, readiness, registry_for_scrape())[0]
            body = {"ready": all_ok(checks), "checks": {k: {"ok": ok, "detail": d} for k, (ok, d) in checks.items()}}
            return _reply(start, "200 OK" if body["ready"] else "503 Service Unavailable", body)
        if path == "/metrics":
            # The processes' metrics, then what is read at scrape time, from a registry of its own per request.
            processes = registry_for_scrape()
            at_scrape = CollectorRegistry(auto_describe=False)
            at_scrape.register(ScrapeCollector(settings, info, readiness, processes))
            data = generate_latest(processes) + generate_latest(at_scrape)
            start("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(data)))])
            return [data]
        return _reply(start, "404 Not Found", {"error": "no such route: /metrics, /livez or /readyz"})

    return app


def _reply(start: Start, status: str, body: dict[str, Any], *, bearer: bool = False) -> list[bytes]:
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    if bearer:
        headers.append(("WWW-Authenticate", 'Bearer realm="tagger-worker"'))
    start(status, headers)
    return [data]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("metrics %s", format % args)


def serve(settings: Settings, info: WorkerInfo) -> WSGIServer:
    """Listen on TAGGER_METRICS_ADDRESS:TAGGER_METRICS_PORT in a daemon thread; returns the server."""
    server = make_server(
        settings.metrics_address,
        settings.metrics_port,
        make_app(settings, info),
        server_class=_Server,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    log.info(
        "metrics, liveness and readiness on http://%s:%d (/metrics, /livez, /readyz)",
        settings.metrics_address,
        settings.metrics_port,
    )
    return server


STATUS_COMMAND = "tagger_status"


def register_status_command(info: WorkerInfo) -> None:
    """Answer `tagger workers` (a Celery broadcast, as `celery inspect` uses) with `snapshot(info)`.

    Runs in the main process, which reads every pool process's metric files, so prefork workers report
    what their children serve. A worker that is gone does not answer, so it is not listed.
    """
    from celery.worker.control import inspect_command

    @inspect_command(name=STATUS_COMMAND)  # type: ignore[misc]
    def tagger_status(state: Any, **_: Any) -> dict[str, Any]:
        return snapshot(info)
