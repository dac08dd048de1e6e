"""What an image's bytes were when it was last tagged (`size_bytes`, `mtime_ns`, `etag`, `sha256`), so a
re-run tags only what is new or changed; and a job's count of the images it passed over as unchanged

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 10:00:00

Existing images get no fingerprint: the first incremental run after the upgrade tags them once more and
records one.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("size_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("mtime_ns", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("etag", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("sha256", sa.String(length=64), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unchanged", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("unchanged")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("sha256")
        batch_op.drop_column("etag")
        batch_op.drop_column("mtime_ns")
        batch_op.drop_column("size_bytes")
