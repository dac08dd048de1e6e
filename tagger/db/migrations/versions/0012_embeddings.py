"""Image embeddings: one vector per (model version, image), written by the sink beside the suggestions.
On PostgreSQL the pgvector extension is created first (its `halfvec` type); a server without it, or a
role that may not create it, is told what to install or whom to ask.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 22:00:00
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import HALFVEC
from sqlalchemy.exc import ProgrammingError

from tagger.errors import ConfigError

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# halfvec and its HNSW operator class came with pgvector 0.7.0.
PGVECTOR_MIN = (0, 7, 0)


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        _create_pgvector(bind)
    op.create_table(
        "embeddings",
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("embedding", HALFVEC() if postgres else sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("model_version_id", "image_id"),
    )


def downgrade() -> None:
    op.drop_table("embeddings")  # the extension stays: other databases' objects may use it


def _create_pgvector(bind: sa.Connection) -> None:
    """CREATE EXTENSION vector, or a ConfigError that says what to install or whom to ask."""
    database = bind.execute(sa.text("SELECT current_database()")).scalar_one()
    server = bind.execute(sa.text("SHOW server_version_num")).scalar_one()
    major = int(server) // 10000
    available = bind.execute(
        sa.text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
    ).scalar_one_or_none()
    if available is None:
        raise ConfigError(
            f"this PostgreSQL server (version {major}) has no pgvector extension, which tagger needs for image "
            f"embeddings: install it on the server (Debian and Ubuntu: `apt install postgresql-{major}-pgvector`; "
            f"Docker: the image pgvector/pgvector:pg{major}; or build it from https://github.com/pgvector/pgvector) "
            "and run `tagger db upgrade` again"
        )
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    except ProgrammingError as exc:  # permission denied: pgvector is not a trusted extension
        raise ConfigError(
            f"pgvector is installed on the server but this database role may not create it in {database!r} "
            f"({str(exc.orig).splitlines()[0]}): ask a superuser to run `CREATE EXTENSION vector;` in that database, "
            "then run `tagger db upgrade` again"
        ) from None
    version = bind.execute(sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar_one()
    if tuple(int(p) for p in version.split(".")[:3]) < PGVECTOR_MIN:
        raise ConfigError(
            f"pgvector {version} is older than 0.7.0, which brought the halfvec type tagger stores embeddings in: "
            "install a newer pgvector on the server and run `ALTER EXTENSION vector UPDATE;` in the database"
        )
