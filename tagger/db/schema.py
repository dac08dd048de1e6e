"""The schema: images, tags, model versions, suggestions, jobs and per-image job outcomes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pgvector.sqlalchemy import HALFVEC  # also teaches reflection the type (the migration test compares)
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY, PostgreSQL wants BIGINT for big archives.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Storage(Base):
    """A storage root images were submitted under: `file:///dir` or `s3://bucket/prefix`, canonical form."""

    __tablename__ = "storages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(Text, unique=True)


class Image(Base):
    """One image: a key under a storage root. Its identity is both, so the same file name in two folders
    is two images."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("storage_id", "key", name="uq_images_storage_key"),
        # The review queue "unfamiliar first": one version's images, least familiar first, one index range a page.
        Index("ix_images_version_unfamiliarity", "model_version_id", "unfamiliarity", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    storage_id: Mapped[int] = mapped_column(ForeignKey("storages.id", name="fk_images_storage"))
    key: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The model version that last tagged the image: NULL is "never tagged", older than active is "stale".
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), index=True)
    tagged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What its bytes were when it was last tagged, as the worker read them: the size and a file's
    # modification time or an S3 ETag, and the SHA-256 when the job hashed. A re-run passes over an image
    # whose listing shows the same (tagger.jobs.incremental); a failed attempt clears them, so it is tried again.
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    etag: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    # How unfamiliar it looked to `model_version_id`: the percentage of that version's held-out stills more
    # familiar than it (JointEnergy, `tagger.model.familiarity`); NULL for a version without the record.
    unfamiliarity: Mapped[float | None] = mapped_column(Float)


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        # At most one active version, enforced by the database itself.
        Index(
            "uq_model_versions_one_active",
            "is_active",
            unique=True,
            postgresql_where=text("is_active"),
            sqlite_where=text("is_active"),
        ),
        # A pruned version's suggestions are gone: it can never serve again (`tagger models prune`).
        CheckConstraint("NOT (is_active AND pruned_at IS NOT NULL)", name="ck_model_versions_pruned_not_active"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    arch: Mapped[str] = mapped_column(String(64))
    uri: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="candidate")
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    # When `tagger models prune` deleted its suggestions; the row stays, so history keeps the version.
    pruned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def tags(self) -> list[str]:
        """The registered tag vocabulary, in output order (an artifact must match it to be served)."""
        return list((self.meta or {}).get("tags") or [])


class Label(Base):
    """A person's decision about one tag of one image: it applies (positive) or it does not (a rejected
    suggestion, a negative). The latest decision wins; `tagger train --labels db` learns from both."""

    __tablename__ = "labels"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), default="manual")  # "accepted" | "rejected" | "manual"
    positive: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    decided_by: Mapped[str | None] = mapped_column(String(200))  # who: a user name, "cli", an API token's name
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Suggestion(Base):
    """A tag the model suggests for an image, keyed so a redelivered batch rewrites the same row.

    The hottest table: no per-row foreign keys (they were half of the insert's cost). Its ids come from
    rows that exist and are never deleted: images and tags from the producer and the registry, the
    version from the model the worker serves.
    """

    __tablename__ = "suggestions"
    image_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tag_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    probability: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# A tag's images by one version, most probable first, ties by image: a keyset page of the tag page, the API
# or an export is one range of it, and no query reads another version's rows (0011, measured with
# bench/tag_index.py). Lookups by image use the primary key. (No index on the version alone: it cost a third
# of the sink's write time; this one replaced (tag, probability).)
Index(
    "ix_suggestions_version_tag_probability",
    Suggestion.model_version_id,
    Suggestion.tag_id,
    Suggestion.probability.desc(),
    Suggestion.image_id,
)


class Embedding(Base):
    """An image's embedding from one model version: the pooled features before the head, L2-normalised, in
    half precision. A version's vectors are never mixed with another's (the key holds the version).

    PostgreSQL holds it as pgvector's `halfvec` with no fixed width (each architecture has its own), with an
    HNSW index per version on `embedding::halfvec(width)`, built off the hot path (`tagger.db.vectors`);
    SQLite as the float16 bytes. Written by the sink behind the suggestions' fence; like them, no foreign
    keys.
    """

    __tablename__ = "embeddings"

    model_version_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    embedding: Mapped[Any] = mapped_column(LargeBinary().with_variant(HALFVEC(), "postgresql"))


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state", "state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="tag")
    state: Mapped[str] = mapped_column(String(24), default="queued")
    source: Mapped[str] = mapped_column(Text)
    storage_url: Mapped[str] = mapped_column(Text)
    queue: Mapped[str] = mapped_column(String(64))
    batch_size: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    # Listed images passed over because the active version tagged them from the same bytes: never items.
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    # Of `done`, the images less familiar than 99% of their version's held-out stills (the drift figure).
    unfamiliar: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    batches: Mapped[int] = mapped_column(Integer, default=0)
    listing_complete: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    error: Mapped[str | None] = mapped_column(Text)
    # Submission options: notification targets, attempt limit; JSON so new options need no migration.
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Files a listing passed over, counted by reason ("not an image suffix (.heic)": 3).
    passed_over: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Liveness: when items last moved, and while they cannot, why (a worker's infrastructure error) and
    # since when. The sink clears the reason in the write that moves items.
    progress_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    waiting_reason: Mapped[str | None] = mapped_column(Text)
    waiting_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When `tagger jobs prune` deleted the per-image rows of its done and skipped images (counts and
    # failures stay); a retry after it finishes the job again, and the next prune takes the new rows.
    items_pruned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobItem(Base):
    """The outcome of one image in one job: pending, done, failed (with a reason) or skipped."""

    __tablename__ = "job_items"
    # (job, state, image): a batch's "its items still pending" is one index range, whatever the planner
    # knows. With (job, state) alone, a planner without statistics (a job's first minutes, before
    # autovacuum's ANALYZE) scanned all of the job's pending items for each batch (issue 15).
    # (image, updated): an image's latest attempt, for `tagger results`, from its own few rows.
    __table_args__ = (
        Index("ix_job_items_job_state", "job_id", "state", "image_id"),
        Index("ix_job_items_image", "image_id", "updated_at"),
    )

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ApiToken(Base):
    """A credential for the HTTP API: a name, a role, and the SHA-256 of the secret (never the secret)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    """A browser session of the review pages, held server-side so logging out ends it everywhere the
    cookie went. The cookie carries a random secret; the row holds only its SHA-256."""

    __tablename__ = "web_sessions"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
