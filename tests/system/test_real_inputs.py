"""Inputs people really have, through the real `tagger` command: odd file names, NAS clutter, key files
from `find` or Windows, spreadsheets, mistyped sources, and commands that must refuse before starting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tagger.db import make_engine, make_sessionmaker
from tagger.db.schema import Job, JobItem
from tagger.settings import Settings
from tests.conftest import make_settings, write_stills
from tests.support.cli import tagger
from tests.support.waiting import descendants

# Names a listing really meets that cannot be keys, and the readable form their reason must show.
BAD_NAMES: dict[bytes, str] = {
    b"caf\xe9.jpg": "caf\\xe9.jpg",  # Latin-1 from an old camera or a Windows share
    b"tab\there.jpg": "tab\\there.jpg",
    b"new\nline.jpg": "new\\nline.jpg",
    b"del\x7f.jpg": "del\\x7f.jpg",
    b"back\\slash.jpg": "back\\\\slash.jpg",
}


def _items(settings: Settings, job_id: str) -> dict[str, int]:
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as session:
        states = dict(
            session.execute(
                select(JobItem.state, func.count()).where(JobItem.job_id == job_id).group_by(JobItem.state)
            ).all()
        )
    engine.dispose()
    return states


def test_one_bad_entry_fails_alone_and_clutter_is_counted(local: Settings, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    keys = write_stills(archive, 9)
    good = (archive / keys[0]).read_bytes()
    for raw in BAD_NAMES:
        with open(os.fsencode(archive) + b"/stills/" + raw, "wb") as fh:
            fh.write(good)
    deep = archive / "deep" / ("d" * 240) / ("e" * 240) / ("f" * 240) / ("g" * 240) / ("h" * 100)
    deep.mkdir(parents=True)
    (deep / "long.jpg").write_bytes(good)  # a nested key over 1,024 bytes
    (archive / "=HYPERLINK(1).jpg").write_bytes(good)  # a key a spreadsheet would run
    for clutter in ("@eaDir/still_00000.jpg/SYNOPHOTO_THUMB_M.jpg", ".DS_Store", "notes.txt", "phone.heic"):
        (archive / clutter).parent.mkdir(parents=True, exist_ok=True)
        (archive / clutter).write_bytes(good)

    result = tagger(local, "tag", str(archive), "--wait", "--json", "--batch-size", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert (report["state"], report["done"], report["failed"]) == ("done_with_failures", 10, 6), report
    reasons = {f["key"]: f["reason"] for f in report["failures"]}
    for readable in BAD_NAMES.values():
        (key,) = [k for k in reasons if k == f"stills/{readable}"]
        assert readable in reasons[key]
    (long_key,) = [k for k in reasons if k.startswith("deep/")]
    assert "over the limit of 1024" in reasons[long_key] and "bytes]" in long_key
    assert report["passed_over"] == {
        "excluded by pattern '@eaDir'": 1,
        "excluded by pattern '.*'": 1,
        "not an image file name (.txt)": 1,
        "not an image file name (.heic)": 1,
        "not an image file name (.csv)": 1,  # the sample archive's labels.csv
    }
    assert _items(local, report["id"]) == {"done": 10, "failed": 6}  # nothing left pending

    # A retry cannot make these names readable: each keeps its failure and its own reason.
    retried = tagger(local, "jobs", "retry", report["id"][:8])
    assert retried.returncode == 0, retried.stderr[-3000:]
    again = json.loads(tagger(local, "jobs", "show", report["id"], "--json").stdout)
    assert (again["done"], again["failed"]) == (10, 6)
    assert {f["key"]: f["reason"] for f in again["failures"]} == reasons

    # `tagger export | head`: the reader goes away first (`true` reads nothing); no traceback, exit 0.
    exported = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m tagger export --format csv | true; exit ${{PIPESTATUS[0]}}"],
        env=dict(os.environ, **local.as_env()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert exported.returncode == 0 and "Traceback" not in exported.stderr and "Broken" not in exported.stderr
    lines = tagger(local, "export", "--format", "csv").stdout.splitlines()
    assert lines[0] == "storage,key,tag,probability,model_version"
    assert any(",'=HYPERLINK(1).jpg," in line for line in lines)  # inert in a spreadsheet


def test_key_files_as_people_make_them(local: Settings, tmp_path: Path) -> None:
    """A byte-order mark, Windows line ends, `./` from find, comments, a traversal and a missing file."""
    archive = tmp_path / "archive"
    keys = write_stills(archive, 6)
    key_file = tmp_path / "keys.txt"
    lines = ["# made by find . -name '*.jpg'", f"./{keys[0]}", f"  {keys[1]}  ", "", "../../etc/passwd", keys[2]]
    lines += ["stills/missing.jpg", f"././{keys[3]}"]
    key_file.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    env = {"TAGGER_STORAGE_URL": archive.as_uri()}
    result = tagger(local, "tag", str(key_file), "--wait", "--json", extra_env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert (report["total"], report["done"], report["failed"]) == (6, 4, 2), report
    reasons = {f["key"]: f["reason"] for f in report["failures"]}
    assert "'..'" in reasons["../../etc/passwd"] and "no such file" in reasons["stills/missing.jpg"]
    assert report["passed_over"] == {"normalised: a leading ./ removed": 3}

    # The missing file turns up: `tagger jobs retry` works without a broker (its own Redis and worker).
    (archive / "stills" / "missing.jpg").write_bytes((archive / keys[0]).read_bytes())
    retried = tagger(local, "jobs", "retry", report["id"][:8])
    assert retried.returncode == 0, retried.stderr[-3000:]
    shown = json.loads(tagger(local, "jobs", "show", report["id"], "--json").stdout)
    assert (shown["state"], shown["done"], shown["failed"]) == ("done_with_failures", 5, 1)


def test_workers_that_cannot_start_say_why_and_fail_no_image(local: Settings, tmp_path: Path) -> None:
    """A device this machine lacks: the command ends at once with the workers' own reason (exit 2), and
    no image is given up on a configuration no attempt could pass; the command the message names runs the job."""
    import torch

    device = f"cuda:{torch.cuda.device_count()}"  # one past the last: missing on every machine, GPU host or not
    archive = tmp_path / "archive"
    write_stills(archive, 3, seed=5)
    started = time.monotonic()
    done = tagger(local, "tag", str(archive), extra_env={"TAGGER_DEVICE": device}, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"the local workers could not start: TAGGER_DEVICE={device}" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 60  # not five attempts per image
    engine = make_engine(local.database_url)
    with make_sessionmaker(engine)() as session:
        job_id, state = session.execute(select(Job.id, Job.state)).one()
    engine.dispose()
    assert state == "queued" and _items(local, job_id) == {"pending": 3}
    assert f"`tagger jobs reconcile {job_id[:8]}` runs it" in done.stderr
    again = tagger(local, "jobs", "reconcile", job_id[:8], timeout=120)  # as the message says
    assert again.returncode == 0, again.stderr[-3000:]
    assert _items(local, job_id) == {"done": 3}


def _as_from_a_terminal(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """The command with its stderr read here, taking Ctrl-C as a terminal sends it: even where this suite was
    started with SIGINT ignored (`nohup … &`), which a child would inherit and rightly keep."""
    return subprocess.Popen(
        command,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_local_job_leaves_no_process_and_resumes(local: Settings, tmp_path: Path, stop: int) -> None:
    from tests.support.holds import Holds

    archive = tmp_path / "archive"
    write_stills(archive, 48, seed=3)  # 12 batches of 4: the first is held, so the signal lands mid-job
    env = dict(os.environ, **local.replace(test_holds=1).as_env())
    command = [sys.executable, "-m", "tagger", "tag", str(archive), "--wait", "--batch-size", "4"]
    holds = Holds(local.var_dir)
    holds.arm("claimed")  # the first batch waits there: the signal lands mid-job, however fast the worker is
    proc = _as_from_a_terminal(command + ["--idempotency-key", "nightly"], env)
    engine = make_engine(local.database_url)
    sessions = make_sessionmaker(engine)
    held = holds.wait("claimed", timeout=120)
    deadline = time.monotonic() + 60
    while True:  # the listing has been enqueued: the signal lands mid-job, not mid-listing
        with sessions() as session:
            if session.scalar(select(Job.listing_complete)):
                break
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    family = descendants(proc.pid)
    assert len(family) >= 3  # redis-server, the worker and its pool
    proc.send_signal(stop)
    log = local.var_dir / "workers.log"
    deadline = time.monotonic() + 30
    while "Warm shutdown" not in (log.read_text() if log.exists() else ""):  # the command stops its workers
        if time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate(timeout=30)
            raise AssertionError(f"the command did not stop its workers: {err[-2000:]}\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    holds.release(held)  # the held batch finishes (a warm shutdown); no other starts
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "paused" in err and "tagger jobs resume" in err
    _until_gone(family)
    with sessions() as session:
        job_id, state, done = session.execute(select(Job.id, Job.state, Job.done)).one()
    assert state == "paused" and done < 48

    if stop == signal.SIGTERM:  # resumed by the command the message names
        resumed = subprocess.run(
            [sys.executable, "-m", "tagger", "jobs", "resume", job_id[:8]], env=env, capture_output=True, text=True
        )
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    else:  # or by running the same command again (the same idempotency key is the same job), and Ctrl-C
        again = _as_from_a_terminal(command + ["--idempotency-key", "nightly"], env)  # after its end: not "paused"
        deadline = time.monotonic() + 120
        while True:  # the job's end is recorded; the command then notices it and stops its workers (a second or so)
            with sessions() as session:
                if session.scalar(select(Job.state)) == "done":
                    break
            assert time.monotonic() < deadline and again.poll() is None
            time.sleep(0.02)
        again.send_signal(signal.SIGINT)
        err = again.communicate(timeout=60)[1]
        assert again.returncode == 130 and "had already ended (done)" in err and "is paused" not in err, err
    with sessions() as session:
        assert session.execute(select(Job.state, Job.done, Job.failed)).one() == ("done", 48, 0)
    assert _items(local, job_id) == {"done": 48}
    engine.dispose()


def _until_gone(pids: set[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while alive := {p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in _state(p)}:
        assert time.monotonic() < deadline, f"processes outlived `tagger tag`: {alive}"
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_a_worker_started_before_postgresql_waits_for_it(tmp_path: Path, redis_url: str) -> None:
    from tests.support.servers import Postgres

    server = Postgres()  # not started yet: a worker that comes up first must wait, not exit with a traceback
    settings = make_settings(tmp_path, server.url(), broker_url=redis_url)
    log = tmp_path / "worker.log"
    from tagger.worker.local import LocalWorkers

    workers = LocalWorkers(settings, count=1, log_file=log).start()
    try:
        deadline = time.monotonic() + 60
        while "waiting for the database" not in log.read_text():
            assert time.monotonic() < deadline and workers.alive(), log.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(2.5)
        assert workers.alive() and "Traceback" not in log.read_text()
        server.start()
        while "ready" not in log.read_text().split("waiting for the database")[-1]:
            assert time.monotonic() < deadline and workers.alive(), log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        workers.stop()
        server.destroy()
