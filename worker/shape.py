"""A `tagger worker`'s shape: which pool it runs, how many batches at once, and how many database
connections that takes (the connection budget `tagger config` prints)."""

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


# PostgreSQL connections, at most, that each part of a deployment holds (the pools are sized to these).
COMMAND_CONNECTIONS = 2  # a command (`tagger tag --wait`, `jobs wait`, `train`): its reads and its follower
SERVE_CONNECTIONS = 10  # `tagger serve`: a pool of 5 and 5 more at its busiest
MAIN_PROCESS_CONNECTIONS = 2  # a worker's main process: its readiness checks and its healer


def connections_per_process(tasks: int) -> int:
    """Connections one worker process may hold when `tasks` batches run in it at once (1 in a prefork
    process): one claim-and-write connection per batch, one connection for the rest per batch, and one for
    its webhook deliveries."""
    return 2 * tasks + 1


def worker_connections(settings: Settings, *, gpu: bool, concurrency: int = 0) -> int:
    """Connections one `tagger worker` of this shape may hold: its pool processes', and two more in its main
    process (the readiness checks', and the healer's, worker/healer.py)."""
    pool, batches = worker_shape(settings, gpu=gpu, concurrency=concurrency)
    if pool == "threads":
        return connections_per_process(batches) + MAIN_PROCESS_CONNECTIONS
    return batches * connections_per_process(1) + MAIN_PROCESS_CONNECTIONS
