"""The `tagger-client` distribution without a server: submissions refused before sending, and what a
job's status says (the backend path against real servers: tests/system/test_client.py)."""

from __future__ import annotations

import pytest

from tagger_client import TaggerClient
from tagger_client.errors import InvalidSubmission


def test_a_bad_submission_is_refused_before_sending() -> None:
    client = TaggerClient(broker_url="redis://127.0.0.1:1/0", database_url="sqlite://")
    with pytest.raises(InvalidSubmission, match="exactly one"):
        client.submit(keys=["a.jpg"], prefix="stills/")
    with pytest.raises(InvalidSubmission, match="priority"):
        client.submit(keys=["a.jpg"], priority="urgent")
    with pytest.raises(InvalidSubmission, match="webhook"):
        client.submit(keys=["a.jpg"], webhook="ftp://example.com/hook")
    client.close()


def test_a_job_that_ended_as_it_started_has_no_rate_and_a_paused_one_no_eta() -> None:
    """A job whose only key was refused ends the instant it starts: no rate (it was once a million/s). A paused
    job has no time left to count down (its ETA grew while nothing moved)."""
    from datetime import UTC, datetime, timedelta

    from tagger_client.contract import JobState
    from tagger_client.status import JobStatus

    start = datetime(2026, 11, 30, tzinfo=UTC)
    ended = JobStatus(
        id="0" * 32,
        state=JobState.DONE_WITH_FAILURES,
        source="keys",
        total=1,
        done=0,
        failed=1,
        skipped=0,
        listing_complete=True,
        error=None,
        created_at=start,
        started_at=start,
        finished_at=start - timedelta(microseconds=32),  # two clocks, microseconds apart
    )
    assert ended.rate is None and ended.as_dict()["images_per_second"] is None and ended.eta_seconds == 0.0
    ran = JobStatus(**{**ended.__dict__, "done": 10, "finished_at": start + timedelta(seconds=2)})
    assert ran.rate == pytest.approx(5.5)
    running = JobStatus(**{**ran.__dict__, "state": JobState.RUNNING, "total": 100, "finished_at": None})
    assert running.eta_seconds is not None and running.eta_seconds > 0
    paused = JobStatus(**{**running.__dict__, "state": JobState.PAUSED})
    assert paused.eta_seconds is None and paused.as_dict()["eta_seconds"] is None  # nothing moves: no countdown
