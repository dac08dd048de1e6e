"""an image is a key under a storage root: storages table, images unique on (storage, key); no per-row
foreign keys on suggestions; jobs record the files a listing passed over; labels record rejections
(negatives) and who decided

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 12:00:00

Existing images keep their ids. Each is attached to the storage it was last read from, else to the
storage of the newest job that included it, else to a storage named `unknown:` (a query job says so
when it meets one). Nothing is deleted.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UNKNOWN = "unknown:"
# Names for the constraints 0001 left unnamed, so batch mode (SQLite) can find and drop them.
NAMING = {
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
}


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.create_table(
        "storages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url", name="uq_storages_url"),
    )
    # Where each image lives: its own record, else its newest job's storage, else unknown.
    op.execute(
        """
        UPDATE images SET storage_url = (
            SELECT j.storage_url FROM job_items ji JOIN jobs j ON j.id = ji.job_id
            WHERE ji.image_id = images.id AND j.storage_url <> '' ORDER BY j.created_at DESC LIMIT 1
        ) WHERE storage_url IS NULL OR storage_url = ''
        """
    )
    op.execute(f"UPDATE images SET storage_url = '{UNKNOWN}' WHERE storage_url IS NULL OR storage_url = ''")
    op.execute("INSERT INTO storages (url) SELECT DISTINCT storage_url FROM images")
    with op.batch_alter_table("images", naming_convention=NAMING) as batch_op:
        batch_op.add_column(sa.Column("storage_id", sa.Integer(), nullable=True))
    op.execute("UPDATE images SET storage_id = (SELECT s.id FROM storages s WHERE s.url = images.storage_url)")
    if postgres:
        unique_key = _constraint_on(bind, "images", ["key"], "unique")
        op.drop_constraint(unique_key, "images", type_="unique")
        op.drop_column("images", "storage_url")
        op.alter_column("images", "storage_id", nullable=False)
        op.create_foreign_key("fk_images_storage", "images", "storages", ["storage_id"], ["id"])
        op.create_unique_constraint("uq_images_storage_key", "images", ["storage_id", "key"])
        for name in _foreign_keys(bind, "suggestions"):
            op.drop_constraint(name, "suggestions", type_="foreignkey")
    else:
        with op.batch_alter_table("images", naming_convention=NAMING, recreate="always") as batch_op:
            batch_op.drop_constraint("uq_images_key", type_="unique")
            batch_op.drop_column("storage_url")
            batch_op.alter_column("storage_id", existing_type=sa.Integer(), nullable=False)
            batch_op.create_foreign_key("fk_images_storage", "storages", ["storage_id"], ["id"])
            batch_op.create_unique_constraint("uq_images_storage_key", ["storage_id", "key"])
        with op.batch_alter_table("suggestions", naming_convention=NAMING, recreate="always") as batch_op:
            batch_op.drop_constraint("fk_suggestions_image_id_images", type_="foreignkey")
            batch_op.drop_constraint("fk_suggestions_tag_id_tags", type_="foreignkey")
            batch_op.drop_constraint("fk_suggestions_model_version_id_model_versions", type_="foreignkey")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("passed_over", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("labels") as batch_op:
        batch_op.add_column(sa.Column("positive", sa.Boolean(), nullable=False, server_default=sa.text("true")))
        batch_op.add_column(sa.Column("decided_by", sa.String(length=200), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("0004 changes image identity; restore a backup taken before upgrading")


def _constraint_on(bind: sa.engine.Connection, table: str, columns: list[str], kind: str) -> str:
    inspector = sa.inspect(bind)
    for c in inspector.get_unique_constraints(table):
        if c["column_names"] == columns and c["name"]:
            return str(c["name"])
    raise RuntimeError(f"no {kind} constraint on {table}{tuple(columns)}")


def _foreign_keys(bind: sa.engine.Connection, table: str) -> list[str]:
    return [str(fk["name"]) for fk in sa.inspect(bind).get_foreign_keys(table) if fk["name"]]
