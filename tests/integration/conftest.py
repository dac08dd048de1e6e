"""Fixtures the integration tier shares (its servers are tests/conftest.py's)."""

from __future__ import annotations

import pytest

from tagger import registry
from tagger.settings import Settings
from tests.conftest import make_model


@pytest.fixture
def version(settings: Settings, sessions) -> int:  # type: ignore[no-untyped-def]
    make_model(settings, sessions, tags=("x", "y"))
    with sessions() as session:
        return registry.active(session).id
