"""Fresh, migrated databases for tests: an SQLite file, or a schema on PostgreSQL.

The suite runs on SQLite by default; with GATEWAY_TEST_DATABASE_URL pointing at
PostgreSQL (`.ci/run` does this) every test gets its own schema there instead.
"""
from __future__ import annotations

import os
import uuid
from urllib.parse import quote

from sqlalchemy import create_engine, text

from gateway.migrate import upgrade
from gateway.store import Database

POSTGRES_URL = os.environ.get("GATEWAY_TEST_DATABASE_URL", "")


def fresh_database_url(tmp_path) -> tuple[str, callable]:
    """A URL for an empty database, and a function that removes it."""
    if not POSTGRES_URL:
        return f"sqlite:///{tmp_path}/gateway.db", lambda: None
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"

    def drop():
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url, drop


def migrated_database(tmp_path) -> tuple[Database, callable]:
    url, drop = fresh_database_url(tmp_path)
    db = Database(url)
    upgrade(db)

    def close():
        db.dispose()
        drop()

    return db, close
