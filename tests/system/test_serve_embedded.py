"""`tagger serve` on the embedded defaults (no TAGGER_BROKER_URL, SQLite), as `tagger tag` runs: it starts its
own Redis and a local worker, the review pages open, and a job submitted over HTTP is tagged."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.processes import child_env
from tagger.tokens import create
from tests.conftest import make_model, make_settings, write_stills
from tests.support.servers import tagger_serve


def test_serve_starts_on_the_embedded_defaults_and_its_jobs_are_tagged(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'tagger.db'}",
        storage_url=(tmp_path / "archive").as_uri(),
        web_cookie_secure=0,
    )
    assert not settings.broker_url
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    make_model(settings, sessions)
    keys = write_stills(tmp_path / "archive", 6, seed=5)
    token = create(sessions, "ana", "admin")
    engine.dispose()
    log = tmp_path / "serve.log"
    env = child_env(settings)
    with tagger_serve(env, log) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/login").status_code == 200
        headers = {"Authorization": f"Bearer {token}"}
        submitted = client.post("/api/v1/jobs", json={"keys": keys}, headers=headers)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        deadline = time.monotonic() + 120
        while (job := client.get(f"/api/v1/jobs/{job_id}", headers=headers).json()).get("state") != "done":
            assert time.monotonic() < deadline, job  # 404 until a worker has taken the submission
            time.sleep(0.5)
        assert job["done"] == 6 and job["failed"] == 0
    assert "no TAGGER_BROKER_URL: started an embedded Redis and 1 local worker(s)" in log.read_text()
