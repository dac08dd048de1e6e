"""Embeddings, measured side by side in one run (issue 29):

1. the sink with and without each image's 512-dimensional embedding, on the same rows, PostgreSQL, as
   many writers as a CPU worker's processes, decode threads busy beside them (as bench/run.py's sink);
2. bytes per image on PostgreSQL: pg_total_relation_size of the embeddings table (heap, primary key and
   the version's HNSW index) over its rows, after the sink wrote them;
3. similar search on PostgreSQL at --pg-vectors (HNSW built by CREATE INDEX): p95 and recall@10 against
   exact search, and the index's build time and size;
4. similar search on SQLite at --sqlite-vectors: exact, in NumPy: p95 of a warm query and the first
   query's time (the matrix read from the database).

  .venv/bin/python bench/vectors.py                      # a few minutes on 2 cores
  .venv/bin/python bench/vectors.py --pg-vectors 250000  # the seed archive's size (its index takes long)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run import VECTOR_WIDTH, embeddings, register, sink_rate, write_archive  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sink-rows", type=int, default=40_000, help="suggestion rows per sink run (10 per image)")
    p.add_argument("--rounds", type=int, default=2, help="sink runs with and without vectors, in turn")
    p.add_argument("--writers", type=int, default=2, help="sink writers (a CPU worker: one per process)")
    p.add_argument("--pg-vectors", type=int, default=50_000, help="vectors for the PostgreSQL search")
    p.add_argument("--sqlite-vectors", type=int, default=100_000, help="vectors for the SQLite search")
    p.add_argument("--queries", type=int, default=200, help="queries per search measurement")
    return p.parse_args()


def p95(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=20)[-1]


def fill(sessions: Any, version_id: int, n: int, *, seed: int) -> Any:
    """`n` clustered vectors for `version_id`, written in chunks (no images: the search reads vectors only)."""
    import numpy as np

    from tagger.db.vectors import write_vectors

    vectors = embeddings(n, VECTOR_WIDTH, seed=seed)
    for start in range(0, n, 5000):
        chunk = vectors[start : start + 5000]
        with sessions() as session, session.begin():
            write_vectors(session, version_id, list(range(start + 1, start + 1 + len(chunk))), chunk)
    return vectors.astype(np.float32)


def search(sessions: Any, version_id: int, vectors: Any, queries: int) -> dict[str, float]:
    """p95 of `queries` searches for 10 neighbours (after one to warm up), and recall@10 against exact search."""
    import numpy as np

    from tagger.db.vectors import nearest

    rng = np.random.default_rng(1)
    picks = rng.choice(len(vectors), queries, replace=False)
    with sessions() as session:
        started = time.perf_counter()
        nearest(session, version_id, vectors[picks[0]], limit=10)
        first = time.perf_counter() - started
        seconds, recalls = [], []
        for i in picks:
            q = vectors[i] + 0.05 * rng.standard_normal(vectors.shape[1]).astype(np.float32)  # an unseen still
            started = time.perf_counter()
            found = nearest(session, version_id, q, limit=10)
            seconds.append(time.perf_counter() - started)
            exact = set((np.argsort(-(vectors @ (q / np.linalg.norm(q))))[:10] + 1).tolist())
            recalls.append(len(exact & {n.image_id for n in found}) / 10)
    return {
        "p95_ms": p95(seconds) * 1000,
        "median_ms": statistics.median(seconds) * 1000,
        "first_ms": first * 1000,
        "recall_at_10": statistics.mean(recalls),
    }


def main() -> int:
    args = parse_args()
    from sqlalchemy import text

    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.db.vectors import index_name, index_vectors
    from tagger.settings import Settings
    from tests.support.servers import Postgres

    work = Path(tempfile.mkdtemp(prefix="tagger-vectors-"))
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    out: dict[str, Any] = {}
    with ExitStack() as stack:
        pg = Postgres().start()
        stack.callback(pg.destroy)
        url = pg.create_database("vectors")
        engine = make_engine(url)
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        settings = Settings(var_dir=work / "var", database_url=url, model_store=(work / "models").as_uri())
        tags = [f"tag{i:03d}" for i in range(100)]
        version_id = register(sessions, settings, "resnet18", tags, 32, activate=True)
        with sessions() as session:
            from tagger import registry

            tag_ids = list(registry.tag_ids(session, tags).values())

        say(f"[1/4] the sink, {args.sink_rows} rows, with and without vectors, {args.writers} writers, decode beside")
        keys = write_archive(work / "archive", 32)
        decoding = (work / "archive", keys, 224, 2)
        rounds = []

        def sink(root: str, width: int) -> float:  # fresh images each run (another storage root)
            return sink_rate(
                sessions,
                (work / root).as_uri(),
                version_id,
                tag_ids,
                args.sink_rows,
                batch=32,
                writers=args.writers,
                decode=decoding,
                width=width,
            )

        for n in range(args.rounds):
            plain, vectors = sink(f"plain{n}", 0), sink(f"vectors{n}", VECTOR_WIDTH)
            rounds.append((plain, vectors))
            say(f"  sink {plain:,.0f} rows/s, with vectors {vectors:,.0f} rows/s: {vectors / plain:.0%}")
        out["sink_rows_per_s"] = statistics.median(p for p, _ in rounds)
        out["sink_vectors_rows_per_s"] = statistics.median(v for _, v in rounds)
        out["sink_vectors_of_sink"] = statistics.median(v / p for p, v in rounds)

        say("[2/4] bytes per image on PostgreSQL (the sink's vectors, with the version's HNSW index)")
        cutoff = index_vectors(engine, version_id, min_tail=0)
        assert cutoff is not None
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM embeddings")).scalar_one()
            total = conn.execute(text("SELECT pg_total_relation_size('embeddings')")).scalar_one()
            index = conn.execute(text(f"SELECT pg_relation_size('{index_name(version_id, cutoff)}')")).scalar_one()
        out["pg_rows"], out["pg_bytes_per_image"] = rows, total / rows
        out["pg_index_bytes_per_image"] = index / rows
        say(f"  {rows} vectors: {total / rows:,.0f} bytes per image, of which the HNSW index {index / rows:,.0f}")

        say(f"[3/4] PostgreSQL search at {args.pg_vectors} vectors (a second version, its index built at the end)")
        other = register(sessions, settings, "resnet18", tags, 32, activate=False)
        vectors = fill(sessions, other, args.pg_vectors, seed=5)
        with engine.begin() as conn:  # the graph built in memory, as a server set up for this would
            conn.execute(text("ALTER DATABASE vectors SET maintenance_work_mem = '512MB'"))
        engine.dispose()  # new connections take the setting
        started = time.perf_counter()
        built = index_vectors(engine, other, min_tail=0)
        assert built is not None
        out["pg_index_build_s"] = time.perf_counter() - started
        with engine.connect() as conn:
            out["pg_index_bytes"] = conn.execute(
                text(f"SELECT pg_relation_size('{index_name(other, built)}')")
            ).scalar_one()
        out["pg_search"] = search(sessions, other, vectors, args.queries)
        say(
            f"  {out['pg_search']}, build {out['pg_index_build_s']:.0f}s, index {out['pg_index_bytes'] / 2**20:.0f} MiB"
        )
        engine.dispose()

        say(f"[4/4] SQLite search at {args.sqlite_vectors} vectors (exact, NumPy)")
        lite = make_engine(f"sqlite:///{work / 'vectors.db'}")
        upgrade(lite)
        lite_sessions = make_sessionmaker(lite)
        vectors = fill(lite_sessions, 1, args.sqlite_vectors, seed=6)
        out["sqlite_search"] = search(lite_sessions, 1, vectors, args.queries)
        say(f"  {out['sqlite_search']}")
        lite.dispose()
    for key, value in out.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
