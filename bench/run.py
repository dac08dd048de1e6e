"""The system benchmark: ceilings, the real pipeline, and the naive worker, measured in one run.

    python bench/run.py                                     # small, CPU (2 cores: a few minutes)
    python bench/run.py --device cuda --arch resnet50 --images 12000 --batch 256 --scale 1,2,4   # a GPU host

In one run on the machine it is given, it:
  1. writes a synthetic archive of 1080p-class JPEG stills (4:3, 16:9 and 2.39:1), on every core;
  2. measures the decode ceilings (the worker's Preprocess: libjpeg-turbo's scaled decode through
     simplejpeg behind Pillow's checks; Pillow + draft alone; no draft; the device decoder; OpenCV
     where installed) and the model-only ceiling;
  3. tags the archive end to end through real `tagger worker` processes, Redis and the database,
     --rounds times, each run between two model-only measurements (the ratio is to their mean);
  4. runs the naive baseline through the same system: one image per task, batch 1, full decode;
  5. measures the latency of single interactive images submitted during a bulk job (p50/p95);
  6. measures the sink's suggestion rows/s at the worker's concurrency with decode threads busy beside
     it, in turn with the database replaying the same write beside the same threads (and both alone),
     --rounds times; a bare INSERT of the same rows; the broker's rate for task messages;
  7. the system-overhead scenario: small stills and a trivial model, so inference is nearly free; its
     end-to-end rate against 1 / (decode + model + sink seconds per image, each measured alone, before
     and after each of --rounds runs of seconds); and a job of one batch on idle workers, a job's fixed cost;
  8. with --scale 1,2,4: the end-to-end rate of 1, 2 and 4 worker processes with a light model;
and prints a table of rates with their ratios (also written as JSON with --json-out). It is a
measurement, not a test: nothing is asserted.
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
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHAPES = ((1440, 1080), (1920, 1080), (1920, 804))  # 4:3, 16:9, 2.39:1
SMALL = (192, 108)  # the overhead scenario's stills
PER_IMAGE = 10  # suggestions per image, as a trained model gives
VECTOR_WIDTH = 512  # an embedding's width: ResNet-18's and ResNet-34's pooled features


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--images", type=int, default=512, help="stills in the archive; a multiple of batch x workers (default 512)"
    )
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
    p.add_argument(
        "--overhead-images",
        type=int,
        default=6000,
        help="small stills for the overhead scenario: a run of seconds, so the steady state is measured and a "
        "job's fixed cost (measured on its own) does not dominate it",
    )
    p.add_argument("--overhead-arch", default="mobilenet_v3_small", help="the overhead scenario's trivial model")
    p.add_argument("--overhead-size", type=int, default=32, help="its input size")
    p.add_argument("--broker-messages", type=int, default=5000, help="task messages for the broker ceiling")
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    p.add_argument("--sink-rows", type=int, default=200_000, help="suggestion rows for the sink measurement")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="end-to-end, overhead and sink runs, each between two measurements of its ceiling (default 3)",
    )
    p.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    p.add_argument("--json-out", type=Path, default=None)
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be 1 or more")
    if args.overhead_images < 5 * args.batch:
        p.error("--overhead-images must be at least 5 batches (warm-up and the one-batch jobs take that many)")
    return args


def _write_still(args: tuple[Path, int, tuple[int, int], int]) -> str:
    """One smooth, photo-like still (shapes, gradients, mild noise): realistic JPEG sizes and decode costs."""
    import numpy as np
    from PIL import Image

    from tagger.sample_archive import TAGS, render

    root, i, (w, h), seed = args
    rng = random.Random(seed * 100_003 + i)
    noise = np.random.default_rng(seed * 100_003 + i)
    small = render({t for t in TAGS if rng.random() < 0.3}, (max(8, w // 4), max(8, h // 4)), rng)
    img = small.resize((w, h), Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.int16) + noise.integers(-6, 7, (h, w, 3), dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    key = f"stills/{i:06d}.jpg"
    (root / key).write_bytes(buf.getvalue())
    return key


def write_archive(root: Path, n: int, shapes: tuple[tuple[int, int], ...] = SHAPES, seed: int = 7) -> list[str]:
    """n stills under root/stills/, written by every core."""
    (root / "stills").mkdir(parents=True, exist_ok=True)
    jobs = [(root, i, shapes[i % len(shapes)], seed) for i in range(n)]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(_write_still, jobs, chunksize=16))


def decode_rate(
    root: Path, keys: list[str], size: int, threads: int, *, draft: bool, pillow_only: bool = False
) -> float:
    """The worker's Preprocess in `threads` threads (images/s); `pillow_only` without the simplejpeg path."""
    from tagger.model import preprocess

    pre = preprocess.Preprocess(size, limits=preprocess.DecodeLimits(draft=draft))
    blobs = [(root / k).read_bytes() for k in keys]
    from tagger.model import decode as decoding

    fast = decoding._simplejpeg
    if pillow_only:
        decoding._simplejpeg = None
    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(pre, blobs[: min(8, len(blobs))]))  # warm-up
            start = time.perf_counter()
            list(pool.map(pre, blobs))
    finally:
        decoding._simplejpeg = fast
    return len(blobs) / (time.perf_counter() - start)


def other_decoder_rates(root: Path, keys: list[str], size: int, threads: int) -> dict[str, float]:
    """JPEG decoders the worker does not use, where installed: OpenCV (reduced decode, GIL released).

    Each decodes to at least `size` per side (the reduced scale the file allows), then squish-resizes as
    the worker does (`preprocess.squish`), so the figures compare with Preprocess.
    """
    import numpy as np
    import torch

    from tagger.model.preprocess import squish

    blobs = [(root / k).read_bytes() for k in keys]
    rates: dict[str, float] = {}

    def timed(name: str, decode: Any) -> None:
        def one(data: bytes) -> Any:
            return squish(torch.from_numpy(decode(data)).permute(2, 0, 1), size)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, blobs[:8]))
            start = time.perf_counter()
            list(pool.map(one, blobs))
        rates[name] = len(blobs) / (time.perf_counter() - start)

    try:
        import cv2

        def opencv(data: bytes) -> Any:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_4)
            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

        timed("opencv (reduced 1/4)", opencv)
    except ImportError:
        pass
    return rates


def device_decode_rate(root: Path, keys: list[str], size: int, device_name: str, batch: int) -> float:
    """The worker's device decoder (nvJPEG on CUDA; libjpeg-turbo on CPU), batched, resize included."""
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


def model_span(
    arch: str, tags: int, size: int, batch: int, device_name: str, images: int, barrier: Any = None
) -> tuple[int, float, float]:
    """(images, start, end in epoch seconds) of `predict` on random batches after a warm-up; with `barrier`,
    the timing starts when every process sharing it is warm."""
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
    if barrier is not None:
        barrier.wait()
    rounds = max(3, images // batch)
    start = time.time()
    for _ in range(rounds):
        predict(model, x, normalise=norm, device=device, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return rounds * batch, start, time.time()


def model_rate(arch: str, tags: int, size: int, batch: int, device_name: str, images: int) -> float:
    """The model alone in this process, images/s."""
    n, start, end = model_span(arch, tags, size, batch, device_name, images)
    return n / (end - start)


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


class ModelCeiling:
    """The model-only ceiling of this machine, as the worker can run the model: one process with every
    core's threads, and on CPU also one process per core with one thread each (the prefork pool's default),
    started together at a barrier; the better of the two. The per-core processes live as long as this."""

    def __init__(self, device_name: str) -> None:
        import multiprocessing

        from tagger.model.device import pick_device
        from tagger.worker.shape import available_cores

        self.device_name = device_name
        self.cores = available_cores()
        on_cpu = pick_device(device_name).type == "cpu"
        context = multiprocessing.get_context("spawn")
        self.pool = (
            ProcessPoolExecutor(self.cores, mp_context=context, initializer=_one_torch_thread)
            if on_cpu and self.cores > 1
            else None
        )
        self.manager = context.Manager() if self.pool is not None else None

    def measure(self, arch: str, tags: int, size: int, batch: int, images: int) -> dict[str, float]:
        """images/s: `one_process`, `per_core` (all images over the span from the first start to the last
        end; CPU only) and `best`."""
        out = {"one_process": model_rate(arch, tags, size, batch, self.device_name, images)}
        if self.pool is not None and self.manager is not None:
            share = max(batch * 3, images // self.cores)
            barrier = self.manager.Barrier(self.cores)
            futures = [
                self.pool.submit(model_span, arch, tags, size, batch, self.device_name, share, barrier)
                for _ in range(self.cores)
            ]
            spans = [f.result() for f in futures]
            out["per_core"] = sum(n for n, _, _ in spans) / (max(e for _, _, e in spans) - min(s for _, s, _ in spans))
        out["best"] = max(out.values())
        return out

    def close(self) -> None:
        if self.pool is not None and self.manager is not None:
            self.pool.shutdown()
            self.manager.shutdown()


def _sink_batches(
    sessions: Any, storage_url: str, tag_ids: list[int], images: int, batch: int, *, width: int = 0
) -> Any:
    """A job over `images` fresh images and the sink's rows for it, batch by batch (TaggedRows, as the worker);
    with `width`, each image's embedding too (`embeddings`: clustered, as a CNN's are, not uniform noise)."""
    from sqlalchemy import select

    from tagger.db.schema import Image, JobItem
    from tagger.jobs.producer import complete_listing, create_job, enqueue_keys
    from tagger.jobs.sources import PassedOver
    from tagger.worker.sink import TaggedRows
    from tagger_client.contract import JobSpec

    spec = JobSpec.new(keys=[], storage_url=storage_url, batch_size=batch)
    job = create_job(sessions, spec, source="sink", storage_url=storage_url, batch_size=batch).job_id
    prefix = f"sink-{job[:8]}"
    enqueue_keys(
        sessions,
        lambda *a: None,
        job_id=job,
        keys=[f"{prefix}/{i:07d}.jpg" for i in range(images)],
        storage_url=storage_url,
        batch_size=batch,
        queue="bench",
    )
    complete_listing(sessions, lambda *a: None, job, PassedOver())
    with sessions() as session:
        ids = list(session.scalars(select(Image.id).join(JobItem).where(JobItem.job_id == job).order_by(Image.id)))
    rng = random.Random(3)
    out = []
    for i in range(0, len(ids), batch):
        chunk = ids[i : i + batch]
        rows_i, rows_t, rows_p = [], [], []
        for image in chunk:
            for tag in rng.sample(tag_ids, PER_IMAGE):
                rows_i.append(image)
                rows_t.append(tag)
                rows_p.append(rng.random())
        out.append(
            TaggedRows(chunk, rows_i, rows_t, rows_p, vectors=embeddings(len(chunk), width, seed=i) if width else None)
        )
    return job, out


def embeddings(n: int, width: int, *, seed: int = 0, clusters: int = 200) -> Any:
    """`n` L2-normalised float16 vectors around `clusters` centres (the same centres for any seed): a stand-in
    for a CNN's pooled features, whose neighbours an HNSW graph finds as it would real ones."""
    import numpy as np

    centres = np.random.default_rng(12345).standard_normal((clusters, width)).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, width)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)


def linked_copy(root: Path, name: str) -> Path:
    """The stills under `root` again, hard-linked under a sibling folder: another storage root, so a
    round tags fresh images (the same keys under one root would be re-tags) without writing them again."""
    copy = root.parent / name
    for still in (root / "stills").iterdir():
        target = copy / "stills" / still.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(still, target)
    return copy


@contextmanager
def busy_decoding(decode: tuple[Path, list[str], int, int] | None) -> Iterator[None]:
    """The worker's fetch threads decoding stills in this process for as long as the block runs (none if
    `decode` is None): (archive root, keys, input size, threads)."""
    if decode is None:
        yield
        return
    from tagger.model.preprocess import Preprocess

    root, keys, size, threads = decode
    pre, blobs = Preprocess(size), [(root / k).read_bytes() for k in keys[:64]]
    stop = threading.Event()

    def decoding() -> None:
        while not stop.is_set():
            for blob in blobs:
                pre(blob)
                if stop.is_set():
                    return

    busy = [threading.Thread(target=decoding, daemon=True) for _ in range(threads)]
    for t in busy:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in busy:
            t.join()


def timed_threads(threads: list[threading.Thread], decode: tuple[Path, list[str], int, int] | None) -> float:
    """Seconds from starting `threads` to the last one's end, with `busy_decoding(decode)` around them."""
    with busy_decoding(decode):
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - start


def sink_rate(
    sessions: Any,
    storage_url: str,
    version_id: int,
    tag_ids: list[int],
    rows: int,
    *,
    batch: int,
    writers: int,
    decode: tuple[Path, list[str], int, int] | None,
    width: int = 0,
) -> float:
    """Suggestion rows/s of the real sink (fence, rows, images, counters, one statement on PostgreSQL) from
    `writers` threads at once, as a worker's task threads write, while decode threads keep the GIL busy;
    with `width`, each image's embedding of that width too."""
    from tagger.db import make_statement_engine
    from tagger.db.vectors import index_vectors
    from tagger.worker.sink import record_batch

    url = sessions.kw["bind"].url.render_as_string(hide_password=False)
    engine = make_statement_engine(url, pool_size=writers)  # the worker's, a connection per writer
    if width:  # the version's index up to its newest image, as after a job: the new images are past it
        index_vectors(sessions.kw["bind"], version_id, min_tail=0)
    job, batches = _sink_batches(sessions, storage_url, tag_ids, rows // PER_IMAGE, batch, width=width)
    queue = list(batches)
    lock = threading.Lock()

    def writer() -> None:
        while True:
            with lock:
                if not queue:
                    return
                rows_ = queue.pop()
            record_batch(engine, job_id=job, model_version_id=version_id, tagged=rows_)

    seconds = timed_threads([threading.Thread(target=writer) for _ in range(writers)], decode)
    engine.dispose()
    return sum(len(b.row_images) for b in batches) / seconds


# The sink statement's parameters, in the order the server-side replay passes them, with their types.
_WRITE_PARAMS = (
    ("job", "text"),
    ("version", "int"),
    ("tagged", "text"),
    ("row_images", "text"),
    ("row_tags", "text"),
    ("row_probs", "text"),
    ("failed", "text"),
    ("reasons", "text[]"),
    ("skipped", "text"),
    ("vector_images", "text"),
    ("vectors", "halfvec[]"),
)


def database_write_rate(
    sessions: Any,
    storage_url: str,
    version_id: int,
    tag_ids: list[int],
    rows: int,
    batch: int,
    *,
    decode: tuple[Path, list[str], int, int] | None = None,
    streams: int = 1,
) -> float:
    """The database's own rate for the sink's very write: the same statement (fence, rows, images,
    counters) with the same parameters, one transaction per batch, replayed by the server from one
    query string (PREPARE, then BEGIN; EXECUTE; COMMIT per batch), so no client, driver or GIL sits
    between batches; `streams` connections at once, as many as the sink's writers. With `decode`, the
    same decode threads as `sink_rate` run meanwhile: on a machine with few cores they take CPU from the
    server too, and the ratio should show only what the client costs. PostgreSQL only; suggestion rows/s."""
    import re

    from tagger.db.arrays import array_literal
    from tagger.worker.sink import _WRITE

    job, batches = _sink_batches(sessions, storage_url, tag_ids, rows // PER_IMAGE, batch)
    position = {name: f"${i}" for i, (name, _) in enumerate(_WRITE_PARAMS, 1)}
    statement = re.sub(r"%\((\w+)\)[sb]", lambda m: position[m.group(1)], _WRITE)
    types = ", ".join(t for _, t in _WRITE_PARAMS)

    def quoted(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    calls = []
    for b in batches:
        args = [
            quoted(job),
            str(version_id),
            quoted(array_literal(sorted(b.image_ids))),
            quoted(array_literal(b.row_images)),
            quoted(array_literal(b.row_tags)),
            quoted(array_literal(b.row_probs)),
            "'{}'",
            "'{}'",
            "'{}'",
            "'{}'",
            "NULL",  # no vectors: the replay is the ceiling of the sink without them
        ]
        calls.append(f"BEGIN; EXECUTE bench_write({', '.join(args)}); COMMIT;")
    from tagger.db import make_engine

    engine = make_engine(sessions.kw["bind"].url.render_as_string(hide_password=False), pool_size=streams)
    with ExitStack() as stack:
        stack.callback(engine.dispose)
        raws = []
        for _ in range(streams):
            conn = stack.enter_context(engine.connect())
            raw = conn.execution_options(isolation_level="AUTOCOMMIT").connection.driver_connection
            raw.execute(f"PREPARE bench_write({types}) AS {statement}")  # type: ignore[union-attr]
            raws.append(raw)
        scripts = ["\n".join(calls[i::streams]) for i in range(streams)]
        replays = [
            threading.Thread(target=raw.execute, args=(script,))  # type: ignore[union-attr]
            for raw, script in zip(raws, scripts, strict=True)
        ]
        seconds = timed_threads(replays, decode)
        for raw in raws:
            raw.execute("DEALLOCATE bench_write")  # type: ignore[union-attr]
    return sum(len(b.row_images) for b in batches) / seconds


def database_rate(sessions: Any, storage_url: str, version_id: int, tag_ids: list[int], rows: int, batch: int) -> float:
    """The database's own rate for the same rows: INSERT ... SELECT FROM unnest (PostgreSQL) or executemany
    (SQLite) into `suggestions`, one transaction per batch, one writer, no fence and no job bookkeeping."""
    _, batches = _sink_batches(sessions, storage_url, tag_ids, rows // PER_IMAGE, batch)
    engine = sessions.kw["bind"]
    start = time.perf_counter()
    if engine.dialect.name == "postgresql":
        sql = (
            "INSERT INTO suggestions (image_id, tag_id, model_version_id, probability, created_at) "
            "SELECT i, t, %(v)s, p, now() FROM unnest(%(i)s::bigint[], %(t)s::int[], %(p)s::float8[]) AS r(i, t, p)"
        )
        from tagger.db.arrays import array_literal

        for b in batches:  # the arrays travel as the sink sends them: one text literal each
            with engine.connect() as conn:
                raw = conn.execution_options(isolation_level="AUTOCOMMIT").connection.driver_connection
                values = {"i": b.row_images, "t": b.row_tags, "p": b.row_probs}
                raw.execute(sql, {"v": version_id} | {k: array_literal(v) for k, v in values.items()})
    else:
        from sqlalchemy import insert

        from tagger.db.schema import Suggestion

        now = datetime.now(UTC)
        for b in batches:
            with sessions() as session, session.begin():
                session.execute(
                    insert(Suggestion),
                    [
                        {
                            "image_id": i,
                            "tag_id": t,
                            "model_version_id": version_id,
                            "probability": p,
                            "created_at": now,
                        }
                        for i, t, p in zip(b.row_images, b.row_tags, b.row_probs, strict=True)
                    ],
                )
    return sum(len(b.row_images) for b in batches) / (time.perf_counter() - start)


def broker_rate(app: Any, messages: int, batch: int) -> tuple[float, float]:
    """Task messages of a batch's shape (`batch` image ids, JSON) through Redis: published/s, then
    consumed+acked/s by one consumer holding one unacked message at a time (a worker's prefetch)."""
    from kombu import Consumer, Queue

    queue = Queue("bench.broker")
    ids = list(range(1_000_000, 1_000_000 + batch))
    with app.connection_for_write() as conn:
        queue(conn.default_channel).declare()
        with app.producer_or_acquire() as producer:
            start = time.perf_counter()
            for _ in range(messages):
                app.send_task("tagger.tag_batch", args=["0" * 32, ids], queue="bench.broker", producer=producer)
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


def register(sessions: Any, settings: Any, arch: str, tags: list[str], size: int, *, activate: bool) -> int:
    """A random model whose head suggests about PER_IMAGE tags per image, as a trained one would."""
    import torch

    from tagger import registry
    from tagger.model import artifact
    from tagger.model.architectures import build_model, head_parameters
    from tagger.model.meta import ArtifactMeta, new_version
    from tagger.storage import open_storage

    model = build_model(arch, len(tags))
    _, bias = head_parameters(model)
    with torch.no_grad():
        bias.fill_(-6.0)
        bias[:PER_IMAGE] = 6.0
    meta = ArtifactMeta(version=new_version("bench"), arch=arch, tags=tags, input_size=size)
    store = open_storage(settings.model_store)
    meta = artifact.save(model, meta, store)
    with sessions() as session, session.begin():
        row = registry.register(session, meta, uri=f"{store.url}/{meta.version}")
        if activate:
            registry.activate(session, meta.version)
        return int(row.id)


def main() -> int:
    args = parse_args()
    import torch

    from tagger import registry
    from tagger.broker.config import make_producer_app
    from tagger.broker.embedded import EmbeddedRedis
    from tagger.broker.send import celery_sender
    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.jobs.producer import submit
    from tagger.jobs.progress import summary, wait
    from tagger.model.device import pick_device
    from tagger.settings import Settings
    from tagger.worker.local import LocalWorkers
    from tagger.worker.shape import worker_shape
    from tagger_client.contract import JobSpec

    work = args.dir or Path(tempfile.mkdtemp(prefix="tagger-bench-"))
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "args": {k: str(v) for k, v in vars(args).items()},
        "suggestions_per_image": PER_IMAGE,
    }
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    say(f"[1/8] writing {args.images} 1080p-class stills and {args.overhead_images} small ones to {work}")
    started = time.perf_counter()
    keys = write_archive(work / "archive", args.images)
    small_keys = write_archive(work / "small", args.overhead_images, (SMALL,), seed=11)
    results["archive_seconds"] = time.perf_counter() - started
    results["mean_file_kb"] = round(sum((work / "archive" / k).stat().st_size for k in keys) / len(keys) / 1024, 1)

    say("[2/8] ceilings: decode (draft, full, device, other decoders) and model only")
    results["decode_draft"] = decode_rate(work / "archive", keys, args.size, args.threads, draft=True)
    results["decode_pillow"] = decode_rate(
        work / "archive", keys, args.size, args.threads, draft=True, pillow_only=True
    )
    results["decode_full"] = decode_rate(
        work / "archive", keys[: args.naive_images], args.size, args.threads, draft=False
    )
    results["decode_device"] = device_decode_rate(work / "archive", keys, args.size, args.device, args.batch)
    results["decode_other"] = other_decoder_rates(work / "archive", keys, args.size, args.threads)
    ceiling = ModelCeiling(args.device)
    first = ceiling.measure(args.arch, args.tags, args.size, args.batch, max(args.images, 256))
    results["model_only"], results["model_only_ways"] = first["best"], first

    with ExitStack() as stack:
        redis = stack.enter_context(EmbeddedRedis())
        if args.database == "postgresql":
            from tests.support.servers import Postgres

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
        version_id = register(sessions, settings, args.arch, tags, args.size, activate=True)
        with sessions() as session:
            tag_ids = list(registry.tag_ids(session, tags).values())
        send = celery_sender(make_producer_app(settings, redis.url))
        url = (work / "archive").as_uri()

        def run(job_keys: list[str], batch: int, *, storage: str = url, priority: str = "bulk") -> float:
            """Images/s from the submission to the job's end, as its user sees it."""
            submitted = datetime.now(UTC)
            spec = JobSpec.new(keys=job_keys, storage_url=storage, batch_size=batch, priority=priority)
            job = submit(sessions, send, spec, settings)
            done = wait(sessions, job.job_id, timeout=3600, show_progress=False)
            assert done.finished_at is not None
            finished = done.finished_at if done.finished_at.tzinfo else done.finished_at.replace(tzinfo=UTC)
            return done.done / max(1e-6, (finished - submitted).total_seconds())

        say(f"[3/8] end to end: {args.images} stills through {args.workers} worker(s), batch {args.batch}")
        with LocalWorkers(settings, count=args.workers, log_file=work / "workers.log"):
            warm = linked_copy(work / "archive", "archive-warm")
            run(keys[: args.batch * 2], args.batch, storage=warm.as_uri())  # the model loads in every worker
            rounds = []
            for i in range(args.rounds):  # each run between two model-only measurements: a drifting machine
                before = ceiling.measure(args.arch, args.tags, args.size, args.batch, max(args.images, 256))["best"]
                fresh = linked_copy(work / "archive", f"archive-{i}").as_uri()
                e2e = run(keys, args.batch, storage=fresh)
                after = ceiling.measure(args.arch, args.tags, args.size, args.batch, max(args.images, 256))["best"]
                rounds.append({"model_before": before, "end_to_end": e2e, "model_after": after})
                say(f"      round {i + 1}: {e2e:,.1f} images/s, {e2e / ((before + after) / 2):.0%} of model only")
            results["rounds"] = rounds
            results["end_to_end"] = statistics.median(r["end_to_end"] for r in rounds)
            results["model_only_rounds"] = statistics.median((r["model_before"] + r["model_after"]) / 2 for r in rounds)
            results["end_to_end_of_model"] = statistics.median(
                r["end_to_end"] / ((r["model_before"] + r["model_after"]) / 2) for r in rounds
            )

            say(f"[5/8] interactive latency: {args.interactive} single images during a bulk job")
            bulk = submit(sessions, send, JobSpec.new(keys=keys, storage_url=url, batch_size=args.batch), settings)
            latencies = []
            for key in keys[: args.interactive]:
                sent = time.perf_counter()
                one = submit(sessions, send, JobSpec.new(keys=[key], storage_url=url, priority="interactive"), settings)
                while not summary(sessions, one.job_id).state.finished:
                    time.sleep(0.01)
                latencies.append(time.perf_counter() - sent)
            wait(sessions, bulk.job_id, timeout=3600, show_progress=False)
            results["interactive_p50_s"] = statistics.median(latencies)
            results["interactive_p95_s"] = sorted(latencies)[max(0, int(round(0.95 * len(latencies))) - 1)]

        say(f"[4/8] naive baseline: {args.naive_images} stills, one per task, batch 1, full decode")
        naive = settings.replace(jpeg_draft=0)
        with LocalWorkers(naive, count=args.workers, log_file=work / "workers.log"):
            run(keys[:2], 1)
            results["naive"] = run(keys[: args.naive_images], 1)

        say(f"[6/8] sink: {args.sink_rows} suggestion rows on {args.database}; database and broker ceilings")
        # As many writers as the worker writes batches at once: its task threads, or one per pool process.
        on_gpu = pick_device(args.device).type == "cuda"
        writers = worker_shape(settings, gpu=on_gpu, concurrency=args.concurrency)[1]
        sink_url = (work / "sink").as_uri()
        results["sink_writers"] = writers
        decoding = (work / "archive", keys, args.size, min(args.threads, 8))
        sink_rounds = []

        def sink_beside_decode(width: int = 0) -> float:
            return sink_rate(
                sessions,
                sink_url,
                version_id,
                tag_ids,
                args.sink_rows,
                batch=args.batch,
                writers=writers,
                decode=decoding,
                width=width,
            )

        for _ in range(args.rounds):  # the sink and its ceiling in turn, beside decode threads and alone
            measured: dict[str, float] = {}
            measured["sink_rows_per_s"] = sink_beside_decode()
            if args.database == "postgresql":
                measured["database_write_beside_decode_rows_per_s"] = database_write_rate(
                    sessions,
                    sink_url,
                    version_id,
                    tag_ids,
                    args.sink_rows,
                    args.batch,
                    decode=decoding,
                    streams=writers,
                )
            measured["sink_vectors_rows_per_s"] = sink_beside_decode(VECTOR_WIDTH)
            measured["sink_alone_rows_per_s"] = sink_rate(
                sessions, sink_url, version_id, tag_ids, args.sink_rows, batch=args.batch, writers=writers, decode=None
            )
            if args.database == "postgresql":
                measured["database_write_rows_per_s"] = database_write_rate(
                    sessions, sink_url, version_id, tag_ids, args.sink_rows, args.batch, streams=writers
                )
            sink_rounds.append(measured)
        results["sink_rounds"] = sink_rounds
        for key in sink_rounds[0]:
            results[key] = statistics.median(r[key] for r in sink_rounds)
        if args.database == "postgresql":
            results["sink_of_database_beside_decode"] = statistics.median(
                r["sink_rows_per_s"] / r["database_write_beside_decode_rows_per_s"] for r in sink_rounds
            )
            results["sink_alone_of_database"] = statistics.median(
                r["sink_alone_rows_per_s"] / r["database_write_rows_per_s"] for r in sink_rounds
            )
        results["sink_vectors_of_sink"] = statistics.median(
            r["sink_vectors_rows_per_s"] / r["sink_rows_per_s"] for r in sink_rounds
        )
        results["database_rows_per_s"] = database_rate(
            sessions, sink_url, version_id, tag_ids, args.sink_rows, args.batch
        )
        producer_app = make_producer_app(settings, redis.url)
        results["broker_publish_per_s"], results["broker_consume_per_s"] = broker_rate(
            producer_app, args.broker_messages, args.batch
        )

        say(
            f"[7/8] system overhead: {args.overhead_images} {SMALL[0]}x{SMALL[1]} stills, "
            f"{args.overhead_arch} at {args.overhead_size} px"
        )

        def stages() -> dict[str, float]:
            """The overhead scenario's stages, each alone: images/s, and the bound they allow together."""
            decode = decode_rate(work / "small", small_keys, args.overhead_size, args.threads, draft=True)
            model = ceiling.measure(
                args.overhead_arch, args.tags, args.overhead_size, args.batch, args.overhead_images
            )["best"]
            sink = (
                sink_rate(
                    sessions, sink_url, version_id, tag_ids, 50_000, batch=args.batch, writers=writers, decode=None
                )
                / PER_IMAGE
            )
            return {"decode": decode, "model": model, "sink": sink, "bound": 1 / (1 / decode + 1 / model + 1 / sink)}

        register(sessions, settings, args.overhead_arch, tags, args.overhead_size, activate=True)
        overhead_rounds = []
        with LocalWorkers(settings, count=args.workers, log_file=work / "workers.log"):
            warm_small = linked_copy(work / "small", "small-warm").as_uri()
            run(small_keys[: args.batch * 2], args.batch, storage=warm_small)
            # A job's fixed cost on idle workers: one batch, from the submission to the job's end.
            one_batch = [
                args.batch / run(small_keys[j * args.batch : (j + 1) * args.batch], args.batch, storage=warm_small)
                for j in range(2, 5)
            ]
            for i in range(args.rounds):  # each run between two measurements of its stages alone
                stages_before = stages()
                e2e = run(small_keys, args.batch, storage=linked_copy(work / "small", f"small-{i}").as_uri())
                stages_after = stages()
                bound = (stages_before["bound"] + stages_after["bound"]) / 2
                overhead_rounds.append(
                    {"before": stages_before, "end_to_end": e2e, "after": stages_after, "bound": bound}
                )
                say(f"      round {i + 1}: {e2e:,.1f} images/s, {e2e / bound:.0%} of the bound")
        results["overhead"] = {
            "rounds": overhead_rounds,
            **{
                f"{stage}_per_s": statistics.median(
                    (r["before"][stage] + r["after"][stage]) / 2 for r in overhead_rounds
                )
                for stage in ("decode", "model", "sink")
            },
            "bound_per_s": statistics.median(r["bound"] for r in overhead_rounds),
            "end_to_end": statistics.median(r["end_to_end"] for r in overhead_rounds),
            "of_bound": statistics.median(r["end_to_end"] / r["bound"] for r in overhead_rounds),
            "one_batch_job_s": statistics.median(one_batch),
        }
        results["overhead"]["sink_images_per_s"] = results["overhead"].pop("sink_per_s")

        if args.scale:
            counts = [int(n) for n in args.scale.split(",")]
            say(f"[8/8] scale-out: {counts} worker processes, {args.arch} at {args.scale_size} px")
            register(sessions, settings, args.arch, tags, args.scale_size, activate=True)
            results["scale_out"] = {}
            for n in counts:
                with LocalWorkers(settings, count=n, log_file=work / "workers.log"):
                    run(keys[: args.batch * 2 * n], args.batch)
                    results["scale_out"][n] = run(keys, args.batch)
        engine.dispose()
    ceiling.close()

    report(results)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


def _sink_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The sink against its ceilings, medians of the rounds: the database replaying the sink's own write
    with no client between batches (beside the same decode threads, and alone), and a bare INSERT of the
    same rows (what the fence and counters cost)."""
    bare = r["database_rows_per_s"]
    beside, alone = r.get("database_write_beside_decode_rows_per_s"), r.get("database_write_rows_per_s")
    per_round = ", ".join(
        f"{x['sink_rows_per_s'] / x['database_write_beside_decode_rows_per_s']:.0%}"
        for x in r["sink_rounds"]
        if "database_write_beside_decode_rows_per_s" in x
    )
    rows = [
        (
            f"sink: {r['sink_writers']} writer thread(s) beside busy decode threads",
            f"{r['sink_rows_per_s']:,.0f} rows/s",
            (
                f"**{r['sink_of_database_beside_decode']:.0%}** of the database's own rate for this write beside "
                f"the same decode threads (rounds: {per_round}); "
                if beside
                else ""
            )
            + f"{r['sink_rows_per_s'] / bare:.0%} of a bare INSERT",
        ),
        (
            f"sink with each image's {VECTOR_WIDTH}-dimensional embedding, beside the same decode threads",
            f"{r['sink_vectors_rows_per_s']:,.0f} rows/s",
            f"**{r['sink_vectors_of_sink']:.0%}** of the sink without them (target >= 80%)",
        ),
        (
            f"sink: {r['sink_writers']} writer thread(s) alone",
            f"{r['sink_alone_rows_per_s']:,.0f} rows/s",
            (f"{r['sink_alone_of_database']:.0%} of the database's own rate for this write alone; " if alone else "")
            + f"{r['sink_alone_rows_per_s'] / bare:.0%} of a bare INSERT",
        ),
    ]
    if beside and alone:
        rows += [
            (
                f"database: the sink's write replayed by the server on {r['sink_writers']} connection(s), "
                "beside the same decode threads",
                f"{beside:,.0f} rows/s",
                "",
            ),
            ("database: the same replay alone", f"{alone:,.0f} rows/s", f"{alone / bare:.0%} of a bare INSERT"),
        ]
    rows.append(("database: the same rows, INSERT only, no fence or counters", f"{bare:,.0f} rows/s", ""))
    return rows


def report(r: dict[str, Any]) -> None:
    args = r["args"]
    on_device = args["decoder"] == "device" or (args["decoder"] == "auto" and r["gpu"])
    decode_ceiling = r["decode_draft"] + r["decode_device"] if on_device else r["decode_draft"]
    model_only = r["model_only_rounds"]  # measured around the end-to-end runs
    serial = 1 / (1 / r["decode_draft"] + 1 / model_only + PER_IMAGE / r["sink_alone_rows_per_s"])
    ceiling = min(decode_ceiling, model_only)
    e2e = r["end_to_end"]
    o = r["overhead"]
    e2e_rounds = ", ".join(f"{x['end_to_end'] / ((x['model_before'] + x['model_after']) / 2):.0%}" for x in r["rounds"])
    overhead_rounds = ", ".join(f"{x['end_to_end'] / x['bound']:.0%}" for x in o["rounds"])
    rows = [
        (
            "decode, CPU: the worker's (simplejpeg scaled, Pillow checks), threads",
            f"{r['decode_draft']:,.1f}",
            "in use",
        ),
        (
            "decode, CPU: Pillow + draft alone",
            f"{r['decode_pillow']:,.1f}",
            f"worker's is {r['decode_draft'] / r['decode_pillow']:.2f}x",
        ),
        ("decode, CPU: full (no draft)", f"{r['decode_full']:,.1f}", ""),
        *[
            (
                f"decode, CPU: {name} (+ the same resize)",
                f"{rate:,.1f}",
                f"{rate / r['decode_draft']:.2f}x the worker's",
            )
            for name, rate in r["decode_other"].items()
        ],
        (
            f"decode, device ({'nvJPEG' if r['gpu'] else 'libjpeg-turbo'} via TorchCodec, batched, resized on device)",
            f"{r['decode_device']:,.1f}",
            "in use" if on_device else "not in use (decoder=cpu)",
        ),
        (
            "decode ceiling of this configuration",
            f"{decode_ceiling:,.1f}",
            "CPU + device decoders together" if on_device else "CPU decoder",
        ),
        (
            "model only, before and after each end-to-end run",
            f"{model_only:,.1f}",
            f"first measured {r['model_only']:,.1f}, with the decode ceilings",
        ),
        (
            f"**end to end** (workers, Redis, database), median of {len(r['rounds'])}",
            f"**{e2e:,.1f}**",
            f"**{r['end_to_end_of_model']:.0%} of model only** (rounds: {e2e_rounds}); "
            f"{e2e / ceiling:.0%} of min(decode, model); {e2e / decode_ceiling:.0%} of decode; "
            f"{e2e / r['naive']:.1f}x naive",
        ),
        *(
            []
            if r["gpu"]
            else [
                (
                    "the bound its stages allow on these shared cores: 1 / (decode + model + sink per image)",
                    f"{serial:,.1f}",
                    f"end to end is {e2e / serial:.0%} of it",
                )
            ]
        ),
        ("naive: 1 image per task, batch 1, full decode", f"{r['naive']:,.1f}", ""),
        (
            "interactive image during a bulk job",
            f"p50 {r['interactive_p50_s']:.2f} s, p95 {r['interactive_p95_s']:.2f} s",
            "",
        ),
        *_sink_rows(r),
        ("broker: task messages published", f"{r['broker_publish_per_s']:,.0f} msgs/s", ""),
        (
            "broker: consumed + acked, one consumer, prefetch 1",
            f"{r['broker_consume_per_s']:,.0f} msgs/s",
            f"= {r['broker_consume_per_s'] * int(args['batch']):,.0f} images/s at batch {args['batch']}",
        ),
        (
            "overhead scenario: stages alone (decode / model / sink)",
            f"{o['decode_per_s']:,.0f} / {o['model_per_s']:,.0f} / {o['sink_images_per_s']:,.0f}",
            f"s/image {1 / o['decode_per_s'] * 1000:.2f} + {1 / o['model_per_s'] * 1000:.2f} + "
            f"{1 / o['sink_images_per_s'] * 1000:.2f} ms: bound {o['bound_per_s']:,.0f} images/s",
        ),
        (
            f"**overhead scenario: end to end**, median of {len(o['rounds'])}",
            f"**{o['end_to_end']:,.1f}**",
            f"**{o['of_bound']:.0%}** of the bound its own stages allow, measured before and after each run "
            f"(rounds: {overhead_rounds})",
        ),
        (
            f"overhead scenario: a job of one batch ({args['batch']} stills) on idle workers",
            f"{o['one_batch_job_s'] * 1000:,.0f} ms",
            "a job's fixed cost, submission to end: "
            f"{o['one_batch_job_s'] * o['end_to_end'] / int(args['overhead_images']):.1%} of the scenario's run",
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
    print(
        f"\n{r['date']} | {r['machine']} | GPU: {r['gpu'] or 'none'} | mean still {r['mean_file_kb']} KB | "
        f"archive written in {r['archive_seconds']:.0f} s"
    )
    print("| what | rate (images/s unless said) | ratio |\n|---|---:|---|")
    for name, rate, ratio in rows:
        print(f"| {name} | {rate} | {ratio} |")


if __name__ == "__main__":
    raise SystemExit(main())
