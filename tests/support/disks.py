"""A small disk a test can fill: a tmpfs mounted for the test (root, as on CI), and a file that takes its space."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(path: Path, *, size: str, owner: str | None = None) -> Iterator[Path]:
    """A tmpfs of `size` (mount's notation: 8m) mounted at `path` for the block, owned by `owner` if given;
    unmounted after it. A machine that refuses the mount fails the test with what it needs, never skips."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.fail(
            f"this test fills a small disk: it mounts a {size} tmpfs at {path}, which needs root (or CAP_SYS_ADMIN) "
            f"as on CI; `mount` said: {(mounted.stderr or mounted.stdout).strip()}",
            pytrace=False,
        )
    try:
        if owner:
            shutil.chown(path, owner, owner)
        yield path
    finally:
        # lazily: a process the test started may still hold a file there as it exits
        subprocess.run(["umount", "--lazy", str(path)], check=True, capture_output=True)


def fill(disk: Path) -> Path:
    """A file that takes every free byte of `disk`'s file system; delete it to give the space back."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (1 << 20, 1 << 12, 1 << 9, 1):
            block = b"\0" * chunk
            try:
                while True:
                    os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    left = os.statvfs(disk).f_bavail
    assert left == 0, f"{disk} still has {left} free blocks"
    return filler
