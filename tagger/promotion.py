"""Activate, roll back and verify model versions, then tell running workers.

Activation is a database flag (exactly one version is active); workers follow it. Before the
flag moves, the artifact is loaded and validated here exactly as a worker would, so a broken
version is refused at the door rather than by every worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from tagger import registry
from tagger.broker.events import announce


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
