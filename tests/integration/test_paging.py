"""Keyset pages of a tag's images and of a job's items, on SQLite and PostgreSQL: every row exactly once, in
one total order, with ties and while rows arrive; and on PostgreSQL, a deep page is one range of an index."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.dialects import postgresql

from tagger import registry
from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.db.images import image_ids, storage_id
from tagger.db.schema import Suggestion
from tagger.model.meta import ArtifactMeta
from tagger.results import images_with_tag
from tagger_client import TaggerClient
from tagger_client.errors import InvalidCursor
from tagger_client.paging import Position, ranges, rows_after

TAGS = ("night", "day")


def versions(sessions: Any, names: tuple[str, ...] = ("v1", "v2", "v3")) -> dict[str, int]:
    """Registered versions, each activated in turn (the last is active); no artifact: nothing here loads one."""
    with sessions() as session, session.begin():
        for name in names:
            meta = ArtifactMeta(version=name, arch="resnet18", tags=list(TAGS), input_size=32)
            registry.register(session, meta, uri=f"file:///models/{name}", activate_if_none=False)
            registry.activate(session, name)
        return {name: registry.get(session, name).id for name in names}


def images(sessions: Any, count: int, prefix: str = "k") -> list[int]:
    keys = [f"{prefix}/{i:05d}.jpg" for i in range(count)]
    with sessions() as session, session.begin():
        found = image_ids(session, storage_id(session, "file:///archive"), keys)
    return [found[k] for k in keys]


def suggest(sessions: Any, version_id: int, rows: list[tuple[int, float]], tag: str = "night") -> None:
    with sessions() as session, session.begin():
        tag_id = registry.ensure_tags(session, [tag])[tag]
        session.execute(
            insert(Suggestion),
            [{"image_id": i, "tag_id": tag_id, "model_version_id": version_id, "probability": p} for i, p in rows],
        )


def probability(k: int) -> float:
    """A third of the rows saturate at 1.0, every seventh of the rest ties at 0.5, the others repeat too."""
    if k % 3 == 0:
        return 1.0
    return 0.5 if k % 7 == 0 else round(0.3 + (k * 37 % 60) / 100, 2)


def walk(page: Any) -> Iterator[Any]:
    """Every item of every page, following each page's next cursor."""
    cursor = None
    while True:
        found = page(cursor)
        yield from found.items
        if found.next_cursor is None:
            return
        cursor = found.next_cursor


def test_pages_cover_every_row_once_in_one_total_order_with_ties(settings, sessions) -> None:  # type: ignore[no-untyped-def]
    ids = versions(sessions)
    image = images(sessions, 150)
    active = [(i, probability(k)) for k, i in enumerate(image)]
    suggest(sessions, ids["v3"], active)
    for old in ("v1", "v2"):  # older versions' rows, kept for a rollback: never on the active version's pages
        suggest(sessions, ids[old], [(i, 0.99) for i in image])
    suggest(sessions, ids["v3"], [(i, 1.0) for i in image[:20]], tag="day")
    best = [i for i, _ in sorted(active, key=lambda r: (-r[1], r[0]))]

    shown = list(walk(lambda c: images_with_tag(sessions, "night", limit=7, cursor=c)))
    assert [s.image_id for s in shown] == best  # each row once; ties at 1.0 and 0.5 by image id
    assert {s.model_version for s in shown} == {"v3"}
    reverse = list(walk(lambda c: images_with_tag(sessions, "night", limit=9, cursor=c, least_sure=True)))
    assert [s.image_id for s in reverse] == best[::-1]
    above = list(walk(lambda c: images_with_tag(sessions, "night", limit=4, cursor=c, min_probability=0.5)))
    assert [s.image_id for s in above] == [i for i in best if dict(active)[i] >= 0.5]
    kept = list(walk(lambda c: images_with_tag(sessions, "night", limit=50, cursor=c, version="v1")))
    assert len(kept) == 150 and {s.probability for s in kept} == {0.99}  # a kept version, when named

    # The client pages the same way from the same index (it reads the database, the broker is never used).
    with TaggerClient(broker_url="redis://127.0.0.1:1/0", database_url=settings.database_url) as client:
        read = list(walk(lambda c: client.images_with_tag("night", min_probability=0, limit=11, cursor=c)))
        assert [s.image_id for s in read] == best
        with pytest.raises(InvalidCursor):
            client.images_with_tag("night", cursor="bm90IGEgY3Vyc29y")

    # The deprecated offset reads the same order; a cursor and an offset together, or a forged cursor, refused.
    with sessions() as session:
        conn, tag_id = session.connection(), registry.tag_ids(session, ["night"])["night"]
        skipped = rows_after(conn, version_id=ids["v3"], tag_id=tag_id, limit=10, offset=95)
        assert [i for i, _ in skipped] == best[95:105]
        with pytest.raises(InvalidCursor, match="not both"):
            rows_after(conn, version_id=ids["v3"], tag_id=tag_id, limit=10, offset=5, after=Position(1.0, 1))
    for forged in ("", "!!!", "W10", "WyJ4IiwxXQ", "WzEuMCwtMV0", "x" * 300):  # [], ["x",1], [1.0,-1]
        with pytest.raises(InvalidCursor):
            Position.of(forged)
    assert Position.of(Position(0.123456789012345, 2**62).cursor()) == Position(0.123456789012345, 2**62)


def test_pages_stay_exact_while_rows_arrive(settings, sessions) -> None:  # type: ignore[no-untyped-def]
    """Rows written while a reader pages (a job tagging meanwhile): every row there from the start is shown
    exactly once, and the pages never go back (a row behind the cursor is not shown, one ahead is)."""
    ids = versions(sessions, ("v1",))
    first = [(i, probability(k)) for k, i in enumerate(images(sessions, 80))]
    suggest(sessions, ids["v1"], first)
    arriving = iter(images(sessions, 200, prefix="new"))
    shown: list[Any] = []
    cursor = None
    while True:
        page = images_with_tag(sessions, "night", limit=6, cursor=cursor)
        shown += page.items
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        # ahead of the cursor, behind it, and into the block tied at 1.0 (new ids are above every old one)
        suggest(sessions, ids["v1"], [(next(arriving), 1.0), (next(arriving), 0.95), (next(arriving), 0.31)])
    positions = [(-s.probability, s.image_id) for s in shown]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)  # forward only, never twice
    seen = [s.image_id for s in shown]
    assert len(seen) == len(set(seen)) and {i for i, _ in first} <= set(seen)


def _plan(conn: Any, statement: Any) -> list[str]:
    """The plan's nodes, each with the index it reads, of `statement` as PostgreSQL runs it."""
    sql = str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    (doc,) = conn.execute(text("EXPLAIN (FORMAT JSON) " + sql)).one()
    nodes: list[str] = []

    def walk_plan(node: dict[str, Any]) -> None:
        nodes.append(f"{node['Node Type']} {node.get('Index Name', '')}".strip())
        for child in node.get("Plans", []):
            walk_plan(child)

    walk_plan(doc[0]["Plan"])
    return nodes


def test_a_deep_page_is_one_index_range_on_postgresql(postgres) -> None:  # type: ignore[no-untyped-def]
    """60k suggestions over three versions and a 20k-item job, vacuumed: a page of the active version's tag
    after a deep cursor, and a page of the job's items after a deep image id, read an index and sort nothing."""
    from tagger.jobs.progress import item_range
    from tagger_client.contract import ItemState

    engine = make_engine(postgres.create_database(f"paging_{uuid.uuid4().hex[:10]}"))
    try:
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        ids = versions(sessions)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO storages (id, url) VALUES (100, 'file:///deep')"))
            conn.execute(
                text(
                    "INSERT INTO images (id, storage_id, key, created_at) "
                    "SELECT i, 100, 'k/' || i, now() FROM generate_series(1, 20000) i"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO suggestions (image_id, tag_id, model_version_id, probability, created_at) "
                    "SELECT i, t.id, v.id, CASE WHEN i % 4 = 0 THEN 1.0 ELSE (i % 997) / 997.0 END, now() "
                    "FROM generate_series(1, 20000) i, tags t, model_versions v WHERE t.name = 'night'"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO jobs (id, kind, state, source, storage_url, queue, batch_size, total, done, failed, "
                    "skipped, batches, listing_complete, options, passed_over, max_attempts, created_at) VALUES "
                    "('deep', 'tag', 'done', 's', 'file:///deep', 'q', 32, 20000, 19000, 1000, 0, 625, true, "
                    "'{}', '{}', 5, now())"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO job_items (job_id, image_id, state, attempts, updated_at) SELECT 'deep', i, "
                    "CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'done' END, 1, now() FROM generate_series(1, 20000) i"
                )
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))  # as autovacuum leaves a table: statistics, and a visibility map
        with sessions() as session:
            tag_id = registry.tag_ids(session, ["night"])["night"]
            conn = session.connection()
            deep = rows_after(conn, version_id=ids["v3"], tag_id=tag_id, limit=1, offset=16000)[0]
            tied = rows_after(conn, version_id=ids["v3"], tag_id=tag_id, limit=1, offset=2500)[0]  # inside the 1.0s
            cases = [  # (after, min_probability, least_sure): the first page, deep, inside the ties, backwards
                (None, 0.0, False),
                (Position(deep[1], deep[0]), 0.0, False),
                (Position(tied[1], tied[0]), 0.0, False),
                (Position(deep[1], deep[0]), 0.2, True),
            ]
            statements = [
                statement
                for after, floor, least_sure in cases
                for statement in ranges(
                    version_id=ids["v3"], tag_id=tag_id, min_probability=floor, after=after, least_sure=least_sure
                )
            ]
            for statement in statements:
                plan = _plan(conn, statement.limit(101))
                assert "Index Only Scan ix_suggestions_version_tag_probability" in plan, plan
                assert not any("Sort" in node for node in plan), plan
            for state in (None, ItemState.FAILED):
                plan = _plan(conn, item_range("deep", after=18000, state=state).limit(101))
                assert any(node.startswith("Index") for node in plan) and not any("Sort" in n for n in plan), plan
    finally:
        engine.dispose()
