from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from tagger.errors import ArtifactError
from tagger.model import artifact
from tagger.model.architectures import build_model
from tagger.model.meta import ArtifactMeta
from tagger.storage import LocalStorage

TAGS = ["night", "man", "car"]


def saved(tmp_path: Path) -> tuple[LocalStorage, ArtifactMeta, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model("resnet18", len(TAGS)).eval()
    store = LocalStorage(tmp_path)
    meta = artifact.save(model, ArtifactMeta(version="v1", arch="resnet18", tags=TAGS, input_size=32), store)
    return store, meta, model


def test_round_trip_gives_the_same_outputs(tmp_path: Path) -> None:
    store, meta, model = saved(tmp_path)
    loaded, loaded_meta = artifact.load(store, "v1", expected_sha256=meta.weights_sha256)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x))
    assert loaded_meta.tags == TAGS and loaded_meta.resize == "squish" and loaded_meta.threshold == 0.2
    assert json.loads((tmp_path / "v1" / "model.json").read_text())["weights_sha256"] == meta.weights_sha256


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    store, meta, _ = saved(tmp_path)
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        artifact.load(store, "v1", expected_sha256="0" * 64)


def test_truncated_weights_are_refused_by_the_checksum_and_by_the_parser(tmp_path: Path) -> None:
    store, meta, _ = saved(tmp_path)
    path = tmp_path / "v1" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        artifact.load(store, "v1", expected_sha256=meta.weights_sha256)
    # Registered with the truncated file's own digest (as a tampered registry would), the checksum passes
    # and the safetensors parser must refuse it.
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "v1" / "model.json").write_text(ArtifactMeta(**{**asdict(meta), "weights_sha256": digest}).to_json())
    with pytest.raises(ArtifactError, match="not a valid safetensors file"):
        artifact.load(store, "v1", expected_sha256=digest)


def test_a_pickle_payload_is_never_loaded(tmp_path: Path) -> None:
    store, meta, model = saved(tmp_path)
    path = tmp_path / "v1" / "model.safetensors"
    torch.save(model.state_dict(), path)  # a pickle-based file in place of safetensors
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    meta_path = tmp_path / "v1" / "model.json"
    raw = json.loads(meta_path.read_text())
    raw["weights_sha256"] = digest  # even with a matching checksum
    meta_path.write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="not a valid safetensors"):
        artifact.load(store, "v1", expected_sha256=digest)


def test_wrong_vocabulary_width_is_refused(tmp_path: Path) -> None:
    store, meta, _ = saved(tmp_path)
    meta_path = tmp_path / "v1" / "model.json"
    raw = json.loads(meta_path.read_text())
    raw["tags"] = TAGS + ["extra"]
    meta_path.write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="shape"):
        artifact.load(store, "v1", expected_sha256=meta.weights_sha256)


def test_a_vocabulary_other_than_the_registered_one_is_refused_before_serving(tmp_path: Path) -> None:
    from tagger.model.serving import load_serving

    store, meta, _ = saved(tmp_path)

    def serve(expected: list[str]) -> object:
        return load_serving(
            store,
            version_id=1,
            version="v1",
            sha256=meta.weights_sha256,
            expected_tags=expected,
            tag_ids=lambda names: list(range(len(names))),
            device=torch.device("cpu"),
        )

    assert serve(TAGS).version == "v1"  # type: ignore[attr-defined]
    with pytest.raises(ArtifactError, match="vocabulary"):
        serve(["night", "car", "man"])  # same tags, other output order: every probability would be mislabelled


def test_registering_keeps_each_highest_loss_image_by_storage_and_no_number_json_refuses(tmp_path: Path) -> None:
    from sqlalchemy import select

    from tagger import registry
    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.db.schema import Image, Storage

    engine = make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    worst = [
        {"storage": "file:///one", "key": "same.jpg", "loss": 2.0, "tags": ["night"], "worst": []},
        {"storage": "file:///two", "key": "same.jpg", "loss": 1.0, "tags": [], "worst": []},
    ]
    meta = ArtifactMeta(
        version="v1",
        arch="resnet18",
        tags=TAGS,
        input_size=32,
        weights_sha256="0" * 64,
        metrics={"f2": float("nan"), "map": 0.5},
        training={"history": [{"epoch": 1, "train_loss": float("inf"), "valid_loss": 0.7}], "highest_losses": worst},
    )
    with sessions() as session, session.begin():
        registry.register(session, meta, uri="file:///models/v1")
    with sessions() as session:
        kept = registry.get(session, "v1").meta
        ids = [e["image_id"] for e in kept["training"]["highest_losses"]]
        found = dict(session.execute(select(Image.id, Storage.url).join(Storage).where(Image.id.in_(ids))).all())
    assert [found[i] for i in ids] == ["file:///one", "file:///two"]  # the same key under two roots: two images
    assert kept["metrics"] == {"f2": None, "map": 0.5}
    assert kept["training"]["history"] == [{"epoch": 1, "train_loss": None, "valid_loss": 0.7}]
    engine.dispose()


def test_a_field_a_newer_release_added_is_left_out_and_a_missing_one_is_still_refused() -> None:
    """Rolling upgrades: a worker of this release loads the model a newer `tagger train` made (a new field
    of its metadata is ignored), while metadata without a field this release needs stays malformed."""
    meta = ArtifactMeta(version="v1", arch="resnet18", tags=["night", "car"], input_size=32)
    newer = json.loads(meta.to_json()) | {"a_field_from_the_future": [1, 2, 3]}
    assert ArtifactMeta.from_json(json.dumps(newer)) == meta
    older = {k: v for k, v in json.loads(meta.to_json()).items() if k != "tags"}
    with pytest.raises(ArtifactError, match="malformed"):
        ArtifactMeta.from_json(json.dumps(older))
