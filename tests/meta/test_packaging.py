"""Packaging: one installed namespace for the server, a torch-free client distribution of its own."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _wheel(source: Path, out: Path, name: str) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source), "-w", str(out)],
        check=True,
        cwd=out,
    )
    return next(out.glob(f"{name}-*.whl"))


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    return [line.split(":", 1)[1].strip().lower() for line in metadata.splitlines() if line.startswith("Requires-Dist")]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Both wheels, built from a copy of the sources (links kept), so the checkout gains no build/ folder."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheels")
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("tagger", "worker", "jobs", "training", "api_client"):
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    return _wheel(source, out, "tagger"), _wheel(source / "api_client", out, "tagger_client")


def test_the_wheels_install_only_the_project_s_own_namespaces(wheels: tuple[Path, Path], tmp_path: Path) -> None:
    server, client = wheels
    with zipfile.ZipFile(server) as zf:
        server_names = zf.namelist()
    # tagger.worker, tagger.jobs and tagger.training travel inside `tagger`, as files, not links.
    assert {"tagger/worker/tasks.py", "tagger/jobs/producer.py", "tagger/training/recipe.py"} <= set(server_names)
    assert "tagger/db/migrations/versions/0001_initial_schema.py" in server_names
    assert any(r.startswith("tagger-client") for r in _requires(server))

    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )

    def pip(command: str, *args: str) -> None:
        options = ["--no-deps", "--no-index"] if command == "install" else []
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python), command, "-q", *options, *args], check=True
        )

    def importable(module: str) -> bool:
        return (
            subprocess.run([str(python), "-c", f"import {module}"], cwd=tmp_path, capture_output=True).returncode == 0
        )

    before = {p.name for p in site.iterdir()}
    pip("install", str(server), str(client))
    added = {p.name for p in site.iterdir()} - before
    top_level = {name for name in added if not name.endswith(".dist-info") and name != "__pycache__"}
    assert top_level == {"tagger", "tagger_client"}, top_level
    assert not {"worker", "jobs", "training", "api_client"} & added
    assert importable("tagger.worker") and importable("tagger.jobs") and importable("tagger.training")

    pip("uninstall", "-y", "tagger-client")
    assert not importable("tagger_client")
    assert importable("tagger.worker") and (site / "tagger" / "jobs" / "producer.py").is_file()
    pip("install", str(client))
    pip("uninstall", "-y", "tagger")
    assert importable("tagger_client.contract") and not importable("tagger")


def test_the_client_wheel_pulls_neither_torch_nor_the_server(wheels: tuple[Path, Path], tmp_path: Path) -> None:
    _, client = wheels
    requires = _requires(client)
    assert requires and not [r for r in requires if r.startswith(("torch", "torchvision", "tagger", "celery"))]
    with zipfile.ZipFile(client) as zf:
        assert {n.split("/")[0] for n in zf.namelist()} == {
            "tagger_client",
            client.name.split("-py3")[0] + ".dist-info",
        }
    # Importing the client with torch, celery and the server made unimportable still works.
    code = (
        "import sys\n"
        "for m in ('torch', 'torchvision', 'tagger', 'celery'): sys.modules[m] = None\n"
        "from tagger_client import TaggerClient, JobSpec, JobState\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
