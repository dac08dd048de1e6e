"""Inputs people really have, through the real `tagger` command: odd file names, NAS clutter, key files
from `find` or Windows, spreadsheets, mistyped sources, and commands that must refuse before starting."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tagger.cli import main
from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.db.schema import Job, JobItem
from tagger.settings import Settings
from tests.conftest import make_model, make_settings, write_stills
from tests.test_e2e import tagger
from tests.waiting import descendants

# Names a listing really meets that cannot be keys, and the readable form their reason must show.
BAD_NAMES: dict[bytes, str] = {
    b"caf\xe9.jpg": "caf\\xe9.jpg",  # Latin-1 from an old camera or a Windows share
    b"tab\there.jpg": "tab\\there.jpg",
    b"new\nline.jpg": "new\\nline.jpg",
    b"del\x7f.jpg": "del\\x7f.jpg",
    b"back\\slash.jpg": "back\\\\slash.jpg",
}


@pytest.fixture
def local(tmp_path: Path) -> Settings:
    """SQLite and no broker: `tagger tag` starts its own Redis and workers (the first steps of docs/tour.md)."""
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'tagger.db'}")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    make_model(settings, make_sessionmaker(engine))
    engine.dispose()
    return settings


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
    from tests.holds import Holds

    archive = tmp_path / "archive"
    write_stills(archive, 160, seed=3)
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
    assert state == "paused" and done < 160

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
        assert session.execute(select(Job.state, Job.done, Job.failed)).one() == ("done", 160, 0)
    assert _items(local, job_id) == {"done": 160}
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


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["tag", "{archive}", "--batch-size", "0"], 2, "batch_size must be an integer from 1 to 1024"),
        (["tag", "{archive}", "--batch-size", "5000"], 2, "batch_size must be an integer from 1 to 1024"),
        (["tag", "--query", "missing"], 2, "needs tags"),
        (["tag", "--query", "missing", "--tags", "no-such-tag"], 3, "no tag 'no-such-tag' in the vocabulary"),
        (["tag", "--query", "untagged", "--storage", "file:///nowhere"], 3, "no images were ever submitted from"),
        (["tag", "--tags", "night"], 2, "what to tag?"),
        (["tag", "{archive}", "--stale"], 2, "not both"),
        (["tag", "{archive}/nothing-here"], 3, "nothing is there"),  # docs/tour.md: a folder not there is 3
        (["tag", "file:///nowhere/at/all"], 3, "no such folder: /nowhere/at/all"),
        (["export", "--tag", "no-such-tag"], 3, "no tag 'no-such-tag'"),
        (["results", "never-submitted.jpg"], 3, "no image 'never-submitted.jpg'"),
        (["labels", "add", "k.jpg", "Not A Tag!!", "--storage", "{archive}"], 2, "has spaces"),
        (["labels", "add", "k.jpg", "wow!!", "--storage", "{archive}"], 2, "is not a tag name"),
        (["jobs", "show", "abc"], 2, "too short"),
        (["jobs", "show", "abcd"], 3, "no job 'abcd'"),
    ],
)
def test_bad_requests_are_refused_with_a_reason_and_start_nothing(  # type: ignore[no-untyped-def]
    local: Settings, tmp_path: Path, monkeypatch, capsys, argv: list[str], code: int, says: str
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    for name, value in local.as_env().items():
        monkeypatch.setenv(name, value)
    assert main([a.format(archive=archive) for a in argv]) == code
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and "embedded Redis" not in err
    engine = make_engine(local.database_url)
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0  # no job was created
    engine.dispose()


@pytest.mark.parametrize("argv", [["--min-probability", "7"], ["--min-probability", "-1"], ["--format", "xml"]])
def test_export_options_are_checked(argv: list[str], capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as stop:
        main(["export", *argv])
    assert stop.value.code == 2 and "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["results", "x.jpg"], ["jobs", "list"], ["export"], ["labels", "stats"]])
def test_read_only_commands_never_create_a_database(tmp_path: Path, monkeypatch, capsys, argv: list[str]) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 3
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "var").exists()


def test_an_unreachable_database_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from tagger.processes import free_port

    monkeypatch.setenv("TAGGER_DATABASE_URL", f"postgresql+psycopg://tagger:s3cret@127.0.0.1:{free_port()}/tagger")
    assert main(["jobs", "list"]) == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the database" in err and "s3cret" not in err


def test_a_mistyped_or_missing_bucket_is_refused_before_a_job_exists(
    postgres, s3, tmp_path: Path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        tmp_path, postgres.create_database(f"src_{uuid.uuid4().hex[:10]}"), broker_url="redis://127.0.0.1:1/0"
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    make_model(settings, make_sessionmaker(engine))
    bucket = f"stills-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    s3.client().put_object(Bucket=bucket, Key="archive/a.jpg", Body=b"x")
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert main(["tag", f"s3://{bucket}/archiv"]) == 3
    assert (
        f"nothing is stored under s3://{bucket}/archiv; did you mean s3://{bucket}/archive?" in capsys.readouterr().err
    )
    assert main(["tag", f"s3://no-such-{bucket}/x"]) == 3
    assert "no such bucket" in capsys.readouterr().err
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
    engine.dispose()


def test_the_client_says_which_server_is_down() -> None:
    from tagger.processes import free_port
    from tagger_client import BrokerUnavailable, DatabaseUnavailable, TaggerClient

    dead = free_port()
    client = TaggerClient(
        broker_url=f"redis://127.0.0.1:{dead}/0", database_url=f"postgresql+psycopg://u@127.0.0.1:{dead}/x"
    )
    with pytest.raises(BrokerUnavailable, match="cannot publish tagger.submit_job"):
        client.submit(keys=["a.jpg"], storage_url="s3://stills")
    with pytest.raises(DatabaseUnavailable):
        client.status("0" * 32)
    with pytest.raises(DatabaseUnavailable):
        client.results("a.jpg")
    client.close()


def test_a_job_nobody_takes_is_reported_and_progress_is_logged_without_a_terminal(  # type: ignore[no-untyped-def]
    settings: Settings, sessions
) -> None:
    from tagger.jobs.progress import wait
    from tests.conftest import fill_job, new_job

    job = new_job(sessions, settings.var_dir.parent.as_uri()).job_id
    fill_job(sessions, job, ["a.jpg", "b.jpg"], settings.var_dir.parent.as_uri())
    said: list[str] = []
    with pytest.raises(TimeoutError, match="still queued"):
        wait(sessions, job, timeout=1.0, poll=0.05, progress_every=0.2, idle_warning=0.5, say=said.append)
    warnings = [line for line in said if "no worker has taken a batch" in line]
    progress = [line for line in said if line.startswith(f"job {job[:8]}: queued, 0/2")]
    assert len(warnings) == 1 and len(progress) >= 3


def test_a_worker_started_before_postgresql_waits_for_it(tmp_path: Path, redis_url: str) -> None:
    from tests.servers import Postgres

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


def test_version_and_help_say_what_they_should(capsys) -> None:  # type: ignore[no-untyped-def]
    from tagger import __version__
    from tagger.cli import build_parser

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"tagger {__version__}"

    def undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
        found = []
        for action in parser._actions:
            if action.option_strings and action.dest != "help" and not action.help:
                found.append(f"{path} {action.option_strings[0]}")
            if isinstance(action.choices, dict):  # subcommands
                for name, sub in action.choices.items():
                    found += undocumented(sub, f"{path} {name}")
        return found

    assert undocumented(build_parser(), "tagger") == []


def test_an_image_is_found_by_its_path_or_file_url_whatever_its_name(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Spaces, accents, CJK, a literal percent sign, a link inside the folder, a folder name with a space:
    a path and a file:// URL (encoded, as browsers and `Path.as_uri` write it) name the image itself."""
    from tagger.db.images import image_ids, storage_id
    from tagger.results import find_images
    from tagger.storage import canonical_url

    folder = tmp_path / "my stills"
    (folder / "sub dir").mkdir(parents=True)
    names = ["with space é ü.jpg", "日本語.JPG", "100%25 done.jpg", "sub dir/ça.jpg", "plain.jpg"]
    for name in names:
        (folder / name).write_bytes(b"x")
    (folder / "link_in.jpg").symlink_to(folder / "plain.jpg")
    engine = make_engine(f"sqlite:///{tmp_path / 'tagger.db'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    root = canonical_url(folder.as_uri())
    with sessions() as session, session.begin():
        ids = image_ids(session, storage_id(session, root), [*names, "link_in.jpg"])
    monkeypatch.chdir(tmp_path)
    for name in [*names, "link_in.jpg"]:
        for ref in (str(folder / name), f"my stills/{name}", (folder / name).as_uri(), f"file://{folder / name}"):
            if ref == f"file://{folder / name}" and "%" in name:
                continue  # an unencoded URL is read as the URI it would be: its "%25" means "%"
            found = find_images(sessions, ref)
            assert [(f.id, f.key) for f in found] == [(ids[name], name)], (ref, found)
    engine.dispose()
