"""Fixtures the system tier's training tests share (test_training, test_training_gate, test_training_lr)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagger.settings import Settings
from tests.conftest import make_settings, write_stills


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Most training tests are about training, not the database: SQLite only, to keep the suite fast."""
    return make_settings(tmp_path, f"sqlite:///{tmp_path / 'tagger.db'}")


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train") / "archive"
    write_stills(root, 160, seed=5)
    return root
