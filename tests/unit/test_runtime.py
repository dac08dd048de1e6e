"""Exit codes for a broken artifact and a failed job, in-process on SQLite."""

from __future__ import annotations

from pathlib import Path

from tagger.cli import main
from tests.conftest import make_model, make_settings


def test_exit_codes_for_a_broken_artifact_and_a_failed_job(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.jobs.lifecycle import fail
    from tests.conftest import new_job

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'tagger.db'}")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    make_model(settings, sessions, tags=("a",))
    broken = make_model(settings, sessions, tags=("a",), activate=False)
    weights = tmp_path / "models" / broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    job = new_job(sessions, tmp_path.as_uri()).job_id
    with sessions() as session, session.begin():
        fail(session, job, "past its time limit")
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert main(["models", "activate", broken]) == 4
    assert "checksum mismatch" in capsys.readouterr().err
    assert main(["jobs", "wait", job[:8]]) == 1
    assert "failed" in capsys.readouterr().out
    engine.dispose()
