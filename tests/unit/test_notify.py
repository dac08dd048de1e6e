"""Notifications: the retry schedule (what a payload holds and the delivery record: tests/integration/)."""

from __future__ import annotations

from tagger.jobs.notify import MAX_ATTEMPTS, retry_delay


def test_the_retry_schedule_doubles_to_five_minutes_over_nine_attempts() -> None:
    delays = [retry_delay(attempt) for attempt in range(1, MAX_ATTEMPTS)]
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128]  # before attempts 2..9
    assert retry_delay(12) == 300 and MAX_ATTEMPTS == 9
