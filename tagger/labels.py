"""Tags people confirmed: accepted suggestions and tags entered by hand (the training data in the database)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tagger import registry
from tagger.db.images import image_ids
from tagger.db.schema import Image, Label, ModelVersion, Suggestion, Tag
from tagger.db.upsert import insert_ignore
from tagger.errors import NotFoundError
from tagger.storage import validate_key


def add(
    sessions: sessionmaker[Session],
    key: str,
    tags: Sequence[str],
    *,
    source: str = "manual",
    storage_url: str | None = None,
) -> int:
    """Confirm `tags` for the image `key`; returns how many labels are new."""
    key = validate_key(key)
    with sessions() as session, session.begin():
        image_id = image_ids(session, [key], storage_url=storage_url)[key]
        return _insert(session, {key: image_id}, {key: list(tags)}, source)


def accept(sessions: sessionmaker[Session], key: str, tags: Sequence[str] | None = None) -> list[str]:
    """Accept the active model's suggestions for one image (all of them, or only `tags`)."""
    key = validate_key(key)
    with sessions() as session, session.begin():
        image_id = session.scalars(select(Image.id).where(Image.key == key)).first()
        if image_id is None:
            raise NotFoundError(f"no image {key!r} in the database")
        query = (
            select(Tag.name)
            .join(Suggestion, Suggestion.tag_id == Tag.id)
            .join(ModelVersion, ModelVersion.id == Suggestion.model_version_id)
            .where(Suggestion.image_id == image_id, ModelVersion.is_active.is_(True))
        )
        if tags:
            query = query.where(Tag.name.in_(list(tags)))
        names = sorted(session.scalars(query))
        _insert(session, {key: image_id}, {key: names}, "accepted")
        return names


def import_csv(sessions: sessionmaker[Session], path: Path, *, storage_url: str | None) -> tuple[int, int]:
    """Load `image_id,tags` rows as manual labels; returns (images, new labels)."""
    from training.data import read_labels_csv

    data = read_labels_csv(path)
    new = 0
    for start in range(0, len(data.keys), 500):
        keys, tags = data.keys[start : start + 500], data.tags[start : start + 500]
        with sessions() as session, session.begin():
            ids = image_ids(session, keys, storage_url=storage_url)
            new += _insert(session, ids, dict(zip(keys, tags, strict=True)), "manual")
    return len(data.keys), new


def stats(sessions: sessionmaker[Session]) -> tuple[int, list[tuple[str, int]]]:
    with sessions() as session:
        images = session.scalar(select(func.count(func.distinct(Label.image_id)))) or 0
        per_tag = session.execute(
            select(Tag.name, func.count()).join(Label, Label.tag_id == Tag.id).group_by(Tag.name).order_by(Tag.name)
        ).all()
    return int(images), [(name, int(n)) for name, n in per_tag]


def _insert(session: Session, ids: dict[str, int], tags: dict[str, list[str]], source: str) -> int:
    names = sorted({t for row in tags.values() for t in row})
    if not names:
        return 0
    tag_ids = registry.ensure_tags(session, names)
    rows = [{"image_id": ids[k], "tag_id": tag_ids[t], "source": source} for k, row in tags.items() for t in row]
    return len(
        session.execute(insert_ignore(session, Label, rows, ["image_id", "tag_id"]).returning(Label.tag_id)).all()
    )
