"""Duplicates as groups: near-identical stills (re-encodes, resizes, small crops, colour grades, burned-in
subtitles, consecutive frames of one shot) gathered into groups, in the active version's space.

Two images are near-duplicates when the cosine similarity of their embeddings is at least the threshold
(TAGGER_DUPLICATE_THRESHOLD, measured on generated bursts with known groups: BENCHMARKS.md). A group is a
connected component of that relation (union-find over the pairs the search finds): A like B and B like C
puts all three in one group even when A and C are further apart, as consecutive frames of a panning shot
are. Only images the active version embedded take part; the answer says how many await their vectors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tagger import registry
from tagger.db.schema import Image, Storage
from tagger.db.vectors import awaiting_vectors, close_pairs


@dataclass(frozen=True)
class Member:
    image_id: int
    storage_url: str
    key: str


@dataclass(frozen=True)
class Group:
    """Near-identical stills, by image id; `similarity` is the lowest similarity of the pairs that joined them."""

    members: list[Member]
    similarity: float

    @property
    def size(self) -> int:
        return len(self.members)

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "similarity": round(self.similarity, 4),
            "images": [{"image_id": m.image_id, "storage_url": m.storage_url, "key": m.key} for m in self.members],
        }


@dataclass(frozen=True)
class Duplicates:
    """A page of groups, each by its smallest image id, in that order; `next_cursor` continues after it."""

    model_version: str
    threshold: float
    groups: list[Group]
    awaiting_vectors: int
    next_cursor: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "threshold": self.threshold,
            "awaiting_vectors": self.awaiting_vectors,
            "groups": [g.as_dict() for g in self.groups],
            "next_cursor": None if self.next_cursor is None else str(self.next_cursor),
        }


def connected_groups(pairs: Iterable[tuple[int, int, float]]) -> list[tuple[list[int], float]]:
    """Union-find over (a, b, similarity) pairs: each connected component as (its ids ascending, the lowest
    similarity of the pairs in it), ordered by smallest id. Pure, for the command and the split alike."""
    parent: dict[int, int] = {}
    weakest: dict[int, float] = {}

    def root(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving: trees stay shallow
            x = parent[x]
        return x

    for a, b, similarity in pairs:
        ra, rb = root(a), root(b)
        low = min(similarity, weakest.get(ra, 1.0), weakest.get(rb, 1.0))
        if ra != rb:
            ra, rb = min(ra, rb), max(ra, rb)  # the smaller root wins: deterministic
            parent[rb] = ra
            weakest.pop(rb, None)
        weakest[ra] = low
    members: dict[int, list[int]] = {}
    for x in parent:
        members.setdefault(root(x), []).append(x)
    return sorted(((sorted(ids), weakest.get(r, 1.0)) for r, ids in members.items()), key=lambda g: g[0][0])


def find_duplicates(
    sessions: sessionmaker[Session], *, threshold: float, min_size: int = 2, limit: int = 100, cursor: int = 0
) -> Duplicates:
    """The groups of at least `min_size` near-identical images (similarity at least `threshold`) in the active
    version's space whose smallest image id is above `cursor`, at most `limit` of them. Every page computes
    the groups afresh (a search per image on PostgreSQL, one matrix product on SQLite): pages are consistent
    while no image is tagged between them."""
    with sessions() as session:
        active = registry.active(session)
        components = [
            (ids, low)
            for ids, low in connected_groups(close_pairs(session, active.id, threshold))
            if len(ids) >= min_size and ids[0] > cursor
        ]
        page = components[:limit]
        wanted = [i for ids, _ in page for i in ids]
        where = {
            image_id: (url, key)
            for image_id, url, key in session.execute(
                select(Image.id, Storage.url, Image.key)
                .join(Storage, Storage.id == Image.storage_id)
                .where(Image.id.in_(wanted))
            )
        }
        groups = [Group([Member(i, *where[i]) for i in ids if i in where], low) for ids, low in page]
        more = len(components) > limit
        return Duplicates(
            active.version,
            threshold,
            groups,
            awaiting_vectors(session, active.id),
            page[-1][0][0] if more else None,
        )
