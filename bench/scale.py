"""The scale benchmark: an archive of N generated stills through the real CLI, workers, PostgreSQL and Redis, so
that the growth of each cost with N is visible (a measurement, not a test: nothing is asserted).

    python bench/scale.py --images 2000                      # about a minute on 2 cores
    python bench/scale.py --images 100000 --json-out scale-100k.json

What it does and reports:
  1. writes N tiny distinct JPEG stills (48x32, in folders of 1,000; every core);
  2. starts an embedded Redis and PostgreSQL (or uses --broker-url / --database-url), registers a trivial
     model (MobileNetV3-small at 32 px, PER_IMAGE suggestions per image, as bench/run.py's overhead
     scenario) and `tagger worker` processes, warmed up on a small job;
  3. runs `tagger tag FOLDER` (the real CLI: it lists and enqueues, the workers tag), and while the job runs
     samples its progress and the resident memory of the workers, the producer and Redis;
  4. reports the rate of each tenth of the job, memory over time, the database's size by table, and the
     latency (p50/p95) of each read query at N: through the HTTP API of a running `tagger serve` (images
     by tag at the first page and half-way down, following its cursor; one image's suggestions; a job's
     status), and through the CLI's entry point called in this process (jobs list; jobs show --items 100,
     first and half-way through the job's items; results KEY: the command without the interpreter's start,
     which is measured apart, cold), and export by tag in rows/s.

The queries are in http_queries() and cli_queries() below, by name: a change to a route or a command is a
change to those tables.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STILL = (48, 32)  # tiny: the pipeline is what is measured, not the decode
PER_FOLDER = 1000
TAG = "tag000"  # every image gets it (the trivial model saturates on its first PER_IMAGE tags)


def http_queries(job_id: str, key: str, storage: str, deep: tuple[int, str]) -> dict[str, str]:
    """Read queries through `tagger serve`, by name: path and query string. `deep`: a depth into the tag's
    images and the cursor of the row there (`deep_cursor`)."""
    depth, cursor = deep
    one = urllib.parse.urlencode({"key": key, "storage_url": storage})
    page = f"/api/v1/tags/{TAG}/images?limit=100"
    return {
        "images by tag, first page of 100 (HTTP)": page,
        f"images by tag, page of 100 after {depth:,} rows (HTTP)": f"{page}&cursor={cursor}",
        "one image's suggestions by key (HTTP)": f"/api/v1/images/suggestions?{one}",
        "a job's status (HTTP)": f"/api/v1/jobs/{job_id}",
    }


def cli_queries(job_id: str, key: str, storage: str, middle: int) -> dict[str, list[str]]:
    """Read commands, by name: their argv. `middle`: an image id half-way through the job's items."""
    show = ["jobs", "show", job_id, "--items", "100"]
    return {
        "tagger jobs list": ["jobs", "list"],
        "tagger jobs show JOB --items 100": show,
        "tagger jobs show JOB --items 100 --after MIDDLE": [*show, "--after", str(middle)],
        "tagger results KEY --storage URL": ["results", key, "--storage", storage],
    }


def deep_cursor(base: str, token: str, depth: int) -> tuple[int, str]:
    """The cursor after about `depth` of the tag's images, found by following its pages of 1,000 (not timed)."""
    path, seen, cursor = f"/api/v1/tags/{TAG}/images?limit=1000", 0, ""
    while seen < depth:
        request = urllib.request.Request(
            base + path + (f"&cursor={cursor}" if cursor else ""), headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            rows = json.loads(response.read())
        if not rows:
            break
        seen, cursor = seen + len(rows), rows[-1]["cursor"]
    return seen, cursor


def middle_item(sessions: Any, job_id: str) -> int:
    """An image id half-way through the job's items, by image id (the order `jobs show --items` pages in)."""
    from sqlalchemy import func, select

    from tagger.db.schema import JobItem

    with sessions() as session:
        n = session.scalar(select(func.count()).where(JobItem.job_id == job_id)) or 0
        found = session.scalar(
            select(JobItem.image_id).where(JobItem.job_id == job_id).order_by(JobItem.image_id).offset(n // 2).limit(1)
        )
    return int(found or 0)


def _write_folder(args: tuple[Path, int, int]) -> int:
    """Stills `first` .. `first + count - 1` into one folder: 2x2 random colours, smoothly scaled up."""
    import numpy as np
    from PIL import Image

    root, first, count = args
    folder = root / f"d{first // PER_FOLDER:05d}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(first)
    for i in range(first, first + count):
        colours = rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)
        Image.fromarray(colours).resize(STILL, Image.Resampling.BILINEAR).save(folder / f"{i:08d}.jpg", quality=85)
    return count


def write_archive(root: Path, n: int) -> None:
    chunks = [(root, first, min(PER_FOLDER, n - first)) for first in range(0, n, PER_FOLDER)]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        sum(pool.map(_write_folder, chunks))


def quantiles(seconds: list[float]) -> dict[str, float]:
    """p50 and p95 in milliseconds (p95 by linear interpolation; the largest with fewer than 20 samples)."""
    ms = sorted(1000 * s for s in seconds)
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[18] if len(ms) >= 20 else ms[-1]
    return {"p50_ms": statistics.median(ms), "p95_ms": p95, "samples": len(ms)}


def http_get(base: str, token: str, path: str) -> float:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
    return time.perf_counter() - start


def cli_in_process(argv: list[str]) -> tuple[float, str]:
    """One `tagger ARGV` through the CLI's entry point in this process (TAGGER_* set in its environment): its
    seconds and what it said on stderr."""
    from tagger.cli import main

    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"tagger {' '.join(argv)} exited {code}: {err.getvalue()[-2000:]}")
    return seconds, err.getvalue()


class Sampler:
    """Every `every` seconds: the job's images with an outcome, and the resident memory of the workers, the
    producer (while it runs) and Redis."""

    def __init__(self, every: float, progress: Callable[[], int], workers: list[int], redis_rss: Callable[[], float]):
        self.every, self.progress, self.workers, self.redis_rss = every, progress, workers, redis_rss
        self.producer: int | None = None
        self.samples: list[dict[str, float]] = []
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        from common import rss_mb

        self.samples.append(
            {
                "t": time.perf_counter() - self.started,
                "processed": self.progress(),
                "workers_mb": sum(rss_mb(pid) for pid in self.workers),
                "producer_mb": rss_mb(self.producer) if self.producer else 0.0,
                "redis_mb": self.redis_rss(),
            }
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()  # the job's end


def segments(samples: list[dict[str, float]], n: int, parts: int = 10) -> list[dict[str, float]]:
    """The rate of each tenth of the job: when its progress crossed k*n/parts (interpolated between samples)."""
    crossings = [0.0]
    for k in range(1, parts + 1):
        goal = k * n / parts
        for before, after in zip(samples, samples[1:], strict=False):
            if before["processed"] < goal <= after["processed"]:
                share = (goal - before["processed"]) / max(1, after["processed"] - before["processed"])
                crossings.append(before["t"] + share * (after["t"] - before["t"]))
                break
        else:
            break
    rows = []
    for k in range(1, len(crossings)):
        at = min(samples, key=lambda s: abs(s["t"] - crossings[k]))  # the memory when the tenth ended
        rows.append(
            {
                "to_percent": 100 * k / parts,
                "end_s": crossings[k],
                "images_per_s": n / parts / max(1e-9, crossings[k] - crossings[k - 1]),
                "workers_mb": at["workers_mb"],
                "redis_mb": at["redis_mb"],
            }
        )
    return rows


def table_sizes(database_url: str) -> list[dict[str, Any]]:
    """Every table of the database with its rows and bytes (heap, indexes, all with TOAST), largest first."""
    from sqlalchemy import text

    from tagger.db import make_engine

    engine = make_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid), pg_indexes_size(c.oid) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 2 DESC"
            )
        ).all()
        sizes = [
            {
                "table": name,
                "rows": int(conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()),
                "total_mb": total / 2**20,
                "heap_mb": heap / 2**20,
                "indexes_mb": indexes / 2**20,
            }
            for name, total, heap, indexes in rows
        ]
        database = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
    engine.dispose()
    return [*sizes, {"table": "(the whole database)", "rows": 0, "total_mb": database / 2**20}]


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """These TAGGER_* variables in this process's environment, for the CLI called in-process."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("TAGGER_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(values)
    try:
        yield
    finally:
        for k in values:
            os.environ.pop(k, None)
        os.environ.update(saved)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000, help="stills in the archive (default 2000)")
    p.add_argument("--batch", type=int, default=32, help="TAGGER_BATCH_SIZE (default 32)")
    p.add_argument("--workers", type=int, default=1, help="`tagger worker` processes (default 1)")
    p.add_argument("--arch", default="mobilenet_v3_small", help="the trivial model (default mobilenet_v3_small)")
    p.add_argument("--size", type=int, default=32, help="its input size (default 32)")
    p.add_argument("--tags", type=int, default=30, help="its vocabulary (default 30)")
    p.add_argument("--samples", type=int, default=50, help="calls per read query (default 50)")
    p.add_argument("--cold-runs", type=int, default=5, help="runs of each read command as a new process (default 5)")
    p.add_argument("--every", type=float, default=1.0, help="seconds between samples of progress and memory")
    p.add_argument("--database-url", default=None, help="an empty PostgreSQL database (default: start one)")
    p.add_argument("--broker-url", default=None, help="a Redis nothing else uses (default: start one)")
    p.add_argument("--dir", type=Path, default=None, help="work folder, kept (default: a temporary one, removed)")
    p.add_argument("--json-out", type=Path, default=None, help="also write the figures here as JSON")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    from common import database
    from run import PER_IMAGE, register  # bench/run.py, beside this file (the script's folder is on sys.path)

    from tagger import tokens
    from tagger.broker.embedded import EmbeddedRedis
    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.jobs.progress import recent, summary, wait
    from tagger.processes import child_env
    from tagger.settings import Settings
    from tagger.worker.local import LocalWorkers
    from tests.conftest import submit_keys
    from tests.support.servers import tagger_serve

    n = args.images
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "args": {k: str(v) for k, v in vars(args).items()},
        "suggestions_per_image": PER_IMAGE,
        "load_average_at_start": os.getloadavg()[0],  # a shared machine: what else ran
    }
    with ExitStack() as stack:
        work = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tagger-scale-")))
        say(f"[1/5] writing {n:,} {STILL[0]}x{STILL[1]} stills to {work / 'archive'}")
        started = time.perf_counter()
        write_archive(work / "archive", n)
        write_archive(work / "warm", 4 * args.batch)
        results["archive_seconds"] = time.perf_counter() - started

        broker_url = args.broker_url or stack.enter_context(EmbeddedRedis()).url
        database_url = args.database_url or database(stack, "postgresql", work, "scale")
        settings = Settings(
            var_dir=work / "var",
            database_url=database_url,
            broker_url=broker_url,
            model_store=(work / "models").as_uri(),
            device="cpu",
            batch_size=args.batch,
            log_level="WARNING",
        )
        engine = make_engine(database_url)
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        register(sessions, settings, args.arch, [f"tag{i:03d}" for i in range(args.tags)], args.size, activate=True)
        env = child_env(settings)

        import redis

        broker = redis.Redis.from_url(broker_url)
        stack.callback(broker.close)

        say(f"[2/5] {args.workers} worker(s), warmed up on {4 * args.batch} stills")
        workers = stack.enter_context(LocalWorkers(settings, count=args.workers, log_file=work / "workers.log"))
        from tagger.broker.config import make_producer_app
        from tagger.broker.send import celery_sender

        send = celery_sender(make_producer_app(settings, broker_url))
        warm = [str(p.relative_to(work / "warm")) for p in sorted((work / "warm").rglob("*.jpg"))]
        warm_job = submit_keys(sessions, send, warm, storage_url=(work / "warm").as_uri(), batch_size=args.batch)
        wait(sessions, warm_job.job_id, timeout=600, show_progress=False, alive=workers.alive)

        say(f"[3/5] tagger tag {work / 'archive'}")
        job_id: list[str] = []

        def progress() -> int:
            if not job_id:
                found = [j for j in recent(sessions, 2) if j.id != warm_job.job_id]
                if not found:
                    return 0
                job_id.append(found[0].id)
            job = summary(sessions, job_id[0])
            return job.done + job.failed + job.skipped

        def redis_rss() -> float:
            return float(broker.info("memory")["used_memory_rss"]) / 2**20

        with Sampler(args.every, progress, [p.pid for p in workers.procs], redis_rss) as sampler:
            with open(work / "producer.log", "ab") as log:
                producer = subprocess.Popen(
                    [sys.executable, "-m", "tagger", "tag", str(work / "archive")], env=env, stdout=log, stderr=log
                )
            sampler.producer = producer.pid
            if producer.wait() != 0:
                raise RuntimeError((work / "producer.log").read_text()[-2000:])
            results["producer_seconds"] = time.perf_counter() - sampler.started
            sampler.producer = None
            while not job_id or not summary(sessions, job_id[0]).state.finished:
                time.sleep(0.2)
            results["job_seconds"] = time.perf_counter() - sampler.started
        job = summary(sessions, job_id[0])
        results["job"] = {"id": job.id, "state": job.state.value, "total": job.total, "done": job.done}
        results["images_per_s"] = job.done / results["job_seconds"]
        results["segments"] = segments(sampler.samples, n)
        results["memory"] = {
            "workers_mb_max": max(s["workers_mb"] for s in sampler.samples),
            "producer_mb_max": max(s["producer_mb"] for s in sampler.samples),
            "redis_mb_max": max(s["redis_mb"] for s in sampler.samples),
            "samples": sampler.samples,
        }

        say("[4/5] the database's size by table")
        results["tables"] = table_sizes(database_url)

        say(f"[5/5] read queries: {args.samples} calls each, and {args.cold_runs} cold runs of each command")
        key = "d00000/00000000.jpg"
        secret = tokens.create(sessions, "scale-bench", "read")
        queries: dict[str, Any] = {}
        base = stack.enter_context(tagger_serve(env, work / "serve.log"))
        storage = (work / "archive").as_uri()
        deep = deep_cursor(base, secret, n // 2)
        for name, path in http_queries(job.id, key, storage, deep).items():
            http_get(base, secret, path)  # the first call warms the server's caches and connections
            queries[name] = quantiles([http_get(base, secret, path) for _ in range(args.samples)])
        middle = middle_item(sessions, job.id)
        with environment(settings.as_env()):
            for name, argv in cli_queries(job.id, key, storage, middle).items():
                cli_in_process(argv)
                queries[name + " (in-process)"] = quantiles([cli_in_process(argv)[0] for _ in range(args.samples)])
            exports = []
            for _ in range(3):
                seconds, said = cli_in_process(["export", "--tag", TAG, "--format", "csv", "-o", os.devnull])
                exports.append(int(said.split("exported ", 1)[1].split()[0]) / seconds)
            results["export_by_tag_rows_per_s"] = statistics.median(exports)
        for name, argv in cli_queries(job.id, key, storage, middle).items():
            cold = []
            for _ in range(args.cold_runs):
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "tagger", *argv], env=env, capture_output=True, check=True)
                cold.append(time.perf_counter() - start)
            queries[name + " (a new process)"] = quantiles(cold)
        results["queries"] = queries
        engine.dispose()

    results["load_average_at_end"] = os.getloadavg()[0]
    report(results)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


def report(r: dict[str, Any]) -> None:
    """The figures as Markdown tables, ready for BENCHMARKS.md."""
    n = int(r["args"]["images"])
    print(
        f"\n## scale: {n:,} stills ({r['date']}, {r['machine']}, load average {r['load_average_at_start']:.1f} at "
        f"the start, {r['load_average_at_end']:.1f} at the end)\n\n"
        f"{r['job']['done']:,} of {r['job']['total']:,} tagged ({r['job']['state']}) in {r['job_seconds']:.1f} s: "
        f"{r['images_per_s']:,.0f} images/s from `tagger tag` to the job's end; the producer listed and enqueued "
        f"in {r['producer_seconds']:.1f} s. Peak memory: workers {r['memory']['workers_mb_max']:,.0f} MB, "
        f"producer {r['memory']['producer_mb_max']:,.0f} MB, Redis {r['memory']['redis_mb_max']:,.0f} MB.\n"
    )
    print("| tenth of the job | ends at s | images/s | workers MB | Redis MB |\n|---:|---:|---:|---:|---:|")
    for s in r["segments"]:
        print(
            f"| {s['to_percent']:.0f}% | {s['end_s']:.1f} | {s['images_per_s']:,.0f} | {s['workers_mb']:,.0f} | "
            f"{s['redis_mb']:,.0f} |"
        )
    images = next(t["rows"] for t in r["tables"] if t["table"] == "images")  # the warm-up's too
    print("\n| table | rows | total MB | heap MB | indexes MB | bytes per image |\n|---|---:|---:|---:|---:|---:|")
    for t in r["tables"]:
        per_image = f"{t['total_mb'] * 2**20 / max(1, images):,.0f}"
        heap = f"{t['heap_mb']:,.1f}" if "heap_mb" in t else ""
        indexes = f"{t['indexes_mb']:,.1f}" if "indexes_mb" in t else ""
        print(f"| {t['table']} | {t['rows']:,} | {t['total_mb']:,.1f} | {heap} | {indexes} | {per_image} |")
    print("\n| read query at N | p50 ms | p95 ms | calls |\n|---|---:|---:|---:|")
    for name, q in r["queries"].items():
        print(f"| {name} | {q['p50_ms']:,.1f} | {q['p95_ms']:,.1f} | {q['samples']} |")
    rows = f"{r['export_by_tag_rows_per_s']:,.0f} rows/s"
    print(f"| export by tag (`tagger export --tag {TAG} --format csv`, in-process) | {rows} | | 3 |")


if __name__ == "__main__":
    raise SystemExit(main())
