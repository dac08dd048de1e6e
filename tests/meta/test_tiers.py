"""The tiers hold: a unit test imports nothing that starts a server or a process, and the guard in
tests/unit/conftest.py fails a unit test that starts a process or asks for a server fixture."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

# Modules whose import in a unit test means a server or a process: the test belongs in another tier.
FORBIDDEN = (
    "subprocess",
    "multiprocessing",
    "tests.support.servers",
    "tests.support.holds",
    "tests.support.disks",
    "tests.support.waiting",
    "tagger.embedded_redis",
    "tagger.cli.local_workers",
    "tagger.processes.stop_process",
)


def _imports(path: Path) -> set[str]:
    """Every module (and module.name) a file imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_unit_test_imports_a_server_or_a_process() -> None:
    files = sorted((TESTS / "unit").glob("*.py"))
    assert len(files) > 10
    offending = {
        f"{path.name}: {name}"
        for path in files
        if path.name != "conftest.py"  # the guard itself imports subprocess, to refuse it
        for name in _imports(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    }
    assert offending == set()


def test_no_unit_test_names_a_server_fixture() -> None:
    """The fixtures a unit test asks for by name (the guard also checks what they ask for in turn)."""
    sys.path.insert(0, str(TESTS / "unit"))
    try:
        from conftest import SERVER_FIXTURES  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    asked = {
        f"{path.name}::{node.name}({arg.arg})"
        for path in sorted((TESTS / "unit").glob("test_*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef)
        for arg in node.args.args
        if arg.arg in SERVER_FIXTURES
    }
    assert {"postgres", "redis_url", "s3"} <= SERVER_FIXTURES and asked == set()


def test_the_unit_guard_fails_a_process_and_a_server_fixture(tmp_path: Path) -> None:
    """Break the rule once in each way the guard knows and watch each test fail, with the guard's reason."""
    unit = tmp_path / "unit"
    unit.mkdir()
    shutil.copy(TESTS / "unit" / "conftest.py", unit / "conftest.py")
    (tmp_path / "conftest.py").write_text(
        "import pytest\n\n"
        "@pytest.fixture\ndef postgres():\n    return 'a server'\n\n"
        "@pytest.fixture\ndef helper(postgres):\n    return postgres\n"
    )
    (unit / "test_breaks.py").write_text(
        "import os, subprocess, sys, multiprocessing\n\n"
        "def test_run():\n    subprocess.run([sys.executable, '-c', 'pass'])\n\n"
        "def test_popen():\n    subprocess.Popen(['true'])\n\n"
        "def test_system():\n    os.system('true')\n\n"
        "def test_fork():\n    os.fork()\n\n"
        "def test_multiprocessing():\n"
        "    p = multiprocessing.get_context('spawn').Process(target=print)\n    p.start()\n\n"
        "def test_server_fixture(postgres):\n    pass\n\n"
        "def test_server_fixture_through_another(helper):\n    pass\n\n"
        "def test_pure(tmp_path):\n    (tmp_path / 'x').write_text('fine')\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "unit"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout
    assert "5 failed, 1 passed, 2 errors" in out, out[-3000:]  # the server fixtures fail at setup
    for name in ("run", "popen", "system", "fork", "multiprocessing"):
        assert f"FAILED unit/test_breaks.py::test_{name} - " in out and "started a process" in out, (name, out[-3000:])
    for name in ("server_fixture", "server_fixture_through_another"):
        assert f"ERROR unit/test_breaks.py::test_{name} - " in out, (name, out[-3000:])
    assert out.count("uses the server fixture(s) ['postgres']") >= 2, out[-3000:]
