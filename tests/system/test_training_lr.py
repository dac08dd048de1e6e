"""`tagger train --find-lr` and a training run killed and resumed from its checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tagger.processes import child_env
from tagger.settings import Settings
from tests.support.training import PNG, SMALL, TINY, train


def test_find_lr_plots_and_suggests(archive: Path, sqlite_settings: Settings) -> None:
    result = train(sqlite_settings, archive, *SMALL, "--find-lr", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert 1e-7 <= report["suggested_lr"] <= 10 and report["version"] is None
    assert Path(report["plots"]["lr_find"]).read_bytes().startswith(PNG)


def test_interrupted_training_resumes_from_its_checkpoint(
    archive: Path, sqlite_settings: Settings, tmp_path: Path
) -> None:
    """kill -9 after the first checkpoint; --resume continues from the saved epoch, not from scratch."""
    ckpt = tmp_path / "ckpt"
    args = [
        "--freeze-epochs",
        "0",
        "--epochs",
        "40",
        "--patience",
        "0",
        "--checkpoint",
        str(ckpt),
        "--no-activate",
        *SMALL,
    ]
    env = child_env(sqlite_settings)
    cmd = [sys.executable, "-m", "tagger", "train", "--labels", str(archive / "labels.csv"), "--images", str(archive)]
    proc = subprocess.Popen([*cmd, *TINY, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (ckpt / "checkpoint.json").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert (ckpt / "checkpoint.json").exists(), "no checkpoint was written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saved = json.loads((ckpt / "checkpoint.json").read_text())["epoch"]
    assert 1 <= saved < 40

    resumed = train(sqlite_settings, archive, *args[:3], str(saved + 2), *args[4:], "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout)
    assert f"resuming from {ckpt} after epoch {saved}" in resumed.stderr
    assert [e["epoch"] for e in report["epochs"]] == list(range(1, saved + 3))
    assert not ckpt.exists()  # a finished run leaves nothing to resume

    missing = train(sqlite_settings, archive, "--resume", "--checkpoint", str(tmp_path / "none"))
    assert missing.returncode == 2 and "no checkpoint to resume" in missing.stderr
