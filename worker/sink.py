"""Write one batch's outcome in one transaction: per-image outcomes, suggestion rows, embeddings, job counters.

Idempotent under redelivery: every write is gated by items leaving the `pending` state in this very
transaction (the fence); suggestions and counters move only for those items. A second delivery of
the same batch (a redelivery, or a duplicate that outlived the visibility timeout, perhaps served by
another model version) waits on the first one's row locks, finds nothing pending and writes nothing:
no second suggestion, and no second vector.

On PostgreSQL the whole outcome is one statement in one round trip (`_WRITE`): the fence, the
suggestions and the embeddings of exactly the fenced images (the vectors travel in binary), the images'
versions with what their bytes were (the fingerprint of the read that was tagged; a failure clears it, so
a re-run tries the image again), the job's counters with its liveness (`progress_at` now, any waiting
reason cleared) and, when this batch is the last, the job's end. Elsewhere (SQLite, embedded) the same
steps run in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Engine, bindparam, delete, tuple_, update
from sqlalchemy.orm import Session

from tagger.db.arrays import array_literal, text_array_literal
from tagger.db.engine import run_statement
from tagger.db.schema import Image, Job, JobItem, Suggestion, utcnow
from tagger.db.upsert import upsert_many
from tagger.db.vectors import adapt_halfvec, halfvecs, write_vectors
from tagger.jobs.lifecycle import finish_if_complete, mark_running
from tagger.model.familiarity import UNFAMILIAR
from tagger.storage import UNKNOWN, Fingerprint
from tagger_client.contract import ItemState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tagged:
    """One image's suggestions: (tag id, probability) pairs, possibly none above threshold."""

    image_id: int
    tags: list[tuple[int, float]]
    fingerprint: Fingerprint = UNKNOWN


@dataclass(frozen=True)
class Refused:
    image_id: int
    reason: str


@dataclass(frozen=True)
class TaggedRows:
    """Tagged images and their suggestion rows as parallel lists, built straight from the model's tensors, with
    the images' embeddings (one float16 row per image, in `image_ids` order) when the model gave them."""

    image_ids: list[int] = field(default_factory=list)  # every tagged image, with or without a tag above threshold
    row_images: list[int] = field(default_factory=list)
    row_tags: list[int] = field(default_factory=list)
    row_probs: list[float] = field(default_factory=list)
    fingerprints: list[Fingerprint] = field(default_factory=list)  # per tagged image; empty: none known
    vectors: np.ndarray | None = None  # len(image_ids) x width float16, L2-normalised
    # Per tagged image, in `image_ids` order: how unfamiliar it looked (0..100, `tagger.model.familiarity`);
    # None: the version keeps no record of its held-out stills.
    unfamiliarity: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.vectors is not None and len(self.vectors) != len(self.image_ids):
            raise ValueError(f"{len(self.vectors)} vectors for {len(self.image_ids)} tagged images")
        if self.unfamiliarity is not None and len(self.unfamiliarity) != len(self.image_ids):
            raise ValueError(f"{len(self.unfamiliarity)} unfamiliarity scores for {len(self.image_ids)} tagged images")

    @classmethod
    def of(cls, tagged: Sequence[Tagged]) -> TaggedRows:
        rows = [(t.image_id, tag, float(p)) for t in tagged for tag, p in t.tags]
        images, fingerprints = [t.image_id for t in tagged], [t.fingerprint for t in tagged]
        return cls(images, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], fingerprints)

    def by_image(self) -> list[tuple[int, Fingerprint]]:
        """(image id, fingerprint) of every tagged image, by id: the order every write locks rows in."""
        fingerprints = self.fingerprints or [UNKNOWN] * len(self.image_ids)
        return sorted(zip(self.image_ids, fingerprints, strict=True))

    def unfamiliarity_of(self) -> dict[int, float | None]:
        """Each tagged image's unfamiliarity by id (None where unknown)."""
        if self.unfamiliarity is None:
            return dict.fromkeys(self.image_ids)
        return {i: float(u) for i, u in zip(self.image_ids, self.unfamiliarity.tolist(), strict=True)}


@dataclass(frozen=True)
class BatchCounts:
    done: int
    failed_ids: frozenset[int] = frozenset()  # the refused images this write moved: the fence's, not the batch's
    skipped: int = 0
    closed: bool = False  # this batch finished the job: time to notify

    @property
    def failed(self) -> int:
        return len(self.failed_ids)


def record_batch(
    engine: Engine,
    *,
    job_id: str,
    model_version_id: int | None,
    tagged: TaggedRows | Sequence[Tagged] = (),
    refused: Sequence[Refused] = (),
    skipped: Sequence[int] = (),
) -> BatchCounts:
    """One transaction: the fence, suggestions of the images it moved, every item's outcome, the counters."""
    rows = tagged if isinstance(tagged, TaggedRows) else TaggedRows.of(tagged)
    if rows.image_ids and model_version_id is None:
        raise ValueError("tagged images need the model version that tagged them")
    if engine.dialect.name == "postgresql":
        counts = _write_postgres(engine, job_id, model_version_id, rows, refused, skipped)
    else:
        counts = _write_generic(engine, job_id, model_version_id, rows, refused, skipped)
    if counts.done < len(rows.image_ids):
        log.warning(
            "job %s: %d of %d images were already written by another delivery of this batch; not rewritten",
            job_id,
            len(rows.image_ids) - counts.done,
            len(rows.image_ids),
        )
    return counts


# The fence is the three UPDATEs of job_items WHERE state = 'pending'; everything after joins `claimed`.
# Ids arrive sorted, and `= ANY(array)` walks the primary key in order, so two deliveries of one batch
# lock their rows in the same order (no deadlock). Rows this version wrote before for a fenced image
# and no longer above threshold are deleted (a re-tag by the same version).
_WRITE = """
WITH
claimed AS (
    UPDATE job_items SET state = 'done', error = NULL, model_version_id = %(version)s, updated_at = now()
    WHERE job_id = %(job)s AND image_id = ANY(%(tagged)s::bigint[]) AND state = 'pending'
    RETURNING image_id
),
failed AS (
    UPDATE job_items SET state = 'failed', updated_at = now(),
        error = (%(reasons)s::text[])[array_position(%(failed)s::bigint[], image_id)]
    WHERE job_id = %(job)s AND image_id = ANY(%(failed)s::bigint[]) AND state = 'pending'
    RETURNING image_id
),
skipped AS (
    UPDATE job_items SET state = 'skipped', updated_at = now()
    WHERE job_id = %(job)s AND image_id = ANY(%(skipped)s::bigint[]) AND state = 'pending'
    RETURNING image_id
),
new_rows AS (
    SELECT r.image_id, r.tag_id, r.probability
    FROM unnest(%(row_images)s::bigint[], %(row_tags)s::int[], %(row_probs)s::float8[])
        AS r(image_id, tag_id, probability)
    JOIN claimed c ON c.image_id = r.image_id
),
cleared AS (
    DELETE FROM suggestions s USING claimed c
    WHERE s.image_id = c.image_id AND s.model_version_id = %(version)s
      AND NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.image_id = s.image_id AND n.tag_id = s.tag_id)
),
written AS (
    INSERT INTO suggestions (image_id, tag_id, model_version_id, probability, created_at)
    SELECT image_id, tag_id, %(version)s, probability, now() FROM new_rows
    ON CONFLICT (image_id, tag_id, model_version_id) DO UPDATE SET probability = EXCLUDED.probability
),
embedded AS (
    INSERT INTO embeddings (model_version_id, image_id, embedding)
    SELECT %(version)s, v.image_id, v.embedding
    FROM unnest(%(vector_images)s::bigint[], %(vectors)b::halfvec[]) AS v(image_id, embedding)
    JOIN claimed c ON c.image_id = v.image_id
    ON CONFLICT (model_version_id, image_id) DO UPDATE SET embedding = EXCLUDED.embedding
),
images_tagged AS (
    UPDATE images SET model_version_id = %(version)s, tagged_at = now(), unfamiliarity = f.unfamiliarity,
        size_bytes = f.size_bytes, mtime_ns = f.mtime_ns, etag = f.etag, sha256 = f.sha256
    FROM unnest(%(tagged)s::bigint[], %(sizes)s::bigint[], %(mtimes)s::bigint[], %(etags)s::text[],
                %(hashes)s::text[], %(unfamiliarity)s::float8[])
        AS f(image_id, size_bytes, mtime_ns, etag, sha256, unfamiliarity)
    WHERE images.id = f.image_id AND f.image_id IN (SELECT image_id FROM claimed)
),
images_failed AS (
    UPDATE images SET size_bytes = NULL, mtime_ns = NULL, etag = NULL, sha256 = NULL
    WHERE id IN (SELECT image_id FROM failed)
),
moved AS (
    SELECT (SELECT count(*) FROM claimed) AS done, (SELECT count(*) FROM failed) AS failed,
           (SELECT count(*) FROM skipped) AS skipped,
           (SELECT count(*) FROM unnest(%(tagged)s::bigint[], %(unfamiliarity)s::float8[]) AS u(image_id, pct)
            WHERE u.pct > %(unfamiliar_above)s AND u.image_id IN (SELECT image_id FROM claimed)) AS unfamiliar
),
job AS (
    UPDATE jobs SET
        done = jobs.done + m.done,
        failed = jobs.failed + m.failed,
        skipped = jobs.skipped + m.skipped,
        unfamiliar = jobs.unfamiliar + m.unfamiliar,
        state = CASE
            WHEN jobs.state IN ('queued', 'running') AND jobs.listing_complete
                 AND jobs.done + jobs.failed + jobs.skipped + m.done + m.failed + m.skipped >= jobs.total
            THEN CASE WHEN jobs.failed + m.failed > 0 THEN 'done_with_failures' ELSE 'done' END
            WHEN jobs.state = 'queued' THEN 'running'
            ELSE jobs.state END,
        started_at = COALESCE(jobs.started_at, now()),
        progress_at = now(), waiting_reason = NULL, waiting_since = NULL,
        finished_at = CASE
            WHEN jobs.state IN ('queued', 'running') AND jobs.listing_complete
                 AND jobs.done + jobs.failed + jobs.skipped + m.done + m.failed + m.skipped >= jobs.total
            THEN now() ELSE jobs.finished_at END
    FROM moved m
    WHERE jobs.id = %(job)s AND m.done + m.failed + m.skipped > 0
    RETURNING jobs.finished_at = now() AS closed
)
SELECT m.done, (SELECT array_agg(image_id) FROM failed), m.skipped, COALESCE((SELECT closed FROM job), false)
FROM moved m
"""


def _write_postgres(
    engine: Engine,
    job_id: str,
    version_id: int | None,
    rows: TaggedRows,
    refused: Sequence[Refused],
    skipped: Sequence[int],
) -> BatchCounts:
    tagged = rows.by_image()
    unfamiliarity = rows.unfamiliarity_of()
    embedded = rows.vectors is not None and len(rows.vectors) > 0
    params = {
        "job": job_id,
        "version": version_id,
        "tagged": array_literal(i for i, _ in tagged),
        "sizes": array_literal(f.size for _, f in tagged),
        "mtimes": array_literal(f.mtime_ns for _, f in tagged),
        "etags": text_array_literal(f.etag for _, f in tagged),
        "hashes": text_array_literal(f.sha256 for _, f in tagged),
        "unfamiliarity": array_literal(unfamiliarity[i] for i, _ in tagged),
        "unfamiliar_above": UNFAMILIAR,
        "row_images": array_literal(rows.row_images),
        "row_tags": array_literal(rows.row_tags),
        "row_probs": array_literal(rows.row_probs),
        "failed": array_literal(r.image_id for r in refused),
        "reasons": [r.reason[:2000] for r in refused],
        "skipped": array_literal(sorted(skipped)),
        "vector_images": array_literal(rows.image_ids if embedded else ()),
        "vectors": halfvecs(rows.vectors) if embedded else None,  # type: ignore[arg-type]
    }
    adapt = adapt_halfvec if embedded else None
    ((done, failed_ids, skip, closed),) = run_statement(engine, _WRITE, params, adapt=adapt)
    return BatchCounts(done=int(done), failed_ids=frozenset(failed_ids or ()), skipped=int(skip), closed=bool(closed))


def _write_generic(
    engine: Engine,
    job_id: str,
    version_id: int | None,
    rows: TaggedRows,
    refused: Sequence[Refused],
    skipped: Sequence[int],
) -> BatchCounts:
    with Session(engine) as session, session.begin():
        claimed = _leave_pending(
            session, job_id, rows.image_ids, ItemState.DONE, error=None, model_version_id=version_id
        )
        unfamiliar = 0
        if claimed:
            _write_suggestions(session, version_id, rows, claimed)
            unfamiliar = sum(1 for i, u in rows.unfamiliarity_of().items() if i in claimed and (u or 0) > UNFAMILIAR)
        failed_ids = frozenset(
            image_id
            for r in refused
            for image_id in _leave_pending(session, job_id, [r.image_id], ItemState.FAILED, error=r.reason[:2000])
        )
        if failed_ids:  # a failed attempt forgets what the bytes were: a re-run tries the image again
            session.execute(
                update(Image)
                .where(Image.id.in_(failed_ids))
                .values(size_bytes=None, mtime_ns=None, etag=None, sha256=None)
                .execution_options(synchronize_session=False)
            )
        skip = len(_leave_pending(session, job_id, list(skipped), ItemState.SKIPPED)) if skipped else 0
        if claimed or failed_ids or skip:
            mark_running(session, job_id)
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    done=Job.done + len(claimed),
                    failed=Job.failed + len(failed_ids),
                    skipped=Job.skipped + skip,
                    unfamiliar=Job.unfamiliar + unfamiliar,
                    progress_at=utcnow(),
                    waiting_reason=None,
                    waiting_since=None,
                )
            )
        closed = finish_if_complete(session, job_id)
    return BatchCounts(done=len(claimed), failed_ids=failed_ids, skipped=skip, closed=closed)


def _leave_pending(session: Session, job_id: str, image_ids: list[int], state: ItemState, **values: object) -> set[int]:
    """The fence: UPDATE ... WHERE state = 'pending' RETURNING the items this transaction moved."""
    if not image_ids:
        return set()
    return set(
        session.scalars(
            update(JobItem)
            .where(JobItem.job_id == job_id, JobItem.image_id.in_(image_ids), JobItem.state == ItemState.PENDING)
            .values(state=state, updated_at=utcnow(), **values)
            .returning(JobItem.image_id)
            .execution_options(synchronize_session=False)
        )
    )


def _write_suggestions(session: Session, version_id: int | None, rows: TaggedRows, claimed: set[int]) -> None:
    """Suggestions of the fenced images: this version's old rows for them go, the new ones are upserted."""
    keep = [(i, t, p) for i, t, p in zip(rows.row_images, rows.row_tags, rows.row_probs, strict=True) if i in claimed]
    stale = delete(Suggestion).where(Suggestion.model_version_id == version_id, Suggestion.image_id.in_(claimed))
    if keep:
        stale = stale.where(tuple_(Suggestion.image_id, Suggestion.tag_id).not_in([(i, t) for i, t, _ in keep]))
    session.execute(stale.execution_options(synchronize_session=False))
    now = utcnow()
    if keep:
        params = [
            {"image_id": i, "tag_id": t, "model_version_id": version_id, "probability": p, "created_at": now}
            for i, t, p in keep
        ]
        session.execute(
            upsert_many(session, Suggestion, ["image_id", "tag_id", "model_version_id"], ["probability"]), params
        )
    if rows.vectors is not None and version_id is not None:
        fenced = [n for n, image_id in enumerate(rows.image_ids) if image_id in claimed]
        write_vectors(session, version_id, [rows.image_ids[n] for n in fenced], rows.vectors[fenced])
    unfamiliarity = rows.unfamiliarity_of()
    session.connection().execute(  # one executemany, each image with its own fingerprint
        update(Image)
        .where(Image.id == bindparam("b_image"))
        .values(
            model_version_id=version_id,
            tagged_at=now,
            unfamiliarity=bindparam("b_unfamiliarity"),
            size_bytes=bindparam("b_size"),
            mtime_ns=bindparam("b_mtime"),
            etag=bindparam("b_etag"),
            sha256=bindparam("b_hash"),
        ),
        [
            {
                "b_image": i,
                "b_size": f.size,
                "b_mtime": f.mtime_ns,
                "b_etag": f.etag,
                "b_hash": f.sha256,
                "b_unfamiliarity": unfamiliarity[i],
            }
            for i, f in rows.by_image()
            if i in claimed
        ],
    )
