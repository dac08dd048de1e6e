"""The database's size per million images on PostgreSQL, by what holds it (a measurement, not a test).

    python bench/db_size.py                               # 100k and 200k images, 6 suggestions per image
    python bench/db_size.py --images 500000 --tags-per-image 3

Generates, at the migrated schema, N images under one storage with keys as cameras name them, one
version's suggestions (`--tags-per-image` rows per image: what a model's thresholds let through; the
issue's 1M-image archive had about 6), and one finished job's items (one row per image, all done). Then
measures each table with pg_total_relation_size (heap, TOAST and every index) after VACUUM ANALYZE and
divides by N: bytes per image, which is linear in N (the two sizes agree), so x 1,000,000 is the size
per million images. Also: what `jobs prune` leaves of the job (its failed items only: here none), and
how long building the 0010 index takes per million suggestion rows (the upgrade's one-time cost).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TABLES = ("images", "suggestions", "job_items")


def sizes(conn) -> dict[str, int]:  # type: ignore[no-untyped-def]
    conn.execute("VACUUM ANALYZE")
    return {t: conn.execute(f"SELECT pg_total_relation_size('{t}')").fetchone()[0] for t in TABLES}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default="100000,200000", help="numbers of images (default 100000,200000)")
    p.add_argument("--tags-per-image", type=int, default=6)
    args = p.parse_args()

    import psycopg

    from tagger.db import make_engine, upgrade
    from tests.support.servers import Postgres

    pg = Postgres().start()
    try:
        print("| images | table | bytes per image | MiB per million images |\n|---:|---|---:|---:|")
        for n in [int(x) for x in args.images.split(",")]:
            name = f"size_{n}"
            engine = make_engine(pg.create_database(name))
            upgrade(engine)
            engine.dispose()
            k = args.tags_per_image
            with psycopg.connect(f"host=127.0.0.1 port={pg.port} user=postgres dbname={name}", autocommit=True) as c:
                c.execute("INSERT INTO storages (id, url) VALUES (1, 'file:///srv/archive/stills')")
                c.execute(
                    "INSERT INTO model_versions (id, version, arch, uri, sha256, status, is_active, meta, created_at) "
                    "VALUES (1, 'm20261208T101500123', 'resnet50', 'file:///srv/models/m20261208T101500123', "
                    "repeat('a', 64), 'active', true, '{}', now())"
                )
                c.execute("INSERT INTO tags (id, name) SELECT t, 'tag_' || t FROM generate_series(1, 40) t")
                c.execute(
                    "INSERT INTO images (id, storage_id, key, created_at, model_version_id, tagged_at) "
                    "SELECT i, 1, 'reel_' || lpad((i / 10000)::text, 4, '0') || '/IMG_' || lpad(i::text, 8, '0') "
                    f"|| '.jpg', now(), 1, now() FROM generate_series(1, {n}) i"
                )
                c.execute(
                    "INSERT INTO suggestions (image_id, tag_id, model_version_id, probability, created_at) "
                    f"SELECT i, 1 + (i * 7 + t * 13) % 40, 1, random(), now() FROM generate_series(1, {n}) i, "
                    f"generate_series(1, {k}) t"
                )
                c.execute(
                    "INSERT INTO jobs (id, kind, state, source, storage_url, queue, batch_size, total, done, failed, "
                    "skipped, batches, listing_complete, options, passed_over, max_attempts, created_at, "
                    f"finished_at) VALUES (md5('job'), 'tag', 'done', '/srv/archive/stills', "
                    f"'file:///srv/archive/stills', 'tagger.bulk', 32, {n}, {n}, 0, 0, {n // 32}, true, '{{}}', "
                    "'{}', 5, now(), now())"
                )
                c.execute(
                    "INSERT INTO job_items (job_id, image_id, state, attempts, model_version_id, updated_at) "
                    f"SELECT md5('job'), i, 'done', 1, 1, now() FROM generate_series(1, {n}) i"
                )
                measured = sizes(c)
                started = time.perf_counter()
                c.execute("DROP INDEX ix_suggestions_version_tag_probability")
                c.execute(
                    "CREATE INDEX ix_suggestions_version_tag_probability ON suggestions "
                    "(model_version_id, tag_id, probability DESC, image_id)"
                )
                build = time.perf_counter() - started
                c.execute("DELETE FROM job_items WHERE state IN ('done', 'skipped')")  # what `jobs prune` deletes
                pruned = sizes(c)["job_items"]
                c.execute("VACUUM FULL job_items")
                returned = sizes(c)["job_items"]
            for table, size in measured.items():
                print(f"| {n:,} | {table} | {size / n:,.0f} | {size / n * 1e6 / 2**20:,.0f} |")
            print(
                f"| {n:,} | job_items after `jobs prune` (plain VACUUM / VACUUM FULL) | {pruned / n:,.0f} / "
                f"{returned / n:,.1f} | {pruned / n * 1e6 / 2**20:,.0f} / {returned / n * 1e6 / 2**20:,.1f} |"
            )
            print(
                f"| {n:,} | building the 0010 index: {build:.2f} s for {n * k:,} rows, "
                f"{build / (n * k) * 1e6:.1f} s per million rows | | |",
                flush=True,
            )
    finally:
        pg.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
