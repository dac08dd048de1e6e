"""Labelled stills: the `image_id,tags` CSV, and the tags people confirmed in the database (the training data)."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tagger import registry
from tagger.db.images import image_ids
from tagger.db.schema import Image, Label, ModelVersion, Suggestion, Tag
from tagger.db.upsert import insert_ignore
from tagger.errors import ConfigError, NotFoundError, PermanentError
from tagger.storage import validate_key


@dataclass(frozen=True)
class LabelledSet:
    keys: list[str]
    tags: list[list[str]]

    @property
    def vocabulary(self) -> list[str]:
        return sorted({t for row in self.tags for t in row})

    def tag_counts(self) -> Counter[str]:
        return Counter(t for row in self.tags for t in row)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for key, tags in zip(self.keys, self.tags, strict=True):
            digest.update(f"{key}\t{' '.join(sorted(tags))}\n".encode())
        return digest.hexdigest()

    def split(self, valid_fraction: float) -> tuple[LabelledSet, LabelledSet]:
        """A deterministic split by key hash: the same image is held out on every run."""
        train, valid = LabelledSet([], []), LabelledSet([], [])
        for key, tags in zip(self.keys, self.tags, strict=True):
            bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
            target = valid if bucket < valid_fraction else train
            target.keys.append(key)
            target.tags.append(tags)
        if not train.keys or not valid.keys:
            raise ConfigError(f"split of {len(self.keys)} rows left an empty train or validation set")
        return train, valid


def labels_from_db(session: Session) -> tuple[LabelledSet, set[str]]:
    """Tags people confirmed (accepted suggestions and manual tags): the dataset and the storages it lives in."""
    rows = session.execute(
        select(Image.key, Image.storage_url, Tag.name)
        .join(Label, Label.image_id == Image.id)
        .join(Tag, Tag.id == Label.tag_id)
        .order_by(Image.key, Tag.name)
    ).all()
    by_key: dict[str, list[str]] = {}
    storages: set[str] = set()
    for key, storage_url, tag in rows:
        by_key.setdefault(key, []).append(tag)
        if storage_url:
            storages.add(storage_url)
    if not by_key:
        raise ConfigError("the database has no confirmed labels yet; see `tagger labels --help`")
    return LabelledSet(list(by_key), list(by_key.values())), storages


def read_labels_csv(path: Path) -> LabelledSet:
    """Read `image_id,tags` rows (a header line is optional); image_id is the storage key."""
    if not path.is_file():
        raise ConfigError(f"labels file not found: {path}")
    keys: list[str] = []
    tags: list[list[str]] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or (lineno == 1 and row[0].strip().lower() in ("image_id", "image", "id")):
                continue
            if len(row) != 2:
                raise ConfigError(f"{path}:{lineno}: expected `image_id,tags`, got {len(row)} fields")
            try:
                keys.append(validate_key(row[0].strip()))
            except PermanentError as exc:
                raise ConfigError(f"{path}:{lineno}: {exc}") from None
            tags.append(row[1].split())
    if not keys:
        raise ConfigError(f"{path} has no labelled rows")
    return LabelledSet(keys, tags)


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
