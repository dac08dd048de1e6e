"""What the training tests share: a tiny `tagger train` run (random init, 32 px) on a folder of stills."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tagger.settings import Settings
from tests.support.cli import tagger

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["--size", "32", "--batch-size", "16", "--random-init", "--lr-spread", "1"]
# For tests whose assertions hold for any architecture (the gate, the lr finder, resuming, the review pages):
# a 2.5M-parameter network where ResNet-18 has 11M; a run costs about two thirds of the CPU. The tests that a
# model learns keep the CPU default, ResNet-18.
SMALL = ["--arch", "mobilenet_v3_small"]


def train(
    settings: Settings, archive: Path, *extra: str, labels: str | None = None
) -> subprocess.CompletedProcess[str]:
    return tagger(
        settings,
        "train",
        "--labels",
        labels or str(archive / "labels.csv"),
        "--images",
        str(archive),
        *TINY,
        "--plots",
        str(archive.parent / "plots"),
        *extra,
    )
