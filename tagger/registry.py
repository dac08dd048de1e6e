"""The model registry: versions in the database, exactly one active, artifacts in the model store."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tagger.db.images import image_ids, storage_id
from tagger.db.schema import ModelVersion, Tag, utcnow
from tagger.db.upsert import insert_ignore
from tagger.errors import ArtifactError, ConfigError, NoActiveModelError, NotFoundError
from tagger.model.meta import ArtifactMeta


def register(session: Session, meta: ArtifactMeta, *, uri: str, activate_if_none: bool = True) -> ModelVersion:
    """Record a saved artifact as a candidate; activate it when no version is active yet."""
    row = ModelVersion(
        version=meta.version,
        arch=meta.arch,
        uri=uri,
        sha256=meta.weights_sha256,
        status="candidate",
        is_active=False,
        meta=_finite(
            {
                "tags": meta.tags,
                "input_size": meta.input_size,
                "metrics": meta.metrics,
                "training": _with_image_ids(session, meta.training),
            }
        ),
    )
    session.add(row)
    session.flush()
    ensure_tags(session, meta.tags)
    if activate_if_none and active_or_none(session) is None:
        activate(session, meta.version)
    return row


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinite float as None: a loss that overflowed in one epoch is history,
    and PostgreSQL's JSON refuses NaN and Infinity (the row would fail after the artifact was saved)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _with_image_ids(session: Session, training: dict[str, Any]) -> dict[str, Any]:
    """The training record with an image id on each image of its review lists, the highest-loss held-out
    images and the labels most likely wrong (inserted when a label file named images no job had seen), so
    the review pages can show them and record decisions."""
    lists = {name: training.get(name) or [] for name in ("highest_losses", "label_suspects")}
    if not any(lists.values()):
        return training
    by_storage: dict[str, set[str]] = {}
    for entries in lists.values():
        for entry in entries:
            by_storage.setdefault(entry["storage"], set()).add(entry["key"])
    ids = {
        (url, key): image_id
        for url, keys in by_storage.items()
        for key, image_id in image_ids(session, storage_id(session, url), sorted(keys)).items()
    }
    return {
        **training,
        **{
            name: [{**e, "image_id": ids[(e["storage"], e["key"])]} for e in entries] for name, entries in lists.items()
        },
    }


def store_url(version: str, uri: str) -> str:
    """The model store a version was saved to (its recorded `uri` is <store>/<version>): every reader loads
    it from there, whatever its own TAGGER_MODEL_STORE says."""
    suffix = "/" + version
    if not uri.endswith(suffix):
        raise ArtifactError(f"{version}: recorded location {uri!r} does not end with /{version}")
    return uri[: -len(suffix)]


def ensure_tags(session: Session, names: Iterable[str]) -> dict[str, int]:
    """Insert any missing tag names and return name -> id for all of them."""
    names = list(names)
    if names:
        session.execute(insert_ignore(session, Tag, [{"name": n} for n in names], ["name"]))
    rows = session.execute(select(Tag.name, Tag.id).where(Tag.name.in_(names))).all()
    return {name: tag_id for name, tag_id in rows}


def tag_ids(session: Session, names: Iterable[str]) -> dict[str, int]:
    """name -> id of existing tags (read only); registration inserted them."""
    names = list(names)
    ids = {name: tag_id for name, tag_id in session.execute(select(Tag.name, Tag.id).where(Tag.name.in_(names)))}
    missing = [n for n in names if n not in ids]
    if missing:
        from tagger.errors import ArtifactError

        raise ArtifactError(f"tags {missing[:5]} are not registered; was the model registered with `tagger train`?")
    return ids


def get(session: Session, version: str) -> ModelVersion:
    row = session.scalars(select(ModelVersion).where(ModelVersion.version == version)).one_or_none()
    if row is None:
        raise NotFoundError(f"no model version {version!r}; see `tagger models list`")
    return row


def active_or_none(session: Session) -> ModelVersion | None:
    return session.scalars(select(ModelVersion).where(ModelVersion.is_active.is_(True))).one_or_none()


def active(session: Session) -> ModelVersion:
    row = active_or_none(session)
    if row is None:
        raise NoActiveModelError()
    return row


def check_servable(row: ModelVersion) -> None:
    """ConfigError for a version that can never serve again: `tagger models prune` deleted its suggestions."""
    if row.pruned_at is not None:
        raise ConfigError(
            f"{row.version} was pruned on {row.pruned_at:%Y-%m-%d} (`tagger models prune` deleted its suggestions), "
            "so it cannot be activated: activate a kept version (`tagger models list`) or train a new one"
        )


def activate(session: Session, version: str) -> ModelVersion:
    """Make `version` the one active model (in the caller's transaction); never a pruned one."""
    row = get(session, version)
    check_servable(row)
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.is_active.is_(True), ModelVersion.id != row.id)
        .values(is_active=False, status="retired")
    )
    session.flush()
    row.is_active = True
    row.status = "active"
    row.activated_at = utcnow()
    session.flush()
    return row


def rollback(session: Session) -> tuple[ModelVersion, ModelVersion]:
    """Re-activate the version that was active before the current one; returns (from, to).

    The current version is marked `rolled_back`, so rolling back twice walks further back.
    """
    current = active(session)
    target = session.scalars(
        select(ModelVersion)
        .where(ModelVersion.status == "retired", ModelVersion.activated_at.is_not(None), ModelVersion.id != current.id)
        .order_by(ModelVersion.activated_at.desc(), ModelVersion.id.desc())
        .limit(1)
    ).first()
    if target is None:
        raise NotFoundError(f"no earlier active version to roll back to from {current.version}")
    activate(session, target.version)
    current.status = "rolled_back"
    session.flush()
    return current, target


def refuse(session: Session, version: str, reason: str, *, fallback: str | None) -> bool:
    """Record that `version` failed to load; if it is still active, re-activate `fallback`. True if rolled back."""
    row = get(session, version)
    row.status, row.error = "refused", reason[:2000]
    if row.is_active and fallback and fallback != version:
        row.is_active = False
        session.flush()
        activate(session, fallback)
        row.status = "refused"
        session.flush()
        return True
    session.flush()
    return False


def list_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))
