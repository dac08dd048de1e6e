"""drop the suggestions(model_version_id) index: no query needs it, and the sink pays for it on every row

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 11:50:00
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("suggestions", schema=None) as batch_op:
        batch_op.drop_index("ix_suggestions_model_version")


def downgrade() -> None:
    with op.batch_alter_table("suggestions", schema=None) as batch_op:
        batch_op.create_index("ix_suggestions_model_version", ["model_version_id"], unique=False)
