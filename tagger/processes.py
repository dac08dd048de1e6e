"""Helpers for the server and worker processes tagger starts on this machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagger.settings import Settings


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(settings: Settings) -> dict[str, str]:
    """The environment for a `tagger` child process: this one's without its TAGGER_* variables, then
    `settings` as TAGGER_* variables, so the child reads exactly these settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TAGGER_")} | settings.as_env()


def run_tagger(settings: Settings, *argv: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """`tagger ARGV...` with `settings`, run to its end in a child process (this Python, so this install);
    its output captured as text, its exit status the caller's to read (never raised)."""
    return subprocess.run(
        [sys.executable, "-m", "tagger", *argv],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float) -> None:
    """SIGTERM (a clean shutdown), then SIGKILL if it has not exited within `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def die_with_parent() -> None:
    """For `preexec_fn`: the child gets SIGTERM when the process that started it dies, even by SIGKILL
    (Linux's PR_SET_PDEATHSIG), so no server or worker outlives the command that started it."""
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):  # not Linux: the parent's own cleanup still stops it
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
