"""Every file of the hostile corpus is either decoded to RGB (upright) or failed with a precise reason,
through a real worker that never dies (in-process: tests/unit/test_hostile_corpus.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tagger.db import make_engine, make_sessionmaker, upgrade
from tests.conftest import make_model, make_settings
from tests.support import hostile_corpus
from tests.support.cli import tagger


@pytest.mark.parametrize(
    "pipeline",
    [
        {},
        # The GPU worker's shape on CPU: one process, 3 batches in flight, JPEGs decoded by torchvision.
        {"worker_pool": "threads", "worker_concurrency": 3, "decoder": "device", "batch_size": 4},
    ],
    ids=["prefork-pillow", "threads-device-decode"],
)
def test_a_real_worker_tags_or_fails_every_hostile_file_and_survives(tmp_path: Path, pipeline: dict) -> None:  # type: ignore[type-arg]
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'tagger.db'}",
        max_image_bytes=hostile_corpus.MAX_BYTES,
        max_image_pixels=hostile_corpus.MAX_PIXELS,
        **pipeline,
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    make_model(settings, make_sessionmaker(engine))
    engine.dispose()
    expected = hostile_corpus.write(tmp_path / "archive")
    result = tagger(settings, "tag", str(tmp_path / "archive"), "--all-files", "--wait", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    reasons = {f["key"]: f["reason"] for f in report["failures"]}
    fails = {k: d for k, (o, d) in expected.items() if o == "fail"}
    assert set(reasons) == set(fails)
    for key, fragment in fails.items():
        assert str(fragment) in reasons[key], (key, reasons[key])
    assert report["done"] == len(expected) - len(fails) and report["total"] == len(expected)
