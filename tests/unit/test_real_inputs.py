"""Requests people really make, through `tagger`'s main in-process: commands that must refuse before
starting anything, odd file names, and servers that are not there (the real command: tests/system/)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tagger.cli import main
from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.db.schema import Job
from tagger.settings import Settings


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
        (["tag", "--stale", "--all"], 2, "--all goes with a SOURCE"),
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
