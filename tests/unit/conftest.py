"""The unit tier's guard: a unit test starts no process and uses no server, or it fails.

What a unit test may do: run pure code in this process, write files under tmp_path, and open a SQLite
file there (SQLite is a library inside this process, not a server; no port, no process). What it may not:
start a process by any route (subprocess, multiprocessing, os.fork/spawn/exec/system: each raises here,
so EmbeddedRedis, LocalWorkers or a `tagger` command fail the test that starts them), or use a server
fixture from tests/conftest.py, directly or through another fixture (the `settings`/`sessions` family
is parametrised over PostgreSQL). tests/meta/test_tiers.py checks this guard fails what it should.
"""

from __future__ import annotations

import _posixsubprocess  # the C module behind subprocess and multiprocessing
import os
import subprocess
from collections.abc import Iterator

import pytest
import torch  # noqa: F401

# torch's first import runs a helper process of its own (a platform probe): not a test's doing, so it is
# imported here, before any guard is up, rather than inside whichever unit test first reaches code that
# imports it lazily (`tagger train` refusing its arguments, for one).

# The fixtures that start or use a real server, or that are parametrised over one.
SERVER_FIXTURES = frozenset({"postgres", "redis_url", "s3", "database_url", "settings", "sessions", "engine"})

# Every way this process could start another one.
_OS_STARTS = ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "popen", "execv", "execve", "execvp")


class TierError(AssertionError):
    """A unit test tried to start a process or use a server."""


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Refuse a unit test whose fixture closure holds a server fixture, before any fixture starts it."""
    used = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    if used:
        raise TierError(
            f"{item.nodeid} uses the server fixture(s) {sorted(used)}: a unit test uses no server "
            "(move it to tests/integration/)"
        )


@pytest.fixture(autouse=True)
def _no_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """While a unit test runs, starting a process raises TierError (where the call was made)."""

    def refuse(what: str):  # type: ignore[no-untyped-def]
        def start(*args: object, **kwargs: object) -> None:
            raise TierError(f"a unit test started a process ({what}): it belongs in tests/system/")

        return start

    # Popen._execute_child starts every subprocess child (run, check_output, Popen); fork_exec is what it and
    # multiprocessing's spawn call underneath.
    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse("subprocess"))
    monkeypatch.setattr(_posixsubprocess, "fork_exec", refuse("multiprocessing or _posixsubprocess"))
    for name in _OS_STARTS:
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refuse(f"os.{name}"))
    yield
