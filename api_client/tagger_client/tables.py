"""A read-only view of the tables the client reads, as SQLAlchemy Core (the schema is owned by tagger's migrations)."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("state", String(24)),
    Column("source", Text),
    Column("total", Integer),
    Column("done", Integer),
    Column("failed", Integer),
    Column("skipped", Integer),
    Column("unchanged", Integer),
    Column("listing_complete", Boolean),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("passed_over", JSON),
    Column("progress_at", DateTime(timezone=True)),
    Column("waiting_reason", Text),
    Column("waiting_since", DateTime(timezone=True)),
)
storages = Table("storages", metadata, Column("id", Integer, primary_key=True), Column("url", Text))
images = Table(
    "images",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("storage_id", Integer),
    Column("key", String(1024)),
    Column("model_version_id", Integer),
)
tags = Table("tags", metadata, Column("id", Integer, primary_key=True), Column("name", String(200)))
model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", String(64)),
    Column("is_active", Boolean),
)
suggestions = Table(
    "suggestions",
    metadata,
    Column("image_id", Integer),
    Column("tag_id", Integer),
    Column("model_version_id", Integer),
    Column("probability", Float),
)
