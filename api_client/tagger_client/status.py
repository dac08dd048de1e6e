"""A job's state as every reader sees it: the CLI, the workers' notifications and the client."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from tagger_client.contract import JobState


@dataclass(frozen=True)
class JobStatus:
    id: str
    state: JobState
    source: str
    total: int
    done: int
    failed: int
    skipped: int
    listing_complete: bool
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    passed_over: dict[str, int] = field(default_factory=dict)  # files the listing left out, by reason
    progress_at: datetime | None = None  # when items last moved
    waiting_reason: str | None = None  # while items cannot move: why (a worker's infrastructure error)
    waiting_since: datetime | None = None
    unchanged: int = 0  # listed images passed over: the active version tagged them from the same bytes

    @property
    def waiting(self) -> str | None:
        """The wait in words ("waiting 3 min: the database refuses connections: ..."), or None when the job
        is not known to wait (or has ended)."""
        return self._waiting(self.waiting_reason)

    @property
    def waiting_short(self) -> str | None:
        """The wait in a few words for one line (a list, a progress bar): how long and what for, without the
        error ("waiting 3 min: the disk under the database is full")."""
        reason = self.waiting_reason
        return self._waiting(reason.split(": ", 1)[0] if reason else None)  # "<what>: <error class>: <message>"

    def _waiting(self, what: str | None) -> str | None:
        if not what or self.state.finished:
            return None
        if self.waiting_since is None:
            return f"waiting: {what}"
        return f"waiting {_duration(self.waiting_since)}: {what}"

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def images_per_second(self) -> float | None:
        return self.rate

    @property
    def seconds(self) -> float | None:
        """Seconds from the first batch's start to the end (or now); None before the start, or for a job
        that ended as it started (nothing to take a rate from)."""
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(self.started_at.tzinfo)
        seconds = (end - self.started_at).total_seconds()
        return seconds if seconds > 0.001 else None

    @property
    def rate(self) -> float | None:
        seconds = self.seconds
        return (self.done + self.failed) / seconds if seconds else None

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the rate so far; None while the listing goes on, before the first batch, or while
        paused (nothing moves, so no time is left to count down)."""
        if self.state.finished:
            return 0.0
        if not self.rate or not self.listing_complete or self.state == JobState.PAUSED:
            return None
        return max(0, self.total - self.done - self.failed - self.skipped) / self.rate

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "state": self.state.value,
            "source": self.source,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "skipped": self.skipped,
            "unchanged": self.unchanged,
            "listing_complete": self.listing_complete,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "images_per_second": round(self.rate, 2) if self.rate else None,
            "eta_seconds": round(self.eta_seconds, 1) if self.eta_seconds is not None else None,
            "error": self.error,
            "passed_over": dict(self.passed_over),
            "progress_at": self.progress_at.isoformat() if self.progress_at else None,
            "waiting_reason": self.waiting_reason,
            "waiting_since": self.waiting_since.isoformat() if self.waiting_since else None,
            "waiting": self.waiting,
        }


def _duration(since: datetime) -> str:
    """Time from `since` to now in words a person reads at a glance: 40 s, 3 min, 2 h 5 min."""
    now = datetime.now(UTC).replace(tzinfo=None) if since.tzinfo is None else datetime.now(since.tzinfo)
    seconds = max(0, int((now - since).total_seconds()))  # a naive `since` is UTC (SQLite)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
