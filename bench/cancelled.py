"""What a cancelled job's batches cost, and whether a job queued after it waits (a measurement, not a test).

    python bench/cancelled.py                          # 5,000 batches, PostgreSQL, one `tagger worker`
    python bench/cancelled.py --batches 20000 --database sqlite

Three figures, each through real `tagger worker` processes, Redis and the database:

1. **skipped batches**: a job of N one-image batches is cancelled (its images skipped in the database) and
   then its N messages are published, as if they had been queued before the cancel and left in the broker;
   the time from the first publish until the broker holds none of them (waiting or unacknowledged), and the
   CPU the worker processes spent, per batch.
2. **the cancel itself**: a job of N queued batches (no worker consuming) is cancelled through the broker; how
   long `cancel` takes and how many of its messages are left queued.
3. **a job after a cancelled one**: with the workers running, a job of N batches is submitted and cancelled at
   once, then a job of one batch; how long after the cancel that job starts and ends.

Run it against another tree (`PYTHONPATH=/path/to/tree python bench/cancelled.py`) for a before/after: it
uses only the producer, `cancel` and the workers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def drained(broker_url: str, queue: str) -> bool:
    from tagger.broker.queues import broker_depths

    depths = broker_depths(broker_url, (queue,))
    return depths.waiting[queue] == 0 and depths.unacked == 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=5000, help="batches of the cancelled job (default 5000)")
    p.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    p.add_argument("--workers", type=int, default=1, help="`tagger worker` processes (default 1)")
    p.add_argument("--pool", choices=["prefork", "threads"], default="prefork", help="TAGGER_WORKER_POOL")
    p.add_argument("--task-events", type=int, choices=[0, 1], default=1, help="TAGGER_TASK_EVENTS (default 1)")
    p.add_argument("--json-out", type=Path, default=None, help="also write the figures here as JSON")
    args = p.parse_args()

    from common import cpu_seconds, database, own_cpu_seconds

    from tagger.broker.config import make_producer_app
    from tagger.broker.embedded import EmbeddedRedis
    from tagger.broker.send import celery_sender, send_tag_batches
    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.jobs import control
    from tagger.jobs.producer import complete_listing, create_job, enqueue_keys
    from tagger.jobs.progress import summary, wait
    from tagger.jobs.sources import PassedOver
    from tagger.sample_archive import generate
    from tagger.settings import Settings
    from tagger.worker.local import LocalWorkers
    from tagger_client.contract import QUEUE_BULK, JobSpec
    from tests.conftest import make_model, submit_keys

    n = args.batches
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "batches": n,
        "database": args.database,
        "workers": args.workers,
        "pool": args.pool,
        "task_events": args.task_events,
        "load_average_at_start": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory(prefix="tagger-cancelled-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        redis = stack.enter_context(EmbeddedRedis())
        database_url = database(stack, args.database, work, "cancelled")
        settings = Settings(
            var_dir=work / "var",
            database_url=database_url,
            broker_url=redis.url,
            model_store=(work / "models").as_uri(),
            device="cpu",
            batch_size=1,
            worker_pool=args.pool,
            task_events=args.task_events,
            log_level="WARNING",
        )
        engine = make_engine(database_url)
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        make_model(settings, sessions, size=32)
        archive = work / "archive"
        real = [s.key for s in generate(archive, 4, seed=1)]
        url = archive.as_uri()
        send = celery_sender(make_producer_app(settings, redis.url))
        absent = [f"stills/absent-{i:06d}.jpg" for i in range(n)]  # never read: their batches are skipped

        say(f"[1/3] the cancel itself: {n} queued batches, no worker")
        job = submit_keys(sessions, send, absent, storage_url=url, batch_size=1).job_id
        started = time.perf_counter()
        control.cancel(sessions, job, send=send)
        results["cancel_seconds"] = time.perf_counter() - started
        from tagger.broker.queues import broker_depths

        results["left_queued_after_cancel"] = broker_depths(redis.url, (QUEUE_BULK,)).waiting[QUEUE_BULK]
        with send.app.connection_for_write() as connection:  # a clean queue for what follows
            connection.default_channel.queue_purge(QUEUE_BULK)

        with LocalWorkers(settings, count=args.workers, log_file=work / "workers.log") as workers:
            wait(sessions, submit_keys(sessions, send, real, storage_url=url).job_id, timeout=300, show_progress=False)

            say(f"[2/3] skipped batches: {n} messages of a cancelled job through {args.workers} worker(s)")
            spec = JobSpec.new(keys=[], storage_url=url, batch_size=1)
            job = create_job(sessions, spec, source="bench", storage_url=url, batch_size=1).job_id
            ids: list[int] = []
            enqueue_keys(
                sessions,
                lambda _task, a, _queue: ids.extend(a[1]),  # items in the database, no message yet
                job_id=job,
                keys=absent,
                storage_url=url,
                batch_size=1,
                queue=QUEUE_BULK,
            )
            complete_listing(sessions, lambda *a: None, job, PassedOver())
            control.cancel(sessions, job)
            cpu_before = sum(cpu_seconds(proc.pid) for proc in workers.procs)
            main_before = sum(own_cpu_seconds(proc.pid) for proc in workers.procs)
            started = time.perf_counter()
            send_tag_batches(send, job, [[i] for i in ids], QUEUE_BULK)
            while not drained(redis.url, QUEUE_BULK):
                time.sleep(0.01)
            wall = time.perf_counter() - started
            cpu = sum(cpu_seconds(proc.pid) for proc in workers.procs) - cpu_before
            main = sum(own_cpu_seconds(proc.pid) for proc in workers.procs) - main_before
            results["skipped"] = {
                "wall_ms_per_batch": 1000 * wall / n,
                "cpu_ms_per_batch": 1000 * cpu / n,
                "main_process_cpu_ms_per_batch": 1000 * main / n,  # Celery's consumer: fetch, dispatch, ack
            }

            say(f"[3/3] a job after a cancelled one of {n} batches")
            big = submit_keys(sessions, send, absent, storage_url=url, batch_size=1).job_id
            control.cancel(sessions, big, send=send)
            small = submit_keys(sessions, send, real[:1], storage_url=url, batch_size=1).job_id
            after = wait(sessions, small, timeout=600, show_progress=False)
            cancelled = summary(sessions, big).finished_at
            assert cancelled is not None and after.started_at is not None and after.finished_at is not None

            def since(at: Any) -> float:
                utc = lambda t: t if t.tzinfo else t.replace(tzinfo=UTC)  # noqa: E731
                return (utc(at) - utc(cancelled)).total_seconds()

            results["after_cancel"] = {"started_s": since(after.started_at), "finished_s": since(after.finished_at)}
        engine.dispose()

    s = results["skipped"]
    print(
        f"\n{n:,} one-image batches of a cancelled job, {args.workers} {args.pool} worker(s), {args.database}, "
        f"task events {'on' if args.task_events else 'off'}, load average {results['load_average_at_start']:.1f} "
        f"-> {os.getloadavg()[0]:.1f}"
    )
    print(
        f"  skipped batch: {s['wall_ms_per_batch']:.2f} ms wall, {s['cpu_ms_per_batch']:.2f} ms worker CPU each, "
        f"of which {s['main_process_cpu_ms_per_batch']:.2f} ms in the worker's main process"
    )
    print(
        f"  cancel with {n:,} batches queued: {results['cancel_seconds']:.2f} s, "
        f"{results['left_queued_after_cancel']:,} left queued"
    )
    a = results["after_cancel"]
    print(f"  a job after it: started {a['started_s']:.2f} s and ended {a['finished_s']:.2f} s after the cancel")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
