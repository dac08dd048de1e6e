"""A `tagger worker`'s shape: which pool it runs, and how many batches at once."""

from __future__ import annotations

import os

from tagger.settings import Settings


def available_cores() -> int:
    """The cores this process may use (affinity, cpusets), not the machine's."""
    return len(os.sched_getaffinity(0)) or 1


def worker_shape(settings: Settings, *, gpu: bool, concurrency: int = 0) -> tuple[str, int]:
    """A `tagger worker`'s pool and how many batches it runs at once: `concurrency`, else the setting, else
    3 task threads on a GPU and one process per core on CPU (each with one torch thread: measured on 2
    cores against one process with 2 threads, model-only 0.9-1.1x for ResNet-18 at 224 px and 1.8x for a
    small model, BENCHMARKS.md)."""
    pool = settings.worker_pool if settings.worker_pool != "auto" else ("threads" if gpu else "prefork")
    return pool, concurrency or settings.worker_concurrency or (3 if pool == "threads" else available_cores())
