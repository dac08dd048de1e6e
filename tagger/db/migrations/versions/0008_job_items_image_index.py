"""job_items indexed by image: an image's latest attempt (`tagger results` shows a failure newer than its
tags) is read from its own few items, not by scanning every job's

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 18:50:00
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.create_index("ix_job_items_image", ["image_id", "updated_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.drop_index("ix_job_items_image")
