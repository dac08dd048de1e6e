"""`tagger worker`, `tagger beat` and `tagger serve`: the long-running processes of a deployment."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from tagger.argtypes import port, positive_int
from tagger.errors import ConfigError
from tagger.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser("worker", help="run a Celery worker serving TAGGER_BROKER_URL")
    p.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="batches at once: pool processes, or task threads with TAGGER_WORKER_POOL=threads "
        "(default TAGGER_WORKER_CONCURRENCY, else 3 threads on a GPU, one process per core on CPU)",
    )
    p.add_argument("--queues", default="tagger.interactive,tagger.bulk", help="comma-separated queues to consume")
    p.add_argument("--hostname", default=None, help="Celery node name (default: celery@HOST)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("beat", help="run Celery beat: queues scheduled retraining (TAGGER_RETRAIN_SCHEDULE)")
    p.set_defaults(func=cmd_beat)

    p = sub.add_parser(
        "serve",
        help="run the HTTP API (uvicorn): submit and steer jobs, read suggestions, record decisions",
        description="Every route needs an API token (`tagger tokens create NAME --role ROLE`); the OpenAPI "
        "schema is at /api/v1/openapi.json and the review pages start at /login. Submissions go to the "
        "workers as Celery messages: with TAGGER_BROKER_URL, to the `tagger worker`s on that broker; without "
        "it (the embedded defaults, as `tagger tag` uses them), to an embedded Redis and --workers local "
        "worker processes that live as long as the server. Put a TLS-terminating proxy in front of it for "
        "other hosts.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=8000, help="port to listen on (default 8000)")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="worker processes to start when no broker is configured (default 1)",
    )
    p.set_defaults(func=cmd_serve)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.broker_url:
        raise ConfigError(
            "tagger worker needs TAGGER_BROKER_URL (e.g. redis://localhost:6379/0); "
            "`tagger tag FOLDER --wait` without a broker starts its own workers"
        )
    _metrics_dir()  # before any pool process starts or any metric exists
    from celery.signals import worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown

    from tagger.broker import presence
    from tagger.model.device import pick_device
    from tagger.worker import context, healer, health, prometheus
    from tagger.worker.app import configure
    from tagger.worker.shape import available_cores, worker_connections, worker_shape

    context.configure(settings)
    _check_eviction(settings)
    _wait_for_database(settings)
    gpu = pick_device(settings.device).type == "cuda"
    cores = available_cores()
    pool, concurrency = worker_shape(settings, gpu=gpu, concurrency=args.concurrency)
    context.configure(settings, tasks=concurrency if pool == "threads" else 1)
    _check_connections(settings, worker_connections(settings, gpu=gpu, concurrency=args.concurrency))
    info = health.WorkerInfo(
        hostname=args.hostname or "",
        pool=pool,
        concurrency=concurrency,
        device=str(pick_device(settings.device)),
        queues=[q.strip() for q in args.queues.split(",") if q.strip()],
    )
    health.register_status_command(info)
    # First: /livez answers while the threads pool loads its model (receivers run in connection order).
    worker_ready.connect(lambda sender, **_: _serve_health(settings, info, sender), weak=False)
    worker_ready.connect(lambda **_: healer.start(settings), weak=False)
    # In the broker's list of workers while it runs (after _serve_health, which learns the node name), so that
    # `tagger workers` stops waiting once each of them has answered.
    stop_beating: list[Callable[[], None]] = []

    def present(**_: Any) -> None:
        stop_beating.append(presence.keep_beating(settings.broker_url, info.hostname))

    worker_ready.connect(present, weak=False)
    worker_shutdown.connect(lambda **_: [stop() for stop in stop_beating], weak=False)
    worker_process_shutdown.connect(lambda **_: prometheus.process_exited(), weak=False)
    if pool == "threads":
        # One process, one model, `concurrency` batches in flight: while one batch holds the
        # device, the others fetch, decode on the CPU or write to the database. CUDA is only
        # ever initialised in this process, after Celery has started.
        threads = settings.torch_threads or None
        worker_ready.connect(lambda **_: context.init_process(settings, torch_threads=threads), weak=False)
    else:
        # On CPU, prefork processes split the cores between them; a crash takes down one process.
        torch_threads = settings.torch_threads or max(1, cores // concurrency)
        worker_process_init.connect(lambda **_: context.init_process(settings, torch_threads=torch_threads), weak=False)
    app = configure(settings, settings.broker_url)
    # What `celery worker` does, without its command line: that loads every Celery command and plugin
    # (Flower's among them), ~0.5 CPU-seconds of each worker's start that a worker never uses.
    from celery.utils.log import mlevel
    from celery.utils.nodenames import default_nodename, host_format

    worker = app.Worker(
        hostname=host_format(default_nodename(args.hostname)),
        pool_cls=pool,
        concurrency=concurrency,
        queues=info.queues,
        loglevel=mlevel(settings.log_level),
        without_gossip=True,
        without_mingle=True,
    )
    worker.start()
    return int(worker.exitcode or 0)


def _check_connections(settings: Settings, needed: int) -> None:
    """Warn when this worker's connections may not fit in what the PostgreSQL server has left: the fleet then
    slows down (a process refused a connection lets go of its idle ones and retries), it does not stop."""
    if not settings.database_url.startswith("postgresql"):
        return
    import logging

    from sqlalchemy import text

    from tagger.db import make_engine

    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            limit = int(conn.execute(text("SHOW max_connections")).scalar_one())
            reserved = int(conn.execute(text("SHOW superuser_reserved_connections")).scalar_one())
            used = int(
                conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
                ).scalar_one()
            )
    except Exception:  # a pooler that hides these, or no server yet: nothing to compare against
        return
    finally:
        engine.dispose()
    free = limit - reserved - used + 1  # this check's own connection is about to close
    if needed > free:
        logging.getLogger("tagger.worker").warning(
            "this worker may hold %d database connections and the server has %d free (max_connections %d, %d "
            "reserved, %d in use): the fleet will slow down while processes wait for connections; raise "
            "max_connections, put PgBouncer in front, or lower TAGGER_WORKER_CONCURRENCY (`tagger config` "
            "prints the budget)",
            needed,
            free,
            limit,
            reserved,
            used,
        )


def _check_eviction(settings: Settings) -> None:
    """Refuse a broker that may evict queued batches (TAGGER_BROKER_ALLOW_EVICTION=1 only warns); a broker
    that does not answer yet is left to Celery's own reconnecting."""
    import logging

    from tagger.broker.eviction import eviction_problem

    try:
        problem = eviction_problem(settings.broker_url)
    except Exception:  # unreachable now: the worker waits for it as for any broker outage
        return
    if problem and not settings.broker_allow_eviction:
        raise ConfigError(problem)
    if problem:
        logging.getLogger("tagger.worker").warning("%s (allowed by TAGGER_BROKER_ALLOW_EVICTION=1)", problem)


def _metrics_dir() -> str:
    """A fresh folder for prometheus_client's multiprocess files (each pool process writes its own),
    removed when the worker exits; set as PROMETHEUS_MULTIPROC_DIR for this process and its children."""
    import atexit
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="tagger-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _serve_health(settings: Settings, info: Any, consumer: Any) -> None:
    """Once Celery is consuming: the node name is known, and the metrics port opens if configured."""
    from tagger.worker import health

    info.hostname = getattr(consumer, "hostname", "") or info.hostname
    if settings.metrics_port:
        health.serve(settings, info)


def _wait_for_database(settings: Settings, *, every: float = 2.0) -> None:
    """Bring the schema up to date, waiting (one log line per try, no traceback) while the database is
    down: a worker may start before PostgreSQL does, as it may before Redis (Celery waits for that)."""
    import logging
    import time

    from sqlalchemy.exc import OperationalError

    from tagger.db import make_engine, upgrade
    from tagger.errors import first_line
    from tagger.settings import redacted

    log = logging.getLogger("tagger.worker")
    engine = make_engine(settings.database_url)
    shown = redacted("database_url", settings.database_url)
    while True:
        try:
            upgrade(engine)
            return
        except OperationalError as exc:
            log.warning("waiting for the database at %s: %s", shown, first_line(exc))
            time.sleep(every)
        finally:
            engine.dispose()


def cmd_beat(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.broker_url:
        raise ConfigError("tagger beat needs TAGGER_BROKER_URL: it queues retraining for a worker on tagger.training")
    from tagger.worker.app import configure
    from tagger.worker.retrain import beat_schedule

    app = configure(settings, settings.broker_url)
    app.conf.beat_schedule = beat_schedule(settings)
    print(
        f"beat: retraining on {settings.retrain_schedule!r} ({settings.retrain_timezone}) into queue "
        "tagger.training; "
        "run `tagger worker --queues tagger.training` to execute it",
        file=sys.stderr,
    )
    # The in-memory scheduler: celery's default PersistentScheduler keeps its state in a pickle-based shelve.
    app.start(["beat", "--scheduler", "celery.beat:Scheduler", f"--loglevel={settings.log_level}"])
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from contextlib import ExitStack

    import uvicorn

    from tagger.cli.shared import open_sessions
    from tagger.web.app import create_app

    with ExitStack() as stack:
        if not settings.broker_url:
            from tagger.worker.local import start_local_cluster

            settings = start_local_cluster(stack, settings, args.workers).settings
            print(
                f"no TAGGER_BROKER_URL: started an embedded Redis and {args.workers} local worker(s) for this server "
                f"(their log: {settings.var_dir / 'workers.log'})",
                file=sys.stderr,
            )
        app = create_app(settings, open_sessions(settings))
        base = f"http://{args.host}:{args.port}"
        print(f"serving the HTTP API on {base}/api/v1 and the review pages on {base}/login", file=sys.stderr)
        if settings.web_cookie_secure and args.host not in ("127.0.0.1", "localhost", "::1"):
            print(
                "note: the session cookie is HTTPS-only (TAGGER_WEB_COOKIE_SECURE=1): browsers reaching this port "
                "over plain HTTP cannot log in; put a TLS proxy in front, or set TAGGER_WEB_COOKIE_SECURE=0",
                file=sys.stderr,
            )
        uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower(), server_header=False)
    return 0
