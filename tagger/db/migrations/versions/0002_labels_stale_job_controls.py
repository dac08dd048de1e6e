"""labels, stale tracking, model refusals and job controls

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("storage_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("model_version_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("tagged_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key("fk_images_model_version", "model_versions", ["model_version_id"], ["id"])
        batch_op.create_index("ix_images_model_version_id", ["model_version_id"], unique=False)
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("options", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("max_attempts", sa.Integer(), nullable=False, server_default="5"))
        batch_op.add_column(sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "labels",
        sa.Column("image_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tag_id"], ["tags.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "tag_id"),
    )


def downgrade() -> None:
    op.drop_table("labels")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        for column in ("notified_at", "deadline_at", "max_attempts", "options"):
            batch_op.drop_column(column)
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("error")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_model_version_id")
        batch_op.drop_constraint("fk_images_model_version", type_="foreignkey")
        for column in ("tagged_at", "model_version_id", "storage_url"):
            batch_op.drop_column(column)
