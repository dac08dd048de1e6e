"""job_items indexed on (job, state, image): a batch's pending items are one index range

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 00:50:00

With (job_id, state) alone, a planner without statistics on a new job's items (its first minutes,
before autovacuum's ANALYZE) chose that index for "these 32 images of job J, still pending" and
filtered all of J's pending items for every batch: each batch's claim and write grew with the job.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.drop_index("ix_job_items_job_state")
        batch_op.create_index("ix_job_items_job_state", ["job_id", "state", "image_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.drop_index("ix_job_items_job_state")
        batch_op.create_index("ix_job_items_job_state", ["job_id", "state"], unique=False)
