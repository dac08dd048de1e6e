"""How unfamiliar each image looked to the version that tagged it: `images.unfamiliarity`, the percentage of
that version's held-out stills more familiar than it (JointEnergy over the tag logits), written by the sink
beside `images.model_version_id` and indexed with it for the review queue "unfamiliar first"; and each job's
count of images above the 99th percentile (`jobs.unfamiliar`), which the workers export per job for the
drift alert.

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-08 01:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unfamiliarity", sa.Float(), nullable=True))
    op.create_index("ix_images_version_unfamiliarity", "images", ["model_version_id", "unfamiliarity", "id"])
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unfamiliar", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("unfamiliar")
    op.drop_index("ix_images_version_unfamiliarity", table_name="images")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("unfamiliarity")
