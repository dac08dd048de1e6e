"""The floors hold because a check enforces them: a wrong-way import makes `lint-imports` (in `make lint`) fail."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# One wrong-way import per line: the file it goes into, what it imports, and the contract (by the start of
# its name) that must report it.
WRONG_WAY = [
    ("tagger/model/meta.py", "tagger.cli", "Floors"),
    ("tagger/registry.py", "tagger.worker.sink", "Floors"),
    # the worker and training share a floor and import neither way: the worker runs `tagger train`
    ("worker/retrain.py", "tagger.training.recipe", "Floors"),
    ("training/recipe.py", "tagger.worker.app", "Floors"),
    ("training/recipe.py", "tagger.jobs.producer", "Training is a recipe"),
    ("jobs/queries.py", "torch", "Producers, job control and the read side never load torch"),
    # the broker floor: nothing of the floors above comes in, nothing beside it (db, storage) reaches in,
    # and job code never goes around it to kombu
    ("tagger/broker/config.py", "tagger.jobs", "Floors"),
    ("tagger/db/engine.py", "tagger.broker.send", "Floors"),
    ("jobs/producer.py", "kombu", "Jobs, the web and the services send through tagger.broker"),
]


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
    )


def _module(path: str) -> str:
    """`worker/retrain.py` -> `tagger.worker.retrain` (through the link), `tagger/registry.py` -> `tagger.registry`."""
    name = path.removesuffix(".py").replace("/", ".")
    return name if name.startswith("tagger.") else f"tagger.{name}"


def _broken(report: str) -> dict[str, str]:
    """What lint-imports says under each broken contract, by the contract's name (each underlined with dashes)."""
    parts = re.split(r"^(\S[^\n]*)\n-+\n", report.split("Broken contracts", 1)[-1], flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package tree (the links tagger/worker, tagger/jobs, tagger/training included)."""
    for name in ("tagger", "worker", "jobs", "training"):
        shutil.copytree(ROOT / name, tmp_path / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_floors_hold(tree: Path) -> None:
    result = _lint_imports(tree)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_each_wrong_way_import_breaks_its_contract(tree: Path) -> None:
    """All of WRONG_WAY in one copy, one run: each import is reported under its own contract."""
    for path, wrong_way, _ in WRONG_WAY:
        with open(tree / path, "a") as fh:
            fh.write(f"\nimport {wrong_way}  # noqa: E402\n")
    result = _lint_imports(tree)
    assert result.returncode != 0
    broken = _broken(result.stdout)
    for path, wrong_way, contract in WRONG_WAY:
        said = "".join(text for name, text in broken.items() if name.startswith(contract))
        assert f"{_module(path)} -> {wrong_way}" in said, (path, wrong_way, contract, result.stdout[-4000:])


def test_the_client_never_imports_torch() -> None:
    code = "import sys, tagger_client; assert 'torch' not in sys.modules and 'torchvision' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
