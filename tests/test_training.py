"""`tagger train` for real: a tiny run must learn, export a safe artifact and register it."""

from __future__ import annotations

import json
from pathlib import Path

from tagger import artifact, registry
from tagger.settings import Settings
from tagger.storage import open_storage
from tests.conftest import write_stills
from tests.test_e2e import tagger
from training.data import read_labels_csv


def test_train_learns_exports_and_registers(tmp_path: Path, sessions, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    archive = tmp_path / "archive"
    write_stills(archive, 160, seed=5)
    result = tagger(
        settings,
        "train",
        "--labels",
        str(archive / "labels.csv"),
        "--images",
        str(archive),
        "--size",
        "32",
        "--epochs",
        "4",
        "--batch-size",
        "16",
        "--json",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    epochs = report["epochs"]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]  # it learns
    assert report["activated"] and 0.0 <= report["final"]["f2"] <= 1.0
    assert "no --weights given" in result.stdout + result.stderr

    with sessions() as session:
        row = registry.active(session)
        assert row.version == report["version"]
    store = open_storage(settings.model_store)
    model, meta = artifact.load(store, row.version, expected_sha256=row.sha256)
    assert meta.training["data_sha256"] == read_labels_csv(archive / "labels.csv").fingerprint()
    assert meta.input_size == 32 and meta.resize == "squish"


def test_bad_labels_file_is_a_clear_error(tmp_path: Path, settings: Settings) -> None:
    bad = tmp_path / "labels.csv"
    bad.write_text("image_id,tags\n../../etc/passwd,night\n")
    result = tagger(settings, "train", "--labels", str(bad), "--images", str(tmp_path))
    assert result.returncode == 2
    assert "labels.csv:2" in result.stderr and "'..'" in result.stderr
