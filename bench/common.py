"""What the benchmarks share: a database to run against, and a process tree's resident memory and CPU time."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import psutil


def database(stack: ExitStack, kind: str, folder: Path, name: str) -> str:
    """The URL of an empty database: a PostgreSQL started for the run (destroyed with `stack`), or a SQLite file
    in `folder`."""
    if kind == "sqlite":
        return f"sqlite:///{folder / (name + '.db')}"
    from tests.support.servers import Postgres

    server = Postgres().start()
    stack.callback(server.destroy)
    return server.create_database(name)


def _sum(pid: int, measure: Callable[[psutil.Process], float]) -> float:
    """`measure` summed over `pid` and every live descendant (a prefork worker's pool processes)."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in tree:
        try:
            total += measure(proc)
        except psutil.NoSuchProcess:  # it exited while we looked
            continue
    return total


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants, in MB."""
    return _sum(pid, lambda p: p.memory_info().rss) / 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants."""
    return _sum(pid, lambda p: sum(p.cpu_times()[:2]))


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` alone (a worker's main process, without its pool)."""
    try:
        return float(sum(psutil.Process(pid).cpu_times()[:2]))
    except psutil.NoSuchProcess:
        return 0.0
