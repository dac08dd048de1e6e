"""The read commands start fast because they import only what they read with: `python -X importtime` of the
real commands, on a real SQLite database, lists no torch, Celery, Pillow or alembic (a structure, not a
timing: the figures are in BENCHMARKS.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tagger.processes import child_env
from tagger.settings import Settings
from tests.conftest import fill_job, make_settings, new_job

# What a read command has no use for: the model (torch, Pillow, numpy), the broker (Celery, kombu, redis: no
# TAGGER_BROKER_URL here), migrations (alembic: a read command never migrates), progress bars, HTTP, S3.
HEAVY = (
    "torch",
    "torchvision",
    "PIL",
    "numpy",
    "celery",
    "kombu",
    "redis",
    "alembic",
    "tqdm",
    "httpx",
    "boto3",
    "botocore",
    "fastapi",
    "prometheus_client",
)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, str]:
    """An SQLite database at the schema's head with one job of one image (not tagged yet)."""
    from tagger.db import make_engine, make_sessionmaker, upgrade

    tmp = tmp_path_factory.mktemp("startup")
    settings = make_settings(tmp, f"sqlite:///{tmp / 'tagger.db'}")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    url = (tmp / "archive").as_uri()
    job = new_job(sessions, url).job_id
    fill_job(sessions, job, ["stills/a.jpg"], url)
    engine.dispose()
    return settings, job


def imported_by(settings: Settings, *argv: str) -> set[str]:
    """Every module `tagger ARGV` imported, as `-X importtime` lists them; the command must succeed."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tagger", *argv],
        env=child_env(settings),
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


READ_COMMANDS = [["jobs", "list"], ["jobs", "show", "JOB", "--items", "5"], ["results", "stills/a.jpg"]]


@pytest.mark.parametrize("argv", READ_COMMANDS)
def test_read_commands_import_nothing_heavy(archive: tuple[Settings, str], argv: list[str]) -> None:
    settings, job = archive
    imported = imported_by(settings, *[job if a == "JOB" else a for a in argv])
    assert {"sqlalchemy", "tagger.db.schema"} <= imported  # the command did read the database
    assert sorted(m for m in imported if m.split(".")[0] in HEAVY) == []


# A worker builds its model through tagger.model.architectures; torchvision must load without torch._dynamo
# (tagger/model/vision.py), and dynamo must still be the real one when something asks for it afterwards.
BUILD_WITHOUT_DYNAMO = """
import sys
from tagger.model.architectures import build_model
build_model("mobilenet_v3_small", 3)
assert "torchvision.models" in sys.modules and "torchvision.ops" in sys.modules
assert "torch._dynamo" not in sys.modules, "torchvision loaded torch._dynamo"
import torch, torchvision
out = torchvision.ops.roi_align(torch.rand(1, 3, 8, 8), torch.tensor([[0, 0.0, 0.0, 4.0, 4.0]]), output_size=(2, 2))
assert out.shape == (1, 3, 2, 2)
assert sys.modules["torchvision.ops.roi_align"].is_compile_supported("cpu") is True  # reaches the real one
import torch._dynamo
assert hasattr(torch._dynamo, "config") and hasattr(torch._dynamo, "optimize"), "a stand-in was left behind"
assert torch._dynamo.utils.is_compile_supported.__module__ == "torch._dynamo.utils"
"""


def test_a_model_is_built_without_loading_torch_dynamo() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BUILD_WITHOUT_DYNAMO],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
