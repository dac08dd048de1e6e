"""The test side of the worker's hold points (tagger/worker/holds.py): arm a stage, wait for a batch to
stop there, act (kill, signal, cut off), then release it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Held:
    path: Path
    stage: str
    pid: int  # the process holding the batch (a prefork pool process, or the threads-pool worker)
    job_id: str
    image_ids: list[int]
    task_id: str | None


class Holds:
    def __init__(self, var_dir: Path) -> None:
        self.folder = var_dir / "holds"
        self.folder.mkdir(parents=True, exist_ok=True)

    def arm(self, stage: str) -> None:
        """The next batch to reach `stage` (one batch, whichever worker) stops there."""
        (self.folder / f"arm-{stage}").touch()

    def wait(self, stage: str, timeout: float = 90, log: Path | None = None) -> Held:
        deadline = time.monotonic() + timeout
        while True:
            for path in self.folder.glob(f"held-{stage}-*.json"):
                try:
                    info: dict[str, Any] = json.loads(path.read_text())
                except (OSError, ValueError):  # being written
                    continue
                return Held(path, info["stage"], info["pid"], info["job_id"], info["image_ids"], info["task_id"])
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            assert time.monotonic() < deadline, f"no batch stopped at {stage!r}; workers log:\n{tail}"
            time.sleep(0.02)

    def release(self, held: Held) -> None:
        held.path.unlink(missing_ok=True)
