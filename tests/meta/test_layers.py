"""The floors hold because a check enforces them: a wrong-way import makes `lint-imports` (in `make lint`) fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
    )


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


@pytest.mark.parametrize(
    ("module", "wrong_way", "contract"),
    [
        ("tagger/model/meta.py", "import tagger.cli", "Floors"),
        ("tagger/registry.py", "import tagger.worker.sink", "Floors"),
        ("worker/retrain.py", "import tagger.training.train", "Only entry points drive training"),
        ("jobs/queries.py", "import torch", "never load torch"),
    ],
)
def test_a_wrong_way_import_breaks_the_lint(tree: Path, module: str, wrong_way: str, contract: str) -> None:
    with open(tree / module, "a") as fh:
        fh.write(f"\n{wrong_way}  # noqa: E402\n")
    result = _lint_imports(tree)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout[-3000:]


def test_the_client_never_imports_torch() -> None:
    code = "import sys, tagger_client; assert 'torch' not in sys.modules and 'torchvision' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
