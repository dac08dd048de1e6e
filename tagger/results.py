"""Read side: find an image as a person names it, its suggestions, a tag's images, and exports.

An image is a key under a storage root, so the same file name in two folders is two images. People
name one by a path to the file, a full `file://` or `s3://` URL, a key with `--storage`, or a bare key
(which may match images in several storages: all of them are shown, each with where it lives).
One image's suggestions are those of the version that last tagged it, the one a worker served, so
nothing a worker wrote for it is hidden; `all_versions` adds the older ones. A tag's images and the
exports read one version's suggestions (the active one unless named), each page or chunk one range of
the (version, tag, probability desc, image) index, so they cost what they return and never read the
rows that older versions, kept for a rollback, still hold.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlparse

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from tagger import registry
from tagger.db.schema import Image, ModelVersion, Storage, Suggestion, Tag
from tagger.errors import NotFoundError
from tagger.model.familiarity import in_words
from tagger.storage import canonical_url
from tagger_client.paging import TagPage

# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): such cells are
# exported with a leading apostrophe, which spreadsheets show as text and hide.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ImageRef:
    id: int
    storage_url: str
    key: str
    version: str | None  # the version that last tagged it; None: never tagged
    tagged_at: datetime | None
    # How unfamiliar it looked to that version: the % of its held-out stills more familiar (None: unknown)
    unfamiliarity: float | None = None

    @property
    def familiarity(self) -> str | None:
        """The unfamiliarity in words; None for an image no version has tagged."""
        return None if self.version is None else in_words(self.unfamiliarity)

    @property
    def location(self) -> str:
        return f"{self.storage_url}/{self.key}"


def _image_refs() -> Select[int, str, str, str, datetime | None, float | None]:
    """The columns of an ImageRef, in its order: an image, its storage and the version that last tagged it."""
    return (
        select(Image.id, Storage.url, Image.key, ModelVersion.version, Image.tagged_at, Image.unfamiliarity)
        .join(Storage, Storage.id == Image.storage_id)
        .outerjoin(ModelVersion, ModelVersion.id == Image.model_version_id)
    )


def find_images(sessions: sessionmaker[Session], ref: str, *, storage_url: str | None = None) -> list[ImageRef]:
    """The images `ref` names: a key under `storage_url`, a file:// or s3:// URL, a path to a local file,
    or a bare key under any storage. Raises NotFoundError when none is known."""
    query = _image_refs()
    with sessions() as session:
        candidates = [(canonical_url(storage_url), ref)] if storage_url else _locations(session, ref)
        found: list[ImageRef] = []
        for root, key in candidates:
            if root is None:
                found += [
                    ImageRef(*row) for row in session.execute(query.where(Image.key == key).order_by(Storage.url))
                ]
            else:
                found += [ImageRef(*row) for row in session.execute(query.where(Storage.url == root, Image.key == key))]
    if not found:
        where = f" under {storage_url}" if storage_url else ""
        raise NotFoundError(f"no image {ref!r}{where} in the database (it was never submitted for tagging)")
    return found


def _locations(session: Session, ref: str) -> list[tuple[str | None, str]]:
    """(storage root, key) pairs `ref` could mean; a None root means "a bare key, under any storage".

    A path or file:// URL is matched as a path: roots are stored as file URIs (percent-encoded: a space is
    %20) and keys as the names themselves, so `photos/été 1.jpg` must not be compared as `%C3%A9t%C3%A9%201`.
    The folder is resolved and the file name kept: a link inside the folder is its own image, not its target.
    """
    if ref.startswith("s3://"):
        roots = [r for r in session.scalars(select(Storage.url)) if ref.startswith(r.rstrip("/") + "/")]
        return [(root, ref[len(root.rstrip("/")) + 1 :]) for root in sorted(roots, key=len, reverse=True)]
    if ref.startswith("file://"):
        path = unquote(urlparse(ref).path)
    elif os.path.lexists(ref):
        path = str(Path(ref).parent.resolve() / Path(ref).name)
    else:
        return [(None, ref)]
    found: list[tuple[str, str]] = []
    for root in session.scalars(select(Storage.url).where(Storage.url.startswith("file://"))):
        folder = unquote(urlparse(root).path).rstrip("/")
        if path.startswith(folder + "/"):
            found.append((root, path[len(folder) + 1 :]))
    return [(root, key) for root, key in sorted(found, key=lambda pair: len(pair[0]), reverse=True)]


@dataclass(frozen=True)
class Failure:
    """An image's latest attempt, when it failed after the image was last tagged (or it never was)."""

    job_id: str
    reason: str
    at: datetime

    def as_dict(self) -> dict[str, str]:
        return {"job_id": self.job_id, "reason": self.reason, "at": self.at.isoformat()}


def latest_failure(sessions: sessionmaker[Session], image: ImageRef) -> Failure | None:
    """The image's most recent job item, if it failed and is newer than the image's tags: the picture under
    its key may have changed since the tags shown were made (a still replaced by a truncated file)."""
    from tagger.db.schema import JobItem

    with sessions() as session:
        row = session.execute(
            select(JobItem.job_id, JobItem.state, JobItem.error, JobItem.updated_at)
            .where(JobItem.image_id == image.id, JobItem.state.in_(("done", "failed")))
            .order_by(JobItem.updated_at.desc())
            .limit(1)
        ).first()
    if row is None or row.state != "failed":
        return None
    at = _aware(row.updated_at)
    if image.tagged_at is not None and at < _aware(image.tagged_at):
        return None
    return Failure(row.job_id, row.error or "failed", at)


def _aware(at: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time tagger stores is UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def suggestions_for(
    sessions: sessionmaker[Session], image: ImageRef, *, all_versions: bool = False
) -> list[dict[str, Any]]:
    """Suggested tags of one image, best first: from the version that last tagged it (or every version)."""
    query = (
        select(Tag.name, Suggestion.probability, ModelVersion.version, ModelVersion.is_active)
        .join(Tag, Tag.id == Suggestion.tag_id)
        .join(ModelVersion, ModelVersion.id == Suggestion.model_version_id)
        .where(Suggestion.image_id == image.id)
        .order_by(ModelVersion.id.desc(), Suggestion.probability.desc())
    )
    if not all_versions:
        query = query.where(ModelVersion.version == image.version)
    with sessions() as session:
        return [
            {"tag": tag, "probability": round(p, 4), "model_version": v, "active": bool(active)}
            for tag, p, v, active in session.execute(query).all()
        ]


def images_with_tag(
    sessions: sessionmaker[Session],
    tag: str,
    *,
    min_probability: float = 0.0,
    limit: int = 100,
    cursor: str | None = None,
    least_sure: bool = False,
    offset: int = 0,
    version: str | None = None,
) -> TagPage:
    """A page of the images `version` (default: the active one) suggested `tag` for at `min_probability`
    or more, most probable first, ties by image id; with `least_sure`, the exact reverse: suggestions are
    stored from the tag's threshold up, so these are the ones nearest it, where a person's decision
    teaches the model most. Pages continue after a row's `cursor`.

    Each page is one range of the (version, tag, probability desc, image) index, at any depth. Raises
    NotFoundError for an unknown or pruned version, and the client's TagNotFound for a tag not in the
    vocabulary and InvalidCursor for a cursor no page handed out.
    """
    from tagger_client.paging import tag_page

    with sessions() as session:
        return tag_page(
            session.connection(),
            tag,
            version=_served(session, version),
            limit=limit,
            min_probability=min_probability,
            cursor=cursor,
            least_sure=least_sure,
            offset=offset,
        )


def _served(session: Session, version: str | None) -> tuple[int, str] | None:
    """(id, name) of `version`, or of the active one (None when none is active). NotFoundError for an unknown
    version, or one whose suggestions `tagger models prune` deleted."""
    row = registry.active_or_none(session) if version is None else registry.get(session, version)
    if row is not None and row.pruned_at is not None:
        raise NotFoundError(
            f"{row.version} was pruned on {row.pruned_at:%Y-%m-%d}: `tagger models prune` deleted its suggestions"
        )
    return None if row is None else (row.id, row.version)


def image_by_id(sessions: sessionmaker[Session], image_id: int) -> ImageRef:
    """One image by its id (as the review pages link to it). Raises NotFoundError."""
    with sessions() as session:
        row = session.execute(_image_refs().where(Image.id == image_id)).first()
    if row is None:
        raise NotFoundError(f"no image with id {image_id}")
    return ImageRef(*row)


def unfamiliar_images(
    sessions: sessionmaker[Session], *, limit: int, after: tuple[float, int] | None = None
) -> tuple[str | None, list[ImageRef]]:
    """The review queue "unfamiliar first": the active version's images, least familiar first (ties by id),
    `limit` after the keyset position `after` (unfamiliarity, image id); (the active version, the images)."""
    from sqlalchemy import and_, or_

    with sessions() as session:
        active = registry.active_or_none(session)
        if active is None:
            return None, []
        query = _image_refs().where(Image.model_version_id == active.id, Image.unfamiliarity.is_not(None))
        if after is not None:
            query = query.where(
                or_(Image.unfamiliarity < after[0], and_(Image.unfamiliarity == after[0], Image.id > after[1]))
            )
        rows = session.execute(query.order_by(Image.unfamiliarity.desc(), Image.id).limit(limit)).all()
        return active.version, [ImageRef(*row) for row in rows]


def tag_exists(sessions: sessionmaker[Session], name: str) -> bool:
    with sessions() as session:
        return session.scalar(select(Tag.id).where(Tag.name == name)) is not None


def export(
    sessions: sessionmaker[Session],
    out: TextIO,
    *,
    fmt: str,
    tag: str | None = None,
    min_probability: float = 0.0,
    version: str | None = None,
    chunk: int = 5000,
) -> int:
    """Stream the suggestions of `version` (default: the active one; none active: nothing), tag by tag
    (one tag with `tag`), each most probable first: pages of the same index ranges as the tag pages, so
    memory stays flat and no older version's row is read. Returns the rows written.

    CSV cells that a spreadsheet would run as a formula are written with a leading apostrophe.
    """
    from tagger_client.paging import every

    writer = csv.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(["storage", "key", "tag", "probability", "model_version"])
    n = 0
    with sessions() as session:
        served = _served(session, version)
        if served is None:
            return 0
        names = select(Tag.name).order_by(Tag.name)
        roots: dict[str, str] = {}  # a storage's cell, made once (an archive has a few storages, millions of rows)
        for name in session.scalars(names.where(Tag.name == tag) if tag else names).all():
            tag_cell = _cell(name)
            for item in every(session.connection(), name, version=served, min_probability=min_probability, chunk=chunk):
                if writer:
                    root = roots.get(item.storage_url) or roots.setdefault(item.storage_url, _cell(item.storage_url))
                    writer.writerow([root, _cell(item.key), tag_cell, f"{item.probability:.4f}", served[1]])
                else:
                    row = {
                        "storage": item.storage_url,
                        "key": item.key,
                        "tag": name,
                        "probability": round(item.probability, 4),
                        "model_version": served[1],
                    }
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
    return n


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_STARTS) else text
