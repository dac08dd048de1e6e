"""Notifications: the retry schedule, what a payload holds, and the delivery record people read."""

from __future__ import annotations

from pathlib import Path

from tagger.jobs.notify import MAX_ATTEMPTS, payload, record_attempt
from tagger.jobs.progress import delivery
from tagger.worker.sink import Refused, record_batch
from tests.conftest import fill_job, new_job


def test_a_payload_lists_at_most_a_hundred_failures(settings, sessions, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job = new_job(sessions, tmp_path.as_uri(), batch_size=200).job_id
    ids = fill_job(sessions, job, [f"bad/{i:03d}.jpg" for i in range(150)], tmp_path.as_uri(), batch_size=200)
    record_batch(engine, job_id=job, model_version_id=None, refused=[Refused(i, "corrupt") for i in ids.values()])
    body = payload(sessions, job)
    assert (body["id"], body["state"], body["failed"]) == (job, "done_with_failures", 150)
    assert len(body["failures"]) == 100 and all(f["reason"] == "corrupt" for f in body["failures"])


def test_each_attempt_is_recorded_and_the_last_one_gives_up(settings, sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job = new_job(sessions, tmp_path.as_uri()).job_id
    assert delivery(sessions, job) is None
    record_attempt(sessions, job, attempt=1, error="webhook http://x answered 500")
    assert delivery(sessions, job) == {
        "state": "retrying",
        "attempts": 1,
        "last_error": "webhook http://x answered 500",
    }
    record_attempt(sessions, job, attempt=MAX_ATTEMPTS, error="unreachable")
    assert delivery(sessions, job) == {"state": "given up", "attempts": 9, "last_error": "unreachable"}
    record_attempt(sessions, job, attempt=2, error=None)
    assert delivery(sessions, job) == {"state": "delivered", "attempts": 2, "last_error": None}
