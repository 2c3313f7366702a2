"""Alembic environment: runs migrations on the connection gateway.migrate hands in."""
from alembic import context

from gateway.store import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from gateway.store import Database

        db = Database(config.get_main_option("sqlalchemy.url"))
        with db.engine.connect() as connection:
            _run(connection)
        db.dispose()
    else:
        _run(connection)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `gateway db upgrade`")
run_migrations_online()
