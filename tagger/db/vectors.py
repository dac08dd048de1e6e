"""Image embeddings in the database: write, index, search, count and prune them.

One row per (model version, image): the pooled features before the head, L2-normalised, float16. On
PostgreSQL the column is pgvector's `halfvec` without a fixed width (each architecture has its own), and
a version's vectors get an HNSW index (cosine) on `embedding::halfvec(width)`, partial to that version:
pgvector's documented way to keep vectors of several widths in one table.

The index is built off the hot path. Inserting into an HNSW graph costs a search of it per vector (on
2 cores the sink fell to 11-20% of its rate, BENCHMARKS.md), so each index covers the version's images
up to an id fixed when it was built (`... WHERE model_version_id = v AND image_id <= cutoff`) and the
sink's new images, with higher ids, never touch it. A search reads the index for those, and scans the
few images past the cutoff exactly. When enough have gathered, `index_vectors` (a task the worker
queues when a job ends) builds a new index up to the newest image, concurrently, and drops the old.

On SQLite the column holds the float16 bytes and a search is exact, in NumPy, over the version's vectors
read once per process and then only the rows added since (measured in BENCHMARKS.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Engine, delete, func, insert, select, text
from sqlalchemy.orm import Session

from tagger.db.schema import Embedding, Image
from tagger.db.upsert import affected, upsert_many
from tagger.errors import ConfigError

# An HNSW index's candidate list while searching (pgvector's default is 40, which found 82% of the exact
# top 10 at 50,000 clustered vectors): raised to the limit asked for, so a search for 200 can return 200.
EF_SEARCH = 100


@dataclass(frozen=True)
class Neighbour:
    image_id: int
    similarity: float  # cosine similarity, 1 for the same picture, 0 for unrelated ones


def index_name(version_id: int, cutoff: int) -> str:
    return f"{INDEX_PREFIX}{int(version_id)}_upto_{int(cutoff)}"


INDEX_PREFIX = "ix_embeddings_hnsw_v"
# Duplicate pairs on PostgreSQL: each image's nearest this many (a group larger than that is still found
# whole, through its members' own neighbours), read this many images' vectors at a time.
NEIGHBOURS = 32
PAIRS_CHUNK = 500
# SQLite's exact pairs: this many rows of the matrix against all of it at a time (at 100,000 vectors,
# 256 x 100,000 float32 similarities: 100 MB).
PAIRS_BLOCK = 256
# A new index is built when the images past the newest one's cutoff (scanned exactly by every search) are
# at least this many, and at least a tenth of those it holds.
MIN_TAIL = 2000


# --- writing -------------------------------------------------------------------------------------


def adapt_halfvec(raw: Any) -> None:
    """Teach one psycopg connection pgvector's `halfvec` (sent in binary: 2 bytes a dimension, no text to
    format); one round trip on the connection's first use, nothing after."""
    if raw.adapters.types.get("halfvec") is not None:
        return
    from pgvector.psycopg.halfvec import register_halfvec_info
    from psycopg.types import TypeInfo

    info = TypeInfo.fetch(raw, "halfvec")
    if info is None:
        raise ConfigError("the database has no pgvector `halfvec` type: run `tagger db upgrade`")
    register_halfvec_info(raw, info)


def halfvecs(vectors: np.ndarray) -> list[Any]:
    """Rows of an N x width float16 array as pgvector HalfVectors (the binary parameter of a halfvec[])."""
    from pgvector import HalfVector

    return [HalfVector(row) for row in vectors]


def write_vectors(session: Session, version_id: int, image_ids: Sequence[int], vectors: np.ndarray) -> None:
    """Upsert one vector per image for `version_id` (`vectors` is len(image_ids) x width float16).

    The sink's path on SQLite; on PostgreSQL the sink writes them within its one statement. SQLite's rows
    are replaced (a new rowid), so a process's cached matrix sees a re-tag as a new row (`_Matrix`).
    """
    if not image_ids:
        return
    postgres = session.get_bind().dialect.name == "postgresql"
    rows = [
        {"model_version_id": version_id, "image_id": int(i), "embedding": v if postgres else v.tobytes()}
        for i, v in zip(image_ids, vectors.astype(np.float16), strict=True)
    ]
    if postgres:
        session.execute(upsert_many(session, Embedding, ["model_version_id", "image_id"], ["embedding"]), rows)
    else:
        session.execute(insert(Embedding).prefix_with("OR REPLACE"), rows)


def index_vectors(engine: Engine, version_id: int, *, min_tail: int = MIN_TAIL) -> int | None:
    """PostgreSQL: build the HNSW index of `version_id`'s vectors up to its newest image, concurrently (writes
    go on), and drop the older ones it replaces, when the images past the newest usable one's cutoff are
    at least `min_tail` and a tenth of those it holds. Returns the new index's cutoff, or None when nothing
    was built (SQLite, too few new images, or an index being built already).

    No lock is held across the build (a session's advisory lock would outlive it on another server
    connection behind a transaction pooler): a build under way is seen in pg_stat_progress_create_index,
    and two that raced both end well, the later cutoff dropping the earlier."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # CREATE INDEX CONCURRENTLY: no transaction
        building = conn.execute(
            text("SELECT count(*) FROM pg_stat_progress_create_index WHERE relid = 'embeddings'::regclass")
        ).scalar()
        if building:
            return None
        old = _cutoff(conn, version_id)
        newest, width = conn.execute(
            text(
                "SELECT max(image_id), (SELECT vector_dims(embedding) FROM embeddings WHERE model_version_id = :v "
                "LIMIT 1) FROM embeddings WHERE model_version_id = :v"
            ),
            {"v": version_id},
        ).one()
        if newest is None or (old is not None and newest <= old):
            return None
        tail, held = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE image_id > :old), count(*) FILTER (WHERE image_id <= :old) "
                "FROM embeddings WHERE model_version_id = :v"
            ),
            {"v": version_id, "old": old if old is not None else -1},
        ).one()
        if tail < max(min_tail, held // 10):
            return None
        conn.execute(
            text(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index_name(version_id, newest)} ON embeddings "
                f"USING hnsw ((embedding::halfvec({int(width)})) halfvec_cosine_ops) "
                f"WHERE model_version_id = {int(version_id)} AND image_id <= {int(newest)}"
            )
        )
        for cutoff in _cutoffs(conn, version_id, valid_only=False):
            if cutoff < newest:  # older ones, and any a failed build left invalid
                conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {index_name(version_id, cutoff)}"))
        return int(newest)


def _cutoffs(conn: Any, version_id: int, *, valid_only: bool = True) -> list[int]:
    """The cutoffs of a version's indexes, from the catalog; by default only those the planner may use (a
    concurrent build's index is invalid until it ends)."""
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'embeddings'::regclass AND c.relname LIKE :pattern"
            + (" AND i.indisvalid" if valid_only else "")
        ),
        {"pattern": f"{INDEX_PREFIX}{int(version_id)}_upto_%"},
    )
    return [int(name.rpartition("_upto_")[2]) for (name,) in rows]


def _cutoff(conn: Any, version_id: int) -> int | None:
    """The cutoff of the version's newest usable index; None when it has none."""
    return max(_cutoffs(conn, version_id), default=None)


def prune_vectors(session: Session, keep_version_ids: Iterable[int]) -> int:
    """Delete the vectors of every version not in `keep_version_ids`, and on PostgreSQL their indexes, in the
    caller's transaction; returns how many vectors went. For the command that prunes model versions."""
    keep = sorted({int(v) for v in keep_version_ids})
    gone = affected(
        session.execute(
            delete(Embedding)
            .where(Embedding.model_version_id.not_in(keep))
            .execution_options(synchronize_session=False)
        )
    )
    if session.get_bind().dialect.name == "postgresql":
        conn = session.connection()
        for name in conn.execute(
            text("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings' AND indexname LIKE :pattern"),
            {"pattern": f"{INDEX_PREFIX}%"},
        ).scalars():
            if int(name.removeprefix(INDEX_PREFIX).partition("_upto_")[0]) not in keep:
                session.execute(text(f'DROP INDEX IF EXISTS "{name}"'))
    return gone


# --- reading -------------------------------------------------------------------------------------


def vector_of(session: Session, version_id: int, image_id: int) -> np.ndarray | None:
    """One image's vector from `version_id` as float32, or None when that version has not embedded it."""
    raw = session.scalar(
        select(Embedding.embedding).where(Embedding.model_version_id == version_id, Embedding.image_id == image_id)
    )
    return None if raw is None else as_array(raw)


def as_array(raw: Any) -> np.ndarray:
    """A stored vector as float32: SQLite's float16 bytes, or pgvector's HalfVector."""
    if isinstance(raw, bytes | memoryview):
        return np.frombuffer(raw, dtype=np.float16).astype(np.float32)
    return np.asarray(raw.to_numpy() if hasattr(raw, "to_numpy") else raw, dtype=np.float32)


def count_vectors(session: Session, version_id: int) -> int:
    return int(session.scalar(select(func.count()).where(Embedding.model_version_id == version_id)) or 0)


def awaiting_vectors(session: Session, version_id: int) -> int:
    """Tagged images without a vector from `version_id`: every vector belongs to a tagged image, so the
    difference of two counts (each an index range) is the count of those images."""
    tagged = session.scalar(select(func.count()).where(Image.model_version_id.is_not(None))) or 0
    return max(0, int(tagged) - count_vectors(session, version_id))


def nearest(
    session: Session, version_id: int, query: np.ndarray, *, limit: int, min_similarity: float = -1.0
) -> list[Neighbour]:
    """The `limit` images whose `version_id` vectors are most similar (cosine) to `query`, most similar
    first, those under `min_similarity` left out. Approximate on PostgreSQL (the version's HNSW index, when
    it has one), exact on SQLite."""
    q = np.asarray(query, dtype=np.float32).ravel()
    norm = float(np.linalg.norm(q))
    if norm == 0.0 or not np.isfinite(norm):
        raise ConfigError("the query vector is zero or not finite: nothing is similar to it")
    q = q / norm
    if session.get_bind().dialect.name == "postgresql":
        found = _nearest_postgres(session, version_id, q, limit)
    else:
        found = _matrix(session, version_id).nearest(q, limit)
    return [n for n in found if n.similarity >= min_similarity]


def _nearest_postgres(session: Session, version_id: int, q: np.ndarray, limit: int) -> list[Neighbour]:
    """The version's index for the images up to its cutoff, an exact scan of those past it; the best of both."""
    return _search_postgres(session, version_id, q, limit, _prepare_postgres(session, version_id, limit))


def _prepare_postgres(session: Session, version_id: int, limit: int) -> int | None:
    """Ready the session's transaction for searches of `limit` (the index's candidate list); the cutoff of the
    version's newest usable index."""
    session.execute(text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(max(EF_SEARCH, limit))})
    return _cutoff(session.connection(), version_id)


def _search_postgres(
    session: Session, version_id: int, q: np.ndarray, limit: int, cutoff: int | None
) -> list[Neighbour]:
    from pgvector import HalfVector

    params = {"q": HalfVector(q).to_text(), "limit": limit}
    found: list[Neighbour] = []
    for part in ("indexed", "tail") if cutoff is not None else ("all",):
        rows = session.execute(text(search_sql(version_id, int(q.shape[0]), cutoff, part)), params)
        found += [Neighbour(int(i), float(s)) for i, s in rows]
    return sorted(found, key=lambda n: (-n.similarity, n.image_id))[:limit]


def search_sql(version_id: int, width: int, cutoff: int | None = None, part: str = "all") -> str:
    """One part of a search of one version's vectors (parameters :q, a halfvec's text, and :limit): the images
    its index holds (`indexed`, up to `cutoff`), those past it (`tail`), or `all`. The version, width and
    cutoff are written into the statement as the index's own predicate and expression: bound as parameters,
    the planner cannot prove the partial index applies and scans every row."""
    distance = f"embedding::halfvec({int(width)}) <=> CAST(:q AS halfvec({int(width)}))"
    where = f"model_version_id = {int(version_id)}"
    if part == "indexed":
        where += f" AND image_id <= {int(cutoff or 0)}"
    elif part == "tail":
        where += f" AND image_id > {int(cutoff or 0)}"
    return f"SELECT image_id, 1 - ({distance}) FROM embeddings WHERE {where} ORDER BY {distance} LIMIT :limit"


def close_pairs(
    session: Session, version_id: int, threshold: float, *, neighbours: int = NEIGHBOURS
) -> Iterator[tuple[int, int, float]]:
    """(image id, image id, similarity) for pairs of `version_id`'s images at least `threshold` similar, each
    pair once (the lower id first). On SQLite every such pair, exactly: the version's matrix against itself,
    a block of rows at a time. On PostgreSQL each image's `neighbours` nearest by the search above (the HNSW
    index), so an image with more near-copies than that reaches the rest through them."""
    if session.get_bind().dialect.name != "postgresql":
        yield from _matrix(session, version_id).close_pairs(threshold)
        return
    after = 0
    while True:
        rows = session.execute(
            select(Embedding.image_id, Embedding.embedding)
            .where(Embedding.model_version_id == version_id, Embedding.image_id > after)
            .order_by(Embedding.image_id)
            .limit(PAIRS_CHUNK)
        ).all()
        if not rows:
            return
        cutoff = _prepare_postgres(session, version_id, neighbours + 1)  # once a chunk, not once an image
        for image_id, raw in rows:
            for n in _search_postgres(session, version_id, as_array(raw), neighbours + 1, cutoff):
                if n.similarity >= threshold and n.image_id != image_id:
                    pair = (image_id, n.image_id) if image_id < n.image_id else (n.image_id, image_id)
                    yield (*pair, n.similarity)
        after = rows[-1][0]


# --- SQLite: exact search over a matrix kept per process ------------------------------------------


@dataclass
class _Matrix:
    """One version's vectors as float32 rows, with the highest rowid read: later reads take only newer rows."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    vectors: np.ndarray | None = None
    rowid: int = 0
    rows: dict[int, int] = field(default_factory=dict)  # image id -> its row

    def add(self, rows: Sequence[tuple[int, int, bytes]]) -> None:
        if not rows:
            return
        blob = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float16)
        fresh = blob.reshape(len(rows), -1).astype(np.float32)
        if self.vectors is not None and fresh.shape[1] != self.vectors.shape[1]:
            raise ConfigError(f"vectors of {fresh.shape[1]} and {self.vectors.shape[1]} dimensions in one version")
        new_ids, new_rows = [], []
        for (rowid, image_id, _), vector in zip(rows, fresh, strict=True):
            self.rowid = max(self.rowid, rowid)
            at = self.rows.get(image_id)
            if at is not None and self.vectors is not None:
                self.vectors[at] = vector  # replaced (a re-tag by the same version)
            else:
                self.rows[image_id] = len(self.rows)
                new_ids.append(image_id)
                new_rows.append(vector)
        if new_rows:
            stacked = np.stack(new_rows)
            self.vectors = stacked if self.vectors is None else np.concatenate([self.vectors, stacked])
            self.ids = np.concatenate([self.ids, np.asarray(new_ids, dtype=np.int64)])

    def nearest(self, q: np.ndarray, limit: int) -> list[Neighbour]:
        if self.vectors is None or limit <= 0:
            return []
        if q.shape[0] != self.vectors.shape[1]:
            raise ConfigError(f"a {q.shape[0]}-dimensional query against {self.vectors.shape[1]}-dimensional vectors")
        scores = self.vectors @ q
        k = min(limit, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((self.ids[top], -scores[top]))]
        return [Neighbour(int(self.ids[i]), float(scores[i])) for i in top]

    def close_pairs(self, threshold: float) -> Iterator[tuple[int, int, float]]:
        """Every pair at least `threshold` similar, once, the lower image id first."""
        if self.vectors is None:
            return
        for r, c, similarity in exact_pairs(self.vectors, threshold):
            a, b = sorted((int(self.ids[r]), int(self.ids[c])))
            yield a, b, similarity


def exact_pairs(vectors: np.ndarray, threshold: float) -> Iterator[tuple[int, int, float]]:
    """(row, row, similarity) for every pair of L2-normalised rows at least `threshold` similar, each once (the
    lower row first): the matrix against itself, PAIRS_BLOCK rows at a time."""
    for start in range(0, len(vectors), PAIRS_BLOCK):
        scores = vectors[start : start + PAIRS_BLOCK] @ vectors.T
        rows, cols = np.nonzero(scores >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if start + r < c:
                yield start + r, c, float(scores[r, c])


_matrices: dict[tuple[str, int], _Matrix] = {}
_matrices_lock = threading.Lock()


def _matrix(session: Session, version_id: int) -> _Matrix:
    """The version's matrix, brought up to date by the rows written since it was last read: one look at the
    table's newest rowid (the end of its b-tree), then a range of rowids past it. A re-tag's row replaces the
    old one with a new rowid (`write_vectors`); a table whose rowids went back (emptied, replaced) is read
    again whole."""
    key = (str(session.get_bind().engine.url), version_id)
    with _matrices_lock:
        matrix = _matrices.get(key) or _Matrix()
        top = session.execute(text("SELECT max(rowid) FROM embeddings")).scalar()
        if top is None or top < matrix.rowid:
            matrix = _Matrix()
        if top is not None and top > matrix.rowid:
            # `+model_version_id`: SQLite walks the rowid range, not the version's whole primary-key range.
            rows = session.execute(
                text(
                    "SELECT rowid, image_id, embedding FROM embeddings "
                    "WHERE rowid > :after AND +model_version_id = :version"
                ),
                {"version": version_id, "after": matrix.rowid},
            ).all()
            matrix.add(rows)  # type: ignore[arg-type]
            matrix.rowid = top
        _matrices[key] = matrix
        return matrix
