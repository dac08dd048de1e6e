"""history within bounds: suggestions indexed by (version, tag, probability desc, image), so a tag's
page of the active version is one index range and no query reads older versions' rows; the
(tag, probability) index goes (every reader of it now names its version); jobs record when their
done items were pruned, model versions when their suggestions were, and a pruned version cannot be
the active one

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 20:00:00

Measured with bench/tag_index.py (docs/operate.md, "Keeping history within bounds"): at 232k rows over 3
versions a keyset page went from an incremental sort over the tag's rows of every version to an
index-only range of 5 buffers, at any depth.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

PAGES = "ix_suggestions_version_tag_probability"
OLD = "ix_suggestions_tag_probability"


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("items_pruned_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_check_constraint(
            "ck_model_versions_pruned_not_active", "NOT (is_active AND pruned_at IS NOT NULL)"
        )
    # Built in the migration's transaction: writes to suggestions wait while it builds (1.3-1.6 s per
    # million rows on 2 cores, bench/db_size.py; docs/operate.md, "Upgrading to schema 0011"). CONCURRENTLY
    # cannot run in a transaction, would wait for the one holding the migration lock, and a failed build
    # leaves an invalid index behind.
    with op.batch_alter_table("suggestions", schema=None) as batch_op:
        batch_op.create_index(PAGES, ["model_version_id", "tag_id", sa.text("probability DESC"), "image_id"])
        batch_op.drop_index(OLD)


def downgrade() -> None:
    with op.batch_alter_table("suggestions", schema=None) as batch_op:
        batch_op.create_index(OLD, ["tag_id", "probability"], unique=False)
        batch_op.drop_index(PAGES)
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_constraint("ck_model_versions_pruned_not_active", type_="check")
        batch_op.drop_column("pruned_at")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("items_pruned_at")
