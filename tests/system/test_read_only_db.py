"""A SQLite database on read-only media (here a real read-only bind mount): every read command works on it,
and a command that writes says why it cannot, instead of "cannot reach the database"."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.processes import child_env
from tests.conftest import fill_job, make_model, make_settings, new_job, write_stills


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """`tmp_path/ro`: a read-only bind mount of `tmp_path/rw` (as root; the suite runs as root)."""
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    yield ro
    subprocess.run(["umount", str(ro)], check=False)


def _tagger(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tagger", *argv], env=env, capture_output=True, text=True, timeout=120)


def test_read_commands_work_on_a_read_only_sqlite_file(tmp_path: Path, read_only: Path) -> None:
    rw = tmp_path / "rw"
    settings = make_settings(rw, f"sqlite:///{rw / 'tagger.db'}")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    make_model(settings, sessions)
    keys = write_stills(tmp_path / "archive", 2)
    job = new_job(sessions, (tmp_path / "archive").as_uri()).job_id
    fill_job(sessions, job, keys, (tmp_path / "archive").as_uri())
    engine.dispose()
    for cmd in (["mount", "--bind", str(rw), str(read_only)], ["mount", "-o", "remount,ro,bind", str(read_only)]):
        subprocess.run(cmd, check=True)
    assert not os.access(read_only / "tagger.db", os.W_OK)
    env = child_env(settings.replace(database_url=f"sqlite:///{read_only / 'tagger.db'}", var_dir=tmp_path / "var"))
    said = {}
    for argv in (
        ["jobs", "show", job[:8]],
        ["models", "list"],
        ["results", keys[0], "--storage", str(tmp_path / "archive")],
        ["export", "--format", "jsonl"],
        ["labels", "stats"],
    ):
        done = _tagger(env, *argv)
        assert done.returncode == 0, f"tagger {' '.join(argv)}: {done.stderr[-2000:]}"
        said[argv[0]] = done.stdout
    assert "not tagged yet" in said["results"] and job in said["jobs"]
    wrote = _tagger(env, "labels", "add", keys[0], "night", "--storage", str(tmp_path / "archive"))
    assert wrote.returncode == 2
    assert "can only be read" in wrote.stderr and "is not writable" in wrote.stderr
    assert sorted(p.name for p in read_only.iterdir()) == sorted(p.name for p in rw.iterdir())  # nothing created
