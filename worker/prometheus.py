"""A worker's Prometheus metrics, recorded where the work happens (task threads, pool processes).

`tagger worker` points PROMETHEUS_MULTIPROC_DIR at a folder of its own before any pool process starts,
so prometheus_client's multiprocess mode sums every process's values when the worker's HTTP endpoint
(`tagger.worker.health`) is scraped: correct under the prefork pool and the threads pool alike.
Elsewhere (tests calling `run_batch`, the benchmark) the same calls record in memory and are never served.

Units: seconds and images; every name starts with `tagger_`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque

from prometheus_client import Counter, Gauge, Histogram

# Per batch, from the worker's own clock: the claim (job read, pending images, attempt counted), the
# load (every image fetched and decoded, in parallel threads), inference, and the write (one transaction).
STAGE_SECONDS = Histogram(
    "tagger_stage_seconds",
    "Seconds one batch spent in each stage of the worker: claim, load (fetch + decode), inference, write.",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
# Per image, inside the load stage: reading the bytes from storage, and decoding them to the model's input.
IMAGE_SECONDS = Histogram(
    "tagger_image_seconds",
    "Seconds one image spent being fetched from storage or decoded (per image, inside the load stage).",
    ["step"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
)
IMAGES = Counter(
    "tagger_images_total",
    "Images this worker gave an outcome: tagged, failed (with a reason recorded) or skipped (cancelled job).",
    ["outcome"],
)
FAILURES = Counter(
    "tagger_image_failures_total",
    "Images that failed, by class of reason: image (refused or corrupt), storage (missing, denied), "
    "transient (given up after retries), memory, attempts (the worker died on it each time).",
    ["reason"],
)
BATCHES = Counter("tagger_batches_total", "Batches this worker tagged and wrote.")
IN_FLIGHT = Gauge(
    "tagger_batches_in_flight", "Batches being claimed, loaded, inferred or written now.", multiprocess_mode="livesum"
)
LAST_BATCH = Gauge(
    "tagger_last_batch_timestamp_seconds",
    "Unix time at which this worker last wrote a batch.",
    multiprocess_mode="livemax",
)
RECENT_RATE = Gauge(
    "tagger_recent_images_per_second",
    "Images written per second over the last minute.",
    multiprocess_mode="livesum",
)
MODEL_SERVED = Gauge(
    "tagger_model_served",
    "Worker processes serving each model version (1 per process while it serves it).",
    ["version"],
    multiprocess_mode="livesum",
)
MODEL_LOADED = Gauge(
    "tagger_model_loaded", "1 once a process of this worker has a model to serve.", multiprocess_mode="livemax"
)
MODEL_SWAPS = Counter("tagger_model_swaps_total", "Model versions loaded and swapped in between batches.")
MODEL_REFUSALS = Counter(
    "tagger_model_refusals_total", "Model versions refused (cannot load, fails validation); the old one kept serving."
)
GPU_MEMORY = Gauge(
    "tagger_gpu_memory_allocated_bytes",
    "Bytes of GPU memory PyTorch holds in this worker (after each batch; absent on CPU).",
    multiprocess_mode="livesum",
)
GPU_UTILIZATION = Gauge(
    "tagger_gpu_utilization_ratio",
    "Share of the last sample period the GPU was busy, 0-1, as NVML reports it (after each batch; CUDA with "
    "nvidia-ml-py installed).",
    multiprocess_mode="livemax",
)

RATE_WINDOW_SECONDS = 60.0
_recent: deque[tuple[float, int]] = deque()
_recent_lock = threading.Lock()


def batch_written(images: int, *, now: float | None = None) -> None:
    """A batch's write committed: its images count towards the last minute's rate and its time is the last."""
    now = time.time() if now is None else now
    BATCHES.inc()
    LAST_BATCH.set(now)
    with _recent_lock:
        _recent.append((now, images))
        while _recent and _recent[0][0] < now - RATE_WINDOW_SECONDS:
            _recent.popleft()
        RECENT_RATE.set(sum(n for _, n in _recent) / RATE_WINDOW_SECONDS)


def served(version: str, previous: str | None) -> None:
    """This process now serves `version` (a first load, or a swap from `previous`)."""
    if previous is not None:
        MODEL_SERVED.labels(previous).dec()
        MODEL_SWAPS.inc()
    MODEL_SERVED.labels(version).inc()
    MODEL_LOADED.set(1)


_utilization_read = 0.0  # when this process last asked NVML (monotonic seconds)
UTILIZATION_EVERY = 5.0  # NVML's utilisation is a sample over its last period anyway; not on every batch


def gpu_memory(device_type: str) -> None:
    """Record the GPU memory PyTorch holds (every batch) and the GPU's utilisation (every few seconds: each
    read goes through NVML), where the model runs on CUDA."""
    global _utilization_read
    if device_type == "cuda":
        import torch

        GPU_MEMORY.set(torch.cuda.memory_allocated())
        now = time.monotonic()
        if now - _utilization_read >= UTILIZATION_EVERY:
            _utilization_read = now
            with contextlib.suppress(Exception):  # no NVML (nvidia-ml-py) on this host: memory only
                GPU_UTILIZATION.set(torch.cuda.utilization() / 100.0)


def process_exited() -> None:
    """A pool process leaves: its live gauges stop counting (multiprocess mode only)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
