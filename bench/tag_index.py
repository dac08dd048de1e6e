"""Which index serves "images with tag T, most probable first" by keyset pages (a measurement, not a test).

    python bench/tag_index.py                    # ~240k suggestion rows over 3 versions, on PostgreSQL
    python bench/tag_index.py --images 100000    # bigger

Generates images, tags and three versions' suggestions on a fresh PostgreSQL (a quarter of them at
probability 1.0, as a saturating model writes), then, for each candidate index on `suggestions`, runs
the queries the pages, the API and `tagger export --tag` make, under EXPLAIN (ANALYZE, BUFFERS): the
median execution time of 5 runs, the buffers read and whether the plan sorts. Also the index's size
and the time to insert one more version's rows with it in place (the sink's cost), and, with the 0010
index, the rate of `tagger export` (its function, in this process) for one tag and for all.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PAGES = "ix_suggestions_version_tag_probability"
CANDIDATES = {
    "(tag, probability) [0009]": "CREATE INDEX ix_bench ON suggestions (tag_id, probability)",
    "(version, tag, probability desc, image) [0010]": (
        "CREATE INDEX ix_bench ON suggestions (model_version_id, tag_id, probability DESC, image_id)"
    ),
    "(tag, version, probability desc, image)": (
        "CREATE INDEX ix_bench ON suggestions (tag_id, model_version_id, probability DESC, image_id)"
    ),
    "partial (tag, probability desc, image) where version = active": (
        "CREATE INDEX ix_bench ON suggestions (tag_id, probability DESC, image_id) WHERE model_version_id = 3"
    ),
}

# The query of 0009 (images_with_tag): every version's rows of the tag, joined to images on the version
# that last tagged each image, sorted, offset.
OFFSET_QUERY = """
SELECT i.id, st.url, i.key, s.probability, m.version FROM suggestions s
JOIN images i ON i.id = s.image_id AND i.model_version_id = s.model_version_id
JOIN storages st ON st.id = i.storage_id JOIN model_versions m ON m.id = s.model_version_id
WHERE s.tag_id = 1 AND s.probability >= 0 ORDER BY s.probability DESC, i.id LIMIT 100 OFFSET {offset}
"""
# The keyset pages of 0010: the active version's rows, from the cursor on (two ranges: the rest of the
# cursor's probability by image id, then the lower probabilities).
FIRST_PAGE = """
SELECT image_id, probability FROM suggestions WHERE model_version_id = 3 AND tag_id = 1 AND probability >= 0
ORDER BY probability DESC, image_id LIMIT 101
"""
AFTER_LOWER = """
SELECT image_id, probability FROM suggestions WHERE model_version_id = 3 AND tag_id = 1 AND probability >= 0
AND probability < {p} ORDER BY probability DESC, image_id LIMIT 101
"""
AFTER_TIED = """
SELECT image_id, probability FROM suggestions WHERE model_version_id = 3 AND tag_id = 1 AND probability >= 0
AND probability = {p} AND image_id > {i} ORDER BY image_id LIMIT 101
"""
EXPORT = """
SELECT image_id, probability FROM suggestions WHERE model_version_id = 3 AND tag_id = 1 AND probability >= 0.5
ORDER BY probability DESC, image_id
"""


def generate(conn, images: int, tags: int) -> None:  # type: ignore[no-untyped-def]
    conn.execute("INSERT INTO storages (id, url) VALUES (1, 'file:///bench')")
    conn.execute(
        "INSERT INTO model_versions (id, version, arch, uri, sha256, status, is_active, meta, created_at) "
        "SELECT v, 'v' || v, 'resnet18', 'file:///m/v' || v, 'x', CASE WHEN v = 3 THEN 'active' ELSE 'retired' END, "
        "v = 3, '{}', now() FROM generate_series(1, 3) v"
    )
    conn.execute(f"INSERT INTO tags (id, name) SELECT t, 't' || t FROM generate_series(1, {tags}) t")
    # the active version tagged nine images in ten; the rest are stale (last tagged by version 2)
    conn.execute(
        "INSERT INTO images (id, storage_id, key, created_at, model_version_id) "
        f"SELECT i, 1, 'k/' || lpad(i::text, 8, '0') || '.jpg', now(), CASE WHEN i % 10 = 0 THEN 2 ELSE 3 END "
        f"FROM generate_series(1, {images}) i"
    )
    # each version suggests about 2 of 10 tags per image; a quarter of the rows saturate at 1.0
    conn.execute(
        "INSERT INTO suggestions (image_id, tag_id, model_version_id, probability, created_at) "
        "SELECT i, t, v, CASE WHEN random() < 0.25 THEN 1.0 ELSE 0.2 + 0.8 * random() END, now() "
        f"FROM generate_series(1, {images}) i, generate_series(1, {tags}) t, generate_series(1, 3) v "
        f"WHERE random() < 2.0 / {tags} AND (v = 3 OR i % 10 <> 0 OR v = 2)"
    )


def explain(conn, sql: str, runs: int = 5) -> dict[str, object]:  # type: ignore[no-untyped-def]
    times, plan = [], None
    for _ in range(runs):
        (doc,) = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql).fetchone()
        plan = doc[0]
        times.append(plan["Execution Time"])
    assert plan is not None
    nodes: list[str] = []

    def walk(node: dict[str, object]) -> None:
        name = str(node["Node Type"])
        if "Index Name" in node:
            name += f" {node['Index Name']}"
        nodes.append(name)
        for child in node.get("Plans", []) or []:  # type: ignore[attr-defined]
            walk(child)

    walk(plan["Plan"])
    top = plan["Plan"]
    return {
        "ms": statistics.median(times),
        "buffers": int(top.get("Shared Hit Blocks", 0)) + int(top.get("Shared Read Blocks", 0)),
        "rows": int(top["Actual Rows"]),
        "sort": any(n.startswith(("Sort", "Incremental Sort")) for n in nodes),
        "nodes": nodes,
    }


def export_rate(url: str, tags: int) -> str:
    """`tagger export`'s own function (the CLI's start-up aside) over the active version: one tag, then all."""
    import io

    from tagger.db import make_engine, make_sessionmaker
    from tagger.results import export

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    lines = []
    for label, tag in (("export --tag t1", "t1"), (f"export, all {tags} tags", None)):
        out = io.StringIO()
        started = time.perf_counter()
        rows = export(sessions, out, fmt="csv", tag=tag)
        seconds = time.perf_counter() - started
        lines.append(f"{label}: {rows:,} rows in {seconds:.2f} s, {rows / seconds:,.0f} rows/s")
    engine.dispose()
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=40_000)
    p.add_argument("--tags", type=int, default=10)
    p.add_argument("--json-out", default=None)
    args = p.parse_args()

    import psycopg

    from tagger.db import make_engine, upgrade
    from tests.support.servers import Postgres

    pg = Postgres().start()
    try:
        url = pg.create_database("tag_index")
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        dsn = f"host=127.0.0.1 port={pg.port} user=postgres dbname=tag_index"
        with psycopg.connect(dsn, autocommit=True) as conn:
            for (name,) in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'suggestions' AND indexname <> 'suggestions_pkey'"
            ).fetchall():
                conn.execute(f"DROP INDEX {name}")
            generate(conn, args.images, args.tags)
            conn.execute("VACUUM ANALYZE")
            (total,) = conn.execute("SELECT count(*) FROM suggestions").fetchone()
            (active,) = conn.execute(
                "SELECT count(*) FROM suggestions WHERE model_version_id = 3 AND tag_id = 1"
            ).fetchone()
            (tied,) = conn.execute(
                "SELECT count(*) FROM suggestions WHERE model_version_id = 3 AND tag_id = 1 AND probability = 1.0"
            ).fetchone()
            # a deep cursor: the row at 80% of the active version's range; one in the middle of the tied rows
            deep = conn.execute(
                "SELECT probability, image_id FROM suggestions WHERE model_version_id = 3 AND tag_id = 1 "
                f"ORDER BY probability DESC, image_id OFFSET {int(active * 0.8)} LIMIT 1"
            ).fetchone()
            in_tie = conn.execute(
                "SELECT image_id FROM suggestions WHERE model_version_id = 3 AND tag_id = 1 AND probability = 1.0 "
                f"ORDER BY image_id OFFSET {tied // 2} LIMIT 1"
            ).fetchone()[0]
            print(
                f"{total:,} suggestion rows over 3 versions ({args.images:,} images, {args.tags} tags); "
                f"tag 1 of the active version: {active:,} rows, {tied:,} at 1.0",
                flush=True,
            )
            queries = {
                "offset 0 [0009 query]": OFFSET_QUERY.format(offset=0),
                f"offset {int(active * 0.8):,} [0009 query]": OFFSET_QUERY.format(offset=int(active * 0.8)),
                "keyset: first page": FIRST_PAGE,
                "keyset: deep cursor (80%)": AFTER_LOWER.format(p=deep[0]),
                "keyset: cursor inside the ties at 1.0": AFTER_TIED.format(p=1.0, i=in_tie),
                "export --tag, p >= 0.5 (whole range)": EXPORT,
            }
            results: dict[str, dict[str, object]] = {}
            for label, ddl in CANDIDATES.items():
                conn.execute(ddl)
                conn.execute("ANALYZE suggestions")
                (size,) = conn.execute("SELECT pg_relation_size('ix_bench')").fetchone()
                # the sink's cost with this index: one more version's rows for every image, inserted in batches
                started = time.perf_counter()
                for start in range(1, args.images + 1, 5000):
                    conn.execute(
                        "INSERT INTO suggestions (image_id, tag_id, model_version_id, probability, created_at) "
                        f"SELECT i, t, 4, random(), now() FROM generate_series({start}, {start + 4999}) i, "
                        f"generate_series(1, {args.tags}) t WHERE random() < 2.0 / {args.tags} AND i <= {args.images}"
                    )
                insert_s = time.perf_counter() - started
                conn.execute("DELETE FROM suggestions WHERE model_version_id = 4")
                conn.execute("VACUUM ANALYZE suggestions")
                results[label] = {"index_mb": size / 2**20, "insert_s": insert_s}
                print(f"\n## {label}: {size / 2**20:.1f} MiB; one version's rows inserted in {insert_s:.2f} s")
                for name, sql in queries.items():
                    measured = explain(conn, sql)
                    results[label][name] = measured
                    print(
                        f"  {name:<42} {measured['ms']:>8.2f} ms  {measured['buffers']:>6} buffers  "
                        f"sort: {'yes' if measured['sort'] else 'no ':<3}  {' > '.join(measured['nodes'][:4])}",
                        flush=True,
                    )
                conn.execute("DROP INDEX ix_bench")
            (table_mb,) = conn.execute("SELECT pg_relation_size('suggestions') / 1048576.0").fetchone()
            print(f"\nsuggestions heap: {float(table_mb):.1f} MiB")
            conn.execute(CANDIDATES["(version, tag, probability desc, image) [0010]"].replace("ix_bench", PAGES))
            conn.execute("VACUUM ANALYZE suggestions")
        print(export_rate(url, args.tags), flush=True)
        if args.json_out:
            with open(args.json_out, "w") as out:
                json.dump(results, out, indent=2, default=str)
    finally:
        pg.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
