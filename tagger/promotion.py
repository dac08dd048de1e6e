"""Activate, roll back, verify and prune model versions, then tell running workers.

Activation is a database flag (exactly one version is active); workers follow it. Before the
flag moves, the artifact is loaded and validated here exactly as a worker would, so a broken
version is refused at the door rather than by every worker.

Pruning keeps the active version and the few that served last (a rollback to them is instant: their
suggestions are still there) and deletes the suggestions of older ones, batch by batch. A pruned
version keeps its registry row (metrics, training record, artifact location), marked `pruned`, and
can never be activated again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from tagger import registry
from tagger.broker.events import announce
from tagger.db.schema import Image, ModelVersion, Suggestion, Tag, utcnow
from tagger.db.upsert import affected
from tagger.errors import ConfigError
from tagger_client.paging import Position, among, rows_after


@dataclass(frozen=True)
class Switch:
    previous: str | None
    active: str
    listeners: int


def verify(sessions: sessionmaker[Session], version: str) -> None:
    """Raise ArtifactError unless `version` loads and passes the worker's checks (on CPU)."""
    import torch

    from tagger.model.serving import load_serving
    from tagger.storage import open_storage

    with sessions() as session:
        row = registry.get(session, version)
        version_id, sha, tags, store = row.id, row.sha256, row.tags or None, registry.store_url(row.version, row.uri)
    load_serving(
        open_storage(store),
        version_id=version_id,
        version=version,
        sha256=sha,
        expected_tags=tags,
        tag_ids=lambda names: list(range(len(names))),
        device=torch.device("cpu"),
    )


def activate(sessions: sessionmaker[Session], version: str, *, broker_url: str | None, check: bool = True) -> Switch:
    """Make `version` the active one (loaded and checked first, unless `check` is False), then announce
    it on `broker_url`'s Redis to the running workers."""
    if check:
        with sessions() as session:
            registry.check_servable(registry.get(session, version))  # before loading an artifact for nothing
        verify(sessions, version)
    with sessions() as session, session.begin():
        previous = registry.active_or_none(session)
        previous_version = previous.version if previous else None
        if previous_version == version:
            return Switch(version, version, 0)
        registry.activate(session, version)
    return Switch(previous_version, version, announce(broker_url, version))


def rollback(sessions: sessionmaker[Session], *, broker_url: str | None) -> Switch:
    with sessions() as session, session.begin():
        current, target = registry.rollback(session)
        switch = (current.version, target.version)
    return Switch(switch[0], switch[1], announce(broker_url, switch[1]))


def pruning(sessions: sessionmaker[Session], keep: int) -> tuple[list[str], list[str]]:
    """(kept, prunable): the active version and the `keep` others that were activated most recently are
    kept; every other version that ever served (and is not pruned yet) is prunable, newest first. A version
    that never served holds no suggestions and is left as it is (a candidate can still be activated)."""
    with sessions() as session:
        served = session.execute(
            select(ModelVersion.version, ModelVersion.is_active)
            .where(ModelVersion.activated_at.is_not(None), ModelVersion.pruned_at.is_(None))
            .order_by(ModelVersion.activated_at.desc(), ModelVersion.id.desc())
        ).all()
    active = [version for version, is_active in served if is_active]
    others = [version for version, is_active in served if not is_active]
    return active + others[:keep], others[keep:]


def held(sessions: sessionmaker[Session], version: str) -> tuple[int, int]:
    """(suggestion rows, images whose newest tags are from it) of `version`, counted from indexes."""
    with sessions() as session:
        version_id = registry.get(session, version).id
        rows = session.scalar(select(func.count()).where(Suggestion.model_version_id == version_id)) or 0
        images = session.scalar(select(func.count()).where(Image.model_version_id == version_id)) or 0
    return int(rows), int(images)


def prune(
    sessions: sessionmaker[Session],
    version: str,
    *,
    force: bool = False,
    batch: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete the suggestions of `version`, `batch` rows per transaction, after marking it pruned (so it can
    never be activated meanwhile), then its embeddings and their index; returns the suggestion rows deleted.
    Never the active version. Images whose newest tags are from it are refused (ConfigError: re-tag them
    first) unless `force`, which makes them untagged
    (`tagger tag --query untagged` tags them again)."""
    with sessions() as session, session.begin():
        row = registry.get(session, version)
        if row.is_active:
            raise ConfigError(f"{version} is the active version; it is never pruned")
        images = session.scalar(select(func.count()).where(Image.model_version_id == row.id)) or 0
        if images and not force:
            raise ConfigError(
                f"{version}: {images:,} image(s) still have their newest tags from it; re-tag them with the active "
                "version first (`tagger tag --stale`), or prune with --force and they become untagged"
            )
        marked = session.execute(
            update(ModelVersion)
            .where(ModelVersion.id == row.id, ModelVersion.is_active.is_(False), ModelVersion.pruned_at.is_(None))
            .values(pruned_at=utcnow(), status="pruned")
            .execution_options(synchronize_session=False)
        )
        if not affected(marked):
            raise ConfigError(f"{version} was activated or pruned meanwhile; see `tagger models list`")
        version_id, tag_ids = row.id, list(session.scalars(select(Tag.id).order_by(Tag.id)))
    while force:  # images it tagged last: untagged now, so `--query untagged` finds them
        with sessions() as session, session.begin():
            ids = list(session.scalars(select(Image.id).where(Image.model_version_id == version_id).limit(batch)))
            if not ids:
                break
            session.execute(
                update(Image)
                .where(Image.id.in_(ids), Image.model_version_id == version_id)
                .values(model_version_id=None, tagged_at=None)
                .execution_options(synchronize_session=False)
            )
    deleted = 0
    for tag_id in tag_ids:  # each tag's rows are one range of the (version, tag, ...) index: walked once, in order
        after: Position | None = None
        while True:
            with sessions() as session, session.begin():
                rows = rows_after(
                    session.connection(),
                    version_id=version_id,
                    tag_id=tag_id,
                    limit=batch,
                    min_probability=float("-inf"),
                    after=after,
                )
                if rows:
                    deleted += affected(
                        session.execute(
                            delete(Suggestion)
                            .where(
                                Suggestion.model_version_id == version_id,
                                Suggestion.tag_id == tag_id,
                                among(session.connection(), Suggestion.image_id, [i for i, _ in rows]),
                            )
                            .execution_options(synchronize_session=False)
                        )
                    )
            if progress is not None and rows:
                progress(len(rows))
            if len(rows) < batch:
                break
            after = Position(rows[-1][1], rows[-1][0])
    from tagger.db.vectors import prune_vectors

    with sessions() as session, session.begin():  # its embeddings and their index go with it
        prune_vectors(session, session.scalars(select(ModelVersion.id).where(ModelVersion.pruned_at.is_(None))))
    return deleted
