"""The job lifecycle without a database: a job's end is announced to the notifier."""

from __future__ import annotations

from pathlib import Path

from tagger.jobs.lifecycle import announce_end
from tagger_client.contract import QUEUE_INTERACTIVE, TASK_NOTIFY_JOB


def test_a_job_s_end_is_announced_to_the_notifier(tmp_path: Path) -> None:
    sent: list[tuple[str, list[object], str]] = []
    announce_end(lambda *m: sent.append(m), "f" * 32)
    announce_end(None, "f" * 32)  # nowhere to send (a CLI without a broker): nothing happens
    assert sent == [(TASK_NOTIFY_JOB, ["f" * 32], QUEUE_INTERACTIVE)]
