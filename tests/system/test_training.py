"""`tagger train` for real: tiny runs that learn, checkpoint and resume, plot, calibrate, gate and register."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tagger import registry
from tagger.db.schema import ModelVersion
from tagger.labels import read_labels_csv
from tagger.model import artifact
from tagger.processes import child_env
from tagger.settings import Settings
from tagger.storage import open_storage
from tests.conftest import make_settings, write_stills
from tests.system.test_e2e import tagger

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["--size", "32", "--batch-size", "16", "--random-init", "--lr-spread", "1"]


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


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Most training tests are about training, not the database: SQLite only, to keep the suite fast."""
    return make_settings(tmp_path, f"sqlite:///{tmp_path / 'tagger.db'}")


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train") / "archive"
    write_stills(root, 160, seed=5)
    return root


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite: the tour (docs/tour.md) trains on it
def test_train_learns_calibrates_exports_and_registers(archive: Path, sessions, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    result = train(settings, archive, "--freeze-epochs", "1", "--epochs", "3", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    epochs = report["epochs"]
    assert [e["frozen"] for e in epochs] == [True, False, False, False]
    assert "random initialisation" in result.stderr  # random init is loud
    final = report["final"]
    assert 0 < final["map"] <= 1 and set(final["per_tag"]) == set(read_labels_csv(archive / "labels.csv").vocabulary)
    assert report["activated"] and report["gate"]["reason"] == "no model is active yet"
    assert Path(report["plots"]["curves"]).read_bytes().startswith(PNG)

    with sessions() as session:
        row = registry.active(session)
        assert row.version == report["version"]
    model, meta = artifact.load(open_storage(settings.model_store), row.version, expected_sha256=row.sha256)
    assert meta.training["data_sha256"] == read_labels_csv(archive / "labels.csv").fingerprint()
    assert meta.input_size == 32 and meta.resize == "squish"
    assert meta.tag_thresholds == {t: m["threshold"] for t, m in final["per_tag"].items() if m["threshold"] != 0.2}

    # An untrained model (one epoch at a learning rate of 1e-9) faces the gate on the same held-out images,
    # both scored as workers serve them: it is refused, and the trained one is clearly better (it learned).
    second = train(settings, archive, "--epochs", "1", "--lr", "1e-9", "--seed", "1", "--json")
    assert second.returncode == 0, second.stderr[-3000:]
    gated = json.loads(second.stdout)
    assert not gated["activated"] and gated["gate"]["active_version"] == row.version
    assert gated["gate"]["active_f2"] > gated["gate"]["candidate_f2"] and "worse than" in gated["gate"]["reason"]
    assert gated["gate"]["active_map"] > gated["gate"]["candidate_map"] + 0.08
    with sessions() as session:
        assert registry.active(session).version == row.version
        assert registry.get(session, gated["version"]).status == "candidate"

    # The registry CLI: metrics side by side, one version in full, activate (validated) and roll back.
    listing = json.loads(tagger(settings, "models", "list", "--json").stdout)
    assert [r["version"] for r in listing][:2] == [gated["version"], row.version]
    shown = tagger(settings, "models", "show", gated["version"])
    assert shown.returncode == 0 and "precision" in shown.stdout and gated["version"] in shown.stdout
    assert tagger(settings, "models", "activate", gated["version"]).returncode == 0
    rolled = tagger(settings, "models", "rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert f"from {gated['version']} to {row.version}" in rolled.stdout
    with sessions() as session:
        assert registry.active(session).version == row.version
        assert registry.get(session, gated["version"]).status == "rolled_back"


def test_find_lr_plots_and_suggests(archive: Path, sqlite_settings: Settings) -> None:
    result = train(sqlite_settings, archive, "--find-lr", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert 1e-7 <= report["suggested_lr"] <= 10 and report["version"] is None
    assert Path(report["plots"]["lr_find"]).read_bytes().startswith(PNG)


def test_interrupted_training_resumes_from_its_checkpoint(
    archive: Path, sqlite_settings: Settings, tmp_path: Path
) -> None:
    """kill -9 after the first checkpoint; --resume continues from the saved epoch, not from scratch."""
    ckpt = tmp_path / "ckpt"
    args = ["--freeze-epochs", "0", "--epochs", "40", "--patience", "0", "--checkpoint", str(ckpt), "--no-activate"]
    env = child_env(sqlite_settings)
    cmd = [sys.executable, "-m", "tagger", "train", "--labels", str(archive / "labels.csv"), "--images", str(archive)]
    proc = subprocess.Popen([*cmd, *TINY, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (ckpt / "checkpoint.json").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert (ckpt / "checkpoint.json").exists(), "no checkpoint was written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saved = json.loads((ckpt / "checkpoint.json").read_text())["epoch"]
    assert 1 <= saved < 40

    resumed = train(sqlite_settings, archive, *args[:3], str(saved + 2), *args[4:], "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout)
    assert f"resuming from {ckpt} after epoch {saved}" in resumed.stderr
    assert [e["epoch"] for e in report["epochs"]] == list(range(1, saved + 3))
    assert not ckpt.exists()  # a finished run leaves nothing to resume

    missing = train(sqlite_settings, archive, "--resume", "--checkpoint", str(tmp_path / "none"))
    assert missing.returncode == 2 and "no checkpoint to resume" in missing.stderr


def test_training_from_labels_people_confirmed_in_the_database(archive: Path, sessions, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    imported = tagger(settings, "labels", "import", str(archive / "labels.csv"), "--storage", str(archive))
    assert imported.returncode == 0, imported.stderr
    added = tagger(settings, "labels", "add", "stills/still_00000.jpg", "hand-made", "--storage", str(archive))
    assert added.returncode == 0, added.stderr
    result = tagger(
        settings, "train", "--labels", "db", *TINY, "--epochs", "1", "--freeze-epochs", "0", "--drop-rare", "--json"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert "hand-made (1)" in result.stderr and "dropped" in result.stderr  # reported, then dropped
    with sessions() as session:
        meta = session.scalars(select(ModelVersion.meta).where(ModelVersion.version == report["version"])).one()
    assert meta["training"]["labels"] == "db" and "hand-made" not in meta["tags"]
    assert meta["training"]["rows"] == len(read_labels_csv(archive / "labels.csv").keys)


def test_bad_labels_file_is_a_clear_error(tmp_path: Path, sqlite_settings: Settings) -> None:
    bad = tmp_path / "labels.csv"
    bad.write_text("image_id,tags\n../../etc/passwd,night\n")
    result = tagger(sqlite_settings, "train", "--labels", str(bad), "--images", str(tmp_path))
    assert result.returncode == 2
    assert "labels.csv:2" in result.stderr and "'..'" in result.stderr


def test_offline_imagenet_weights_fail_with_advice(archive: Path, sqlite_settings: Settings) -> None:
    """This machine cannot reach download.pytorch.org: the error names the two ways forward."""
    env = {"TORCH_HOME": str(archive.parent / "torch-home"), "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    result = tagger(
        sqlite_settings,
        "train",
        "--labels",
        str(archive / "labels.csv"),
        "--images",
        str(archive),
        "--size",
        "32",
        "--epochs",
        "1",
        extra_env=env,
    )
    assert result.returncode == 2
    assert "--weights FILE" in result.stderr and "--random-init" in result.stderr


def test_too_few_images_is_a_clear_error_and_random_init_trains_every_layer_at_once(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    tiny = tmp_path / "tiny"
    keys = write_stills(tiny, 3, seed=9)
    result = train(sqlite_settings, tiny, "--epochs", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "too few" in result.stderr or "no training or no held-out image" in result.stderr, result.stderr[-2000:]
    assert len(keys) == 3
    small = tmp_path / "small"
    write_stills(small, 40, seed=10)
    ran = train(sqlite_settings, small, "--epochs", "1", "--json")  # TINY has --random-init, no --freeze-epochs
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert [e["frozen"] for e in json.loads(ran.stdout)["epochs"]] == [False]


def test_the_gate_promotes_within_its_margin_and_force_overrides_it(archive: Path, sqlite_settings: Settings) -> None:
    untrained = ["--epochs", "1", "--lr", "1e-9", "--json"]
    first = json.loads(train(sqlite_settings, archive, *untrained, "--seed", "1").stdout)
    assert first["activated"] and first["gate"]["reason"] == "no model is active yet"
    within = json.loads(train(sqlite_settings, archive, *untrained, "--seed", "2", "--gate-margin", "1").stdout)
    assert within["gate"]["promote"] and within["activated"]  # F2 >= active's - 1 always holds
    assert within["gate"]["active_version"] == first["version"]
    forced = json.loads(
        train(sqlite_settings, archive, *untrained, "--seed", "3", "--gate-margin", "-1", "--force").stdout
    )
    assert not forced["gate"]["promote"] and forced["activated"]  # the gate said no; --force activated it
    listing = json.loads(tagger(sqlite_settings, "models", "list", "--json").stdout)
    assert [r["version"] for r in listing if r["active"]] == [forced["version"]]


@pytest.mark.parametrize("where", ["model store", "checkpoint folder"])
def test_a_place_training_cannot_write_stops_it_before_the_first_epoch(
    archive: Path, sqlite_settings: Settings, tmp_path: Path, where: str
) -> None:
    """A file stands where a folder must be (unwritable even for root): refused before any epoch runs."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    if where == "model store":
        settings, extra = sqlite_settings.replace(model_store=(blocker / "models").as_uri()), []
    else:
        settings, extra = sqlite_settings, ["--checkpoint", str(blocker / "ckpt")]
    result = train(settings, archive, "--epochs", "1", *extra)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"cannot write the {where}" in result.stderr or f"cannot write to the {where}" in result.stderr
    assert "training resnet18" not in result.stderr and "epoch" not in result.stderr.lower()


def test_a_candidate_that_drops_a_tag_is_held_back_and_queries_for_it_refused(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    """Labels without one tag make a candidate that cannot suggest it: the gate compares the tags both know,
    holds it back naming the dropped tag (--force promotes it), and a `missing` query for that tag, which
    could never be satisfied, is refused."""
    from tagger.sample_archive import TAGS

    dropped = TAGS[-1]
    archive = tmp_path / "small"  # the verdict does not depend on the archive's size: 40 stills, 8 held out
    write_stills(archive, 40, seed=12)
    rows = (archive / "labels.csv").read_text().splitlines()
    without = tmp_path / "labels-without.csv"
    kept = [(key, " ".join(t for t in tags.split() if t != dropped)) for key, tags in (r.split(",", 1) for r in rows)]
    without.write_text("".join(f"{key},{tags}\n" for key, tags in kept))
    untrained = ["--epochs", "1", "--lr", "1e-9", "--json", "--gate-margin", "1"]  # margin: the F2s always pass
    first = json.loads(train(sqlite_settings, archive, *untrained, "--seed", "1").stdout)
    assert first["activated"]
    held = json.loads(train(sqlite_settings, archive, *untrained, "--seed", "2", labels=str(without)).stdout)
    assert not held["gate"]["promote"] and not held["activated"]
    assert held["gate"]["dropped"] == [dropped] and f"it drops {dropped}" in held["gate"]["reason"]
    assert f"on the {len(TAGS) - 1} tags both know" in held["gate"]["reason"]
    assert tagger(sqlite_settings, "models", "activate", held["version"]).returncode == 0  # as --force would
    refused = tagger(sqlite_settings, "tag", "--query", "missing", "--tags", dropped)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f"the active model {held['version']} does not suggest '{dropped}'" in refused.stderr
