"""`tagger ...` run as a user runs it: a child process of this Python with the test's settings."""

from __future__ import annotations

import subprocess
import sys

from tagger.processes import child_env
from tagger.settings import Settings


def tagger(
    settings: Settings, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """`tagger ARGS...` with `settings` (and `extra_env` over them), run to its end; output captured as text,
    the exit status the caller's to read."""
    return subprocess.run(
        [sys.executable, "-m", "tagger", *args],
        env=child_env(settings) | (extra_env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
