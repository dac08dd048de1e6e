"""Label files as people save them, and the decisions people make, read the same on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from tagger import labels
from tagger.db.schema import Label, Tag


def _csv(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "labels.csv"
    path.write_bytes(data)
    return path


def test_an_import_with_an_image_on_two_rows_and_decisions_later(settings, sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL, one image on two rows once broke the import (CardinalityViolation); now they merge."""
    path = _csv(tmp_path, b"image_id,tags\nplain.jpg,night\nplain.jpg,car\nother.jpg,Car\n")
    data, written = labels.import_csv(sessions, path, storage_url=tmp_path.as_uri())
    assert (len(data.keys), written) == (2, 3)
    again, _ = labels.import_csv(sessions, path, storage_url=tmp_path.as_uri())  # idempotent
    with sessions() as session:
        rows = session.execute(select(Tag.name, Label.positive).join(Label, Label.tag_id == Tag.id)).all()
        image_id = session.scalar(select(Label.image_id).join(Tag, Tag.id == Label.tag_id).where(Tag.name == "night"))
    assert sorted(rows) == [("car", True), ("car", True), ("night", True)]
    # A person rejects "night" for that image: the decision replaces the label, a negative now.
    labels.decide(sessions, image_id, rejected=["night"], by="ana")
    read = labels.labels_from_db(session := sessions())
    session.close()
    by_key = dict(zip(read.keys, read.tags, strict=True))
    assert by_key == {"other.jpg": ["car"], "plain.jpg": ["car"]}
    images, per_tag = labels.stats(sessions)
    assert (images, per_tag) == (2, [("car", 2, 0), ("night", 0, 1)])


def test_a_correction_in_the_label_error_queue_is_what_the_next_training_reads(
    settings, sessions, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A version's training kept its labels most likely wrong; registering gives each its image; a person rejects
    one in the queue (the page's decision), and `tagger train --labels db` then reads the corrected label."""
    from tagger import registry
    from tagger.model.meta import ArtifactMeta

    path = _csv(tmp_path, b"image_id,tags\na.jpg,night circle\nb.jpg,circle\n")
    labels.import_csv(sessions, path, storage_url=tmp_path.as_uri())
    suspect = {"storage": tmp_path.as_uri(), "key": "a.jpg", "tag": "night", "labelled": True, "probability": 0.02}
    meta = ArtifactMeta(
        version="m-suspects",
        arch="resnet18",
        tags=["circle", "night"],
        input_size=32,
        training={"label_suspects": [{**suspect, "score": 0.9, "confident": True}]},
    )
    with sessions() as session, session.begin():
        registry.register(session, meta, uri="file:///nowhere/m-suspects")
    version, found = labels.label_suspects(sessions)
    assert version == "m-suspects" and [(e["key"], e["tag"], e["decision"]) for e in found] == [
        ("a.jpg", "night", None)
    ]
    labels.decide_known(sessions, found[0]["image_id"], "night", positive=False, by="ana")
    assert labels.label_suspects(sessions)[1][0]["decision"] is False  # decided: off the queue
    with sessions() as session:
        read = labels.labels_from_db(session)
    assert dict(zip(read.keys, read.tags, strict=True)) == {"a.jpg": ["circle"], "b.jpg": ["circle"]}
