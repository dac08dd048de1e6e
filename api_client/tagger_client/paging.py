"""Keyset pages of a tag's images: one model version's suggestions, most probable first, ties by image id.

A page starts after a cursor, the position (probability, image id) of the last row a reader saw, so any
page at any depth is a range of the index suggestions(model_version_id, tag_id, probability DESC, image_id)
and costs what it returns. The order is total, so pages cover every row exactly once however many rows
tie (a model that saturates at 1.0 writes many). The server (the API, the review pages, `tagger export`)
and this client page through the same statements.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, Select, String, any_, cast, func, literal, select

from tagger_client import tables
from tagger_client.errors import InvalidCursor, TagNotFound

MAX_IMAGE_ID = 2**63 - 1  # image ids are BIGINT
MAX_CURSOR_CHARS = 200


@dataclass(frozen=True)
class Position:
    """Where a page ends: the last row's probability (exactly as stored) and image id."""

    probability: float
    image_id: int

    def cursor(self) -> str:
        """Opaque to readers: URL-safe base64 of JSON, no padding."""
        raw = json.dumps([self.probability, self.image_id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def of(cls, cursor: str) -> Position:
        """The position a cursor names; InvalidCursor, saying so, for anything no page handed out."""
        if len(cursor) > MAX_CURSOR_CHARS:
            raise InvalidCursor(f"cursor is {len(cursor)} characters long; a page's cursors are far shorter")
        try:
            value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (binascii.Error, ValueError):  # not base64, not UTF-8, not JSON
            value = None
        if (
            isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], int | float)
            and not isinstance(value[0], bool)
            and math.isfinite(value[0])
            and isinstance(value[1], int)
            and not isinstance(value[1], bool)
            and 0 <= value[1] <= MAX_IMAGE_ID
        ):
            return cls(float(value[0]), value[1])
        raise InvalidCursor(
            f"cursor {cursor[:40]!r} is not one a page handed out: pass a row's `cursor` (or next_cursor) as is"
        )


def ranges(
    *, version_id: int, tag_id: int, min_probability: float, after: Position | None, least_sure: bool
) -> list[Select[Any]]:
    """The statements that read the rows after `after`, in order, each one index range (no sort):
    the rest of the cursor's own probability by image id, then the probabilities beyond it.

    Best first is (probability desc, image id asc); least sure first is its exact reverse, so a page
    before a position is the page after it in the other order.
    """
    s = tables.suggestions
    base = select(s.c.image_id, s.c.probability).where(
        s.c.model_version_id == version_id, s.c.tag_id == tag_id, s.c.probability >= min_probability
    )
    order = (s.c.probability, s.c.image_id.desc()) if least_sure else (s.c.probability.desc(), s.c.image_id)
    if after is None:
        return [base.order_by(*order)]
    p, image_id = after.probability, after.image_id
    tied = base.where(s.c.probability == p)
    if least_sure:
        return [
            tied.where(s.c.image_id < image_id).order_by(s.c.image_id.desc()),
            base.where(s.c.probability > p).order_by(*order),
        ]
    return [
        tied.where(s.c.image_id > image_id).order_by(s.c.image_id),
        base.where(s.c.probability < p).order_by(*order),
    ]


def rows_after(
    conn: Any,
    *,
    version_id: int,
    tag_id: int,
    limit: int,
    min_probability: float = 0.0,
    after: Position | None = None,
    least_sure: bool = False,
    offset: int = 0,
) -> list[tuple[int, float]]:
    """Up to `limit` (image id, probability) rows after `after`, in the page order. `offset` (only without
    `after`: the API's deprecated parameter) skips that many index entries first."""
    found: list[tuple[int, float]] = []
    statements = ranges(
        version_id=version_id, tag_id=tag_id, min_probability=min_probability, after=after, least_sure=least_sure
    )
    if offset:
        if after is not None:
            raise InvalidCursor("give a cursor or an offset, not both")
        statements = [statements[0].offset(offset)]
    for statement in statements:
        found += [(int(i), float(p)) for i, p in conn.execute(statement.limit(limit - len(found))).all()]
        if len(found) >= limit:
            break
    return found


class TaggedImage(NamedTuple):
    """One row of a tag's page; its `cursor` continues after it. (A tuple: an export makes millions.)"""

    image_id: int
    storage_url: str
    key: str
    probability: float  # exactly as stored (`as_dict` rounds it for people)
    model_version: str

    @property
    def cursor(self) -> str:
        return Position(self.probability, self.image_id).cursor()

    def as_dict(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "storage_url": self.storage_url,
            "key": self.key,
            "probability": round(self.probability, 4),
            "model_version": self.model_version,
            "cursor": self.cursor,
        }


@dataclass(frozen=True)
class TagPage:
    """A page of one tag's images by one version; `next_cursor` is None when it was the last."""

    tag: str
    model_version: str | None  # None: no version is active (nothing is served, so nothing is listed)
    items: list[TaggedImage]
    next_cursor: str | None


def version_id_of(conn: Any, version: str | None) -> tuple[int, str] | None:
    """(id, name) of `version`, or of the active one when None; None when none is active. LookupError for a
    named version that does not exist."""
    m = tables.model_versions
    query = select(m.c.id, m.c.version)
    query = query.where(m.c.version == version) if version else query.where(m.c.is_active.is_(True))
    row = conn.execute(query).first()
    if row is None and version:
        raise LookupError(f"no model version {version!r}")
    return None if row is None else (int(row[0]), str(row[1]))


def among(conn: Any, column: Any, ids: Sequence[int]) -> Any:
    """`column IN ids` as one parameter (a PostgreSQL array, a JSON array on SQLite): a page's thousands of
    ids as as many bind parameters cost 60 ms a page of 5,000 to expand and parse (profiled), more than
    the query."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(cast(literal("{" + ",".join(map(str, ids)) + "}", String()), ARRAY(BigInteger)))
    if conn.dialect.name == "sqlite":
        each = func.json_each(json.dumps(list(ids))).table_valued("value")
        return column.in_(select(each.c.value))
    return column.in_(list(ids))


def locations(conn: Any, image_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """image id -> (storage url, key), by primary key."""
    if not image_ids:
        return {}
    i, st = tables.images, tables.storages
    query = select(i.c.id, st.c.url, i.c.key).join(st, st.c.id == i.c.storage_id)
    rows = conn.execute(query.where(among(conn, i.c.id, image_ids))).all()
    return {int(image_id): (url, key) for image_id, url, key in rows}


def tag_page(
    conn: Any,
    tag: str,
    *,
    version: tuple[int, str] | None,
    limit: int,
    min_probability: float = 0.0,
    cursor: str | None = None,
    least_sure: bool = False,
    offset: int = 0,
) -> TagPage:
    """A page of `tag` by `version` (id, name; None: an empty page). TagNotFound for a tag not in the
    vocabulary, InvalidCursor for a cursor no page handed out."""
    after = Position.of(cursor) if cursor else None
    t = tables.tags
    tag_id = conn.execute(select(t.c.id).where(t.c.name == tag)).scalar()
    if tag_id is None:
        raise TagNotFound(f"no tag {tag!r} in the vocabulary")
    if version is None:
        return TagPage(tag, None, [], None)
    found = rows_after(
        conn,
        version_id=version[0],
        tag_id=tag_id,
        limit=limit,
        min_probability=min_probability,
        after=after,
        least_sure=least_sure,
        offset=offset,
    )
    where = locations(conn, [image_id for image_id, _ in found])
    items = [
        TaggedImage(image_id, *where[image_id], p, version[1])
        for image_id, p in found
        if image_id in where  # a row whose image was deleted since (never, but not a crash)
    ]
    more = len(found) == limit and bool(found)
    return TagPage(tag, version[1], items, Position(found[-1][1], found[-1][0]).cursor() if more else None)


def every(
    conn: Any, tag: str, *, version: tuple[int, str] | None, min_probability: float = 0.0, chunk: int = 5000
) -> Iterator[TaggedImage]:
    """Every row of `tag` by `version`, page after page of `chunk` rows: memory stays flat however many."""
    cursor = None
    while True:
        page = tag_page(conn, tag, version=version, limit=chunk, min_probability=min_probability, cursor=cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
