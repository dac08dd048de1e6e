"""Alembic environment: the engine (or, on PostgreSQL, the connection that holds the migration lock) comes
from tagger.db.migrate, never from a config file."""

from alembic import context
from sqlalchemy import Connection

from tagger.db.schema import Base

engine = context.config.attributes["engine"]
sqlite = engine.dialect.name == "sqlite"


def run(connection: Connection) -> None:
    if sqlite:
        # Batch migrations rebuild tables (copy, drop, rename); with foreign keys on, dropping the old
        # `images` would cascade-delete every row that points at it. The pragma only works outside a
        # transaction, so it goes straight to the driver before SQLAlchemy begins one.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=sqlite)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
    if sqlite:
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


locked = context.config.attributes.get("connection")
if locked is not None:
    run(locked)  # PostgreSQL: in the transaction that holds the migration lock (tagger.db.migrate)
else:
    with engine.connect() as connection:
        run(connection)
