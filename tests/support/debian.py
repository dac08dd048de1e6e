"""The Debian packages the tests use (Prometheus and promtool, Chromium, PgBouncer, ExifTool), installed when missing.

Standard library only: `make test` runs `python3 -m tests.support.debian` with the system Python while the
virtual environment installs beside it, and installs every missing package in one `apt-get` call (one
index update at most, not one per package). A test that needs a binary asks `debian_binary`, which
installs what is still missing or raises with the command that would: such tests fail, they never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

# binary -> the Debian package that ships it
NEEDED = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "chromium": "chromium",
    "pgbouncer": "pgbouncer",
    "exiftool": "libimage-exiftool-perl",
}

_SBIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # root's PATH may lack sbin


def which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=_SBIN_PATH)


def apt_install(packages: list[str]) -> str | None:
    """Install the packages with apt-get (as root); None on success, else why not."""
    how = f"sudo apt-get install -y --no-install-recommends {' '.join(packages)}"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"not root or no apt-get here; install them: {how}"
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, capture_output=True).returncode == 0:
        return None
    subprocess.run(["apt-get", "update"], env=env, capture_output=True)  # a fresh machine has no index yet
    result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        return f"`apt-get install` failed ({result.stderr.strip()[-500:]}); {how}"
    return None


def debian_binary(name: str, package: str) -> str:
    """The path of a binary from a Debian package, installed with apt-get (as root) when missing.

    Raises RuntimeError, with the command that installs it, where it cannot be installed.
    """
    found = which(name)
    if found:
        return found
    problem = apt_install([package])
    found = which(name)
    if found:
        return found
    raise RuntimeError(problem or f"`{package}` is installed but has no `{name}`")


def install_missing(needed: dict[str, str] = NEEDED) -> list[str]:
    """Install the packages of every missing binary in one apt-get call; the problems, if any."""
    missing = sorted({package for binary, package in needed.items() if not which(binary)})
    if not missing:
        return []
    problem = apt_install(missing)
    return [problem] if problem else [f"{b}: not found after the install" for b in needed if not which(b)]


if __name__ == "__main__":  # `make test`, before the run; the tests that need a missing binary fail with why
    for line in install_missing():
        print(f"tests/support/debian.py: {line}", file=sys.stderr)
