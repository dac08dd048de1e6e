"""The system benchmark: ceilings, the real pipeline, and the naive worker, measured in one run.

    python bench/run.py                                     # small, CPU (2 cores: a few minutes)
    python bench/run.py --device cuda --arch resnet50 --images 4000 --batch 256 --workers 1 \
        --pool threads --decoder device --scale 1,2,4

In one run on the machine it is given, it:
  1. writes a synthetic archive of 1080p-class JPEG stills (4:3, 16:9 and 2.39:1);
  2. measures the decode ceiling (the worker's Preprocess on `--threads` threads) and the
     model-only ceiling (worker.inference.predict on ready uint8 batches);
  3. tags the archive end to end through real `tagger worker` processes, Redis and the database;
  4. runs the naive baseline through the same system: one image per task, batch 1, full decode;
  5. measures the latency of single interactive images submitted during a bulk job (p50/p95);
  6. measures the sink's suggestion rows/s, beside the database's own rate for the same rows
     (COPY straight into the table) and the broker's rate for task messages (publish, consume+ack);
  7. with --scale 1,2,4: the end-to-end rate of 1, 2 and 4 worker processes with a light model;
and prints a table of rates with their ratios to the ceilings and to the naive baseline
(also written as JSON with --json-out). It is a measurement, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHAPES = ((1440, 1080), (1920, 1080), (1920, 804))  # 4:3, 16:9, 2.39:1


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=240, help="stills in the archive (default 240)")
    p.add_argument("--naive-images", type=int, default=60, help="stills for the naive baseline (default 60)")
    p.add_argument("--interactive", type=int, default=8, help="interactive images timed during a bulk job")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--tags", type=int, default=180, help="vocabulary size of the (random) model")
    p.add_argument("--batch", type=int, default=32, help="images per task and per forward pass")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--workers", type=int, default=1, help="tagger worker processes for the end-to-end run")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="decode threads (default: cores)")
    p.add_argument("--pool", choices=["auto", "prefork", "threads"], default="auto", help="TAGGER_WORKER_POOL")
    p.add_argument("--concurrency", type=int, default=0, help="TAGGER_WORKER_CONCURRENCY (0: the worker's default)")
    p.add_argument("--decoder", choices=["auto", "cpu", "device"], default="auto", help="TAGGER_DECODER")
    p.add_argument("--cpu-jpeg-share", type=float, default=0.2, help="TAGGER_CPU_JPEG_SHARE")
    p.add_argument("--compile", action="store_true", help="TAGGER_COMPILE=1 (torch.compile, warmed up)")
    p.add_argument("--scale", default="", help="worker counts for the scale-out table, e.g. 1,2,4 (default: skip)")
    p.add_argument("--scale-size", type=int, default=64, help="input size of the light scale-out model")
    p.add_argument("--broker-messages", type=int, default=5000, help="task messages for the broker ceiling")
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    p.add_argument("--sink-rows", type=int, default=200_000, help="suggestion rows for the sink measurement")
    p.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    p.add_argument("--json-out", type=Path, default=None)
    return p.parse_args()


def write_archive(root: Path, n: int) -> list[str]:
    """Smooth, photo-like stills (shapes, gradients, mild noise), so JPEG sizes and decode costs are realistic."""
    import numpy as np
    from PIL import Image

    from tagger.sample_archive import TAGS, render

    rng = random.Random(7)
    noise = np.random.default_rng(7)
    (root / "stills").mkdir(parents=True, exist_ok=True)
    keys = []
    for i in range(n):
        w, h = SHAPES[i % 3]
        small = render({t for t in TAGS if rng.random() < 0.3}, (w // 4, h // 4), rng)
        img = small.resize((w, h), Image.Resampling.BICUBIC)
        arr = np.asarray(img, dtype=np.int16) + noise.integers(-6, 7, (h, w, 3), dtype=np.int16)
        buf = io.BytesIO()
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        key = f"stills/{i:06d}.jpg"
        (root / key).write_bytes(buf.getvalue())
        keys.append(key)
    return keys


def decode_rate(root: Path, keys: list[str], size: int, threads: int, *, draft: bool) -> float:
    from tagger.model.preprocess import DecodeLimits, Preprocess

    pre = Preprocess(size, limits=DecodeLimits(draft=draft))
    blobs = [(root / k).read_bytes() for k in keys]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(pre, blobs[: min(8, len(blobs))]))  # warm-up
        start = time.perf_counter()
        list(pool.map(pre, blobs))
    return len(blobs) / (time.perf_counter() - start)


def device_decode_rate(root: Path, keys: list[str], size: int, device_name: str, batch: int) -> float:
    """The worker's device decoder (nvJPEG on CUDA; torchvision's libjpeg on CPU), batched, resize included."""
    import torch

    from tagger.model.device import pick_device
    from tagger.model.preprocess import DecodeLimits
    from tagger.worker.device_decode import DeviceDecoder, read_header

    device = pick_device(device_name)
    decoder = DeviceDecoder(size, device)
    blobs = [(root / k).read_bytes() for k in keys]
    headers = [read_header(b, DecodeLimits()) for b in blobs]
    decoder(blobs[:batch], headers[:batch])  # warm-up (nvJPEG handles, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(blobs), batch):
        decoder(blobs[i : i + batch], headers[i : i + batch])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(blobs) / (time.perf_counter() - start)


def model_rate(arch: str, tags: int, size: int, batch: int, device_name: str, images: int) -> float:
    import torch

    from tagger.model.architectures import build_model
    from tagger.model.device import pick_device
    from tagger.model.predict import predict, prepare
    from tagger.model.preprocess import Normalise

    device = pick_device(device_name)
    model, dtype = prepare(build_model(arch, tags), device)
    x = torch.randint(0, 255, (batch, 3, size, size), dtype=torch.uint8)
    norm = Normalise()
    for _ in range(3):
        predict(model, x, normalise=norm, device=device, dtype=dtype)
    rounds = max(3, images // batch)
    start = time.perf_counter()
    for _ in range(rounds):
        predict(model, x, normalise=norm, device=device, dtype=dtype)
    return rounds * batch / (time.perf_counter() - start)


def sink_rate(sessions: Any, version_id: int, tag_ids: list[int], rows: int) -> float:
    from tagger.jobs.producer import create_job, enqueue_keys
    from tagger.worker.sink import Tagged, record_batch

    per_image, batch = 10, 256
    keys = [f"sink/{i:07d}.jpg" for i in range(rows // per_image)]
    job = create_job(sessions, source="sink", storage_url="file:///nowhere", batch_size=batch).job_id
    enqueue_keys(sessions, lambda *a: None, job_id=job, keys=keys, batch_size=batch)
    rng = random.Random(3)
    batches = [
        [Tagged(k, [(t, rng.random()) for t in rng.sample(tag_ids, per_image)]) for k in keys[i : i + batch]]
        for i in range(0, len(keys), batch)
    ]
    start = time.perf_counter()
    for tagged in batches:
        record_batch(sessions, job_id=job, model_version_id=version_id, tagged=tagged)
    return len(keys) * per_image / (time.perf_counter() - start)


def database_rate(sessions: Any) -> float:
    """The database's own rate for the sink's rows: emptied, then written back by the sink's statement
    (`write_suggestions`, one transaction per 2,560 rows) with no fence and no job bookkeeping."""
    from sqlalchemy import delete, select

    from tagger.db.schema import Suggestion
    from tagger.worker.sink import write_suggestions

    with sessions() as session, session.begin():
        rows = [
            tuple(r)
            for r in session.execute(
                select(Suggestion.image_id, Suggestion.tag_id, Suggestion.model_version_id, Suggestion.probability)
            )
        ]
        session.execute(delete(Suggestion))
    chunk = 2560
    start = time.perf_counter()
    for i in range(0, len(rows), chunk):
        with sessions() as session, session.begin():
            write_suggestions(session, rows[i : i + chunk])  # type: ignore[arg-type]
    return len(rows) / (time.perf_counter() - start)


def broker_rate(app: Any, messages: int) -> tuple[float, float]:
    """Task messages of a bulk batch's shape (32 keys, JSON) through Redis: published/s, then consumed+acked/s
    by one consumer holding one unacked message at a time (a worker's prefetch)."""
    from kombu import Consumer, Queue

    queue = Queue("bench.broker")
    keys = [f"stills/{i:06d}.jpg" for i in range(32)]
    with app.connection_for_write() as conn:
        queue(conn.default_channel).declare()
        with app.producer_or_acquire() as producer:
            start = time.perf_counter()
            for _ in range(messages):
                app.send_task("tagger.tag_batch", args=["bench", keys], queue="bench.broker", producer=producer)
            published = messages / (time.perf_counter() - start)
    got = 0

    def on_message(_body: Any, message: Any) -> None:
        nonlocal got
        message.ack()
        got += 1

    with (
        app.connection_for_read() as conn,
        Consumer(conn, queues=[queue], callbacks=[on_message], accept=["json"], prefetch_count=1),
    ):
        start = time.perf_counter()
        while got < messages:
            conn.drain_events(timeout=10)
        consumed = messages / (time.perf_counter() - start)
    return published, consumed


def main() -> int:
    args = parse_args()
    import torch

    from tagger import registry
    from tagger.celeryconfig import make_producer_app
    from tagger.cli.local_workers import LocalWorkers
    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.embedded_redis import EmbeddedRedis
    from tagger.jobs.producer import celery_sender, submit
    from tagger.jobs.progress import summary, wait
    from tagger.model import artifact
    from tagger.model.architectures import build_model
    from tagger.model.meta import ArtifactMeta, new_version
    from tagger.settings import Settings
    from tagger.storage import open_storage

    work = args.dir or Path(tempfile.mkdtemp(prefix="tagger-bench-"))
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    say(f"[1/7] writing {args.images} 1080p-class stills to {work}")
    keys = write_archive(work / "archive", args.images)
    results["suggestions_per_image"] = 10
    results["mean_file_kb"] = round(sum((work / "archive" / k).stat().st_size for k in keys) / len(keys) / 1024, 1)

    say("[2/7] ceilings: decode (draft and full) and model only")
    results["decode_draft"] = decode_rate(work / "archive", keys, args.size, args.threads, draft=True)
    results["decode_full"] = decode_rate(
        work / "archive", keys[: args.naive_images], args.size, args.threads, draft=False
    )
    results["decode_device"] = device_decode_rate(work / "archive", keys, args.size, args.device, args.batch)
    results["model_only"] = model_rate(args.arch, args.tags, args.size, args.batch, args.device, max(args.images, 256))

    with ExitStack() as stack:
        redis = stack.enter_context(EmbeddedRedis())
        if args.database == "postgresql":
            from tests.servers import Postgres

            pg = Postgres().start()
            stack.callback(pg.destroy)
            database_url = pg.create_database("bench")
        else:
            database_url = f"sqlite:///{work / 'tagger.db'}"
        settings = Settings(
            var_dir=work / "var",
            database_url=database_url,
            broker_url=redis.url,
            model_store=(work / "models").as_uri(),
            device=args.device,
            batch_size=args.batch,
            fetch_threads=args.threads,
            worker_pool=args.pool,
            worker_concurrency=args.concurrency,
            decoder=args.decoder,
            cpu_jpeg_share=args.cpu_jpeg_share,
            compile=int(args.compile),
            log_level="INFO",
        )
        engine = make_engine(database_url)
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        tags = [f"tag{i:03d}" for i in range(args.tags)]
        meta = ArtifactMeta(version=new_version("bench"), arch=args.arch, tags=tags, input_size=args.size)
        store = open_storage(settings.model_store)
        model = build_model(args.arch, len(tags))
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():  # a random model suggests ~every tag; bias it to ~10 per image, like a real one
            head.bias.fill_(-6.0)
            head.bias[:10] = 6.0
        meta = artifact.save(model, meta, store)
        with sessions() as session, session.begin():
            row = registry.register(session, meta, uri=f"{store.url}/{meta.version}")
            version_id, tag_ids = row.id, list(registry.tag_ids(session, tags).values())
        send = celery_sender(make_producer_app(settings, redis.url))
        url = (work / "archive").as_uri()

        def run(job_keys: list[str], batch: int, queue: str = "tagger.bulk") -> float:
            """Images/s from the submission to the job's end, as its user sees it."""
            submitted = datetime.now(UTC)
            job = submit(sessions, send, source="bench", storage_url=url, keys=job_keys, batch_size=batch, queue=queue)
            done = wait(sessions, job.job_id, timeout=3600, show_progress=False)
            assert done.finished_at is not None
            finished = done.finished_at if done.finished_at.tzinfo else done.finished_at.replace(tzinfo=UTC)
            return done.done / max(1e-6, (finished - submitted).total_seconds())

        say(f"[3/7] end to end: {args.images} stills through {args.workers} worker(s), batch {args.batch}")
        with LocalWorkers(settings, count=args.workers, log_file=work / "workers.log"):
            run(keys[: args.batch * 2], args.batch)  # warm-up: model loads in every worker
            results["end_to_end"] = run(keys, args.batch)

            say(f"[5/7] interactive latency: {args.interactive} single images during a bulk job")
            bulk = submit(sessions, send, source="bulk", storage_url=url, keys=keys, batch_size=args.batch)
            latencies = []
            for key in keys[: args.interactive]:
                sent = time.perf_counter()
                one = submit(
                    sessions, send, source="one", storage_url=url, keys=[key], batch_size=1, queue="tagger.interactive"
                )
                while not summary(sessions, one.job_id).state.finished:
                    time.sleep(0.01)
                latencies.append(time.perf_counter() - sent)
            wait(sessions, bulk.job_id, timeout=3600, show_progress=False)
            results["interactive_p50_s"] = statistics.median(latencies)
            results["interactive_p95_s"] = sorted(latencies)[max(0, int(round(0.95 * len(latencies))) - 1)]

        say(f"[4/7] naive baseline: {args.naive_images} stills, one per task, batch 1, full decode")
        naive = settings.replace(jpeg_draft=0)
        with LocalWorkers(naive, count=args.workers, log_file=work / "workers.log"):
            run(keys[:2], 1)
            results["naive"] = run(keys[: args.naive_images], 1)

        say(f"[6/7] sink: {args.sink_rows} suggestion rows on {args.database}; database and broker ceilings")
        results["sink_rows_per_s"] = sink_rate(sessions, version_id, tag_ids, args.sink_rows)
        results["database_rows_per_s"] = database_rate(sessions)
        producer_app = make_producer_app(settings, redis.url)
        results["broker_publish_per_s"], results["broker_consume_per_s"] = broker_rate(
            producer_app, args.broker_messages
        )

        if args.scale:
            counts = [int(n) for n in args.scale.split(",")]
            say(f"[7/7] scale-out: {counts} worker processes, {args.arch} at {args.scale_size} px")
            light = ArtifactMeta(version=new_version("light"), arch=args.arch, tags=tags, input_size=args.scale_size)
            light = artifact.save(model, light, store)
            with sessions() as session, session.begin():
                registry.register(session, light, uri=f"{store.url}/{light.version}")
                registry.activate(session, light.version)
            results["scale_out"] = {}
            for n in counts:
                with LocalWorkers(settings, count=n, log_file=work / "workers.log"):
                    run(keys[: args.batch * 2 * n], args.batch)
                    results["scale_out"][n] = run(keys, args.batch)
        engine.dispose()

    report(results)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


def report(r: dict[str, Any]) -> None:
    args = r["args"]
    on_device = args["decoder"] == "device" or (args["decoder"] == "auto" and r["gpu"])
    decode_ceiling = r["decode_draft"] + r["decode_device"] if on_device else r["decode_draft"]
    ceiling = min(decode_ceiling, r["model_only"])
    e2e = r["end_to_end"]
    rows = [
        ("decode, CPU: Pillow + draft, threads", f"{r['decode_draft']:,.1f}", ""),
        ("decode, CPU: full (no draft)", f"{r['decode_full']:,.1f}", ""),
        (
            f"decode, device ({'nvJPEG' if r['gpu'] else 'torchvision libjpeg'}, batched, resize on device)",
            f"{r['decode_device']:,.1f}",
            "in use" if on_device else "not in use (decoder=cpu)",
        ),
        (
            "decode ceiling of this configuration",
            f"{decode_ceiling:,.1f}",
            "CPU + device decoders together" if on_device else "CPU decoder",
        ),
        ("model only", f"{r['model_only']:,.1f}", ""),
        (
            "**end to end** (workers, Redis, database)",
            f"**{e2e:,.1f}**",
            f"{e2e / ceiling:.0%} of min(decode, model) ceiling; {e2e / decode_ceiling:.0%} of decode; "
            f"{e2e / r['model_only']:.0%} of model; {e2e / r['naive']:.1f}x naive",
        ),
        ("naive: 1 image per task, batch 1, full decode", f"{r['naive']:,.1f}", ""),
        (
            "interactive image during a bulk job",
            f"p50 {r['interactive_p50_s']:.2f} s, p95 {r['interactive_p95_s']:.2f} s",
            "",
        ),
        (
            "sink (fence + job bookkeeping + suggestions)",
            f"{r['sink_rows_per_s']:,.0f} rows/s",
            f"{r['sink_rows_per_s'] / r['database_rows_per_s']:.0%} of the database's rate",
        ),
        ("database: the same rows, same statement, no fence", f"{r['database_rows_per_s']:,.0f} rows/s", ""),
        ("broker: task messages published", f"{r['broker_publish_per_s']:,.0f} msgs/s", ""),
        (
            "broker: consumed + acked, one consumer, prefetch 1",
            f"{r['broker_consume_per_s']:,.0f} msgs/s",
            f"= {r['broker_consume_per_s'] * int(args['batch']):,.0f} images/s at batch {args['batch']}",
        ),
    ]
    for n, rate in (r.get("scale_out") or {}).items():
        base = r["scale_out"][next(iter(r["scale_out"]))]
        rows.append(
            (
                f"scale-out: {n} worker process(es), light model ({args['scale_size']} px)",
                f"{rate:,.1f}",
                f"{rate / base:.2f}x of {next(iter(r['scale_out']))}",
            )
        )
    print(f"\n{r['date']} | {r['machine']} | GPU: {r['gpu'] or 'none'} | mean still {r['mean_file_kb']} KB")
    print("| what | rate (images/s unless said) | ratio |\n|---|---:|---|")
    for name, rate, ratio in rows:
        print(f"| {name} | {rate} | {ratio} |")


if __name__ == "__main__":
    raise SystemExit(main())
