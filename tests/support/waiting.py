"""Small helpers the process-level tests share: wait for a condition, find a process's children."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def until(ok: Callable[[], object], timeout: float, log: Path | None = None) -> None:
    """Poll `ok` every 0.2 s until it is true; fail after `timeout` seconds with the tail of `log`."""
    deadline = time.monotonic() + timeout
    while not ok():
        tail = log.read_text()[-3000:] if log and log.exists() else ""
        assert time.monotonic() < deadline, f"not within {timeout}s" + (f"; workers log:\n{tail}" if log else "")
        time.sleep(0.2)


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid`, forked from any of its threads (sorted pids)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone while we looked
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`: its children, theirs, and so on."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            found.add(child)
            todo.append(child)
    return found
