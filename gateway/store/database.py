"""The database handle: engines, transactions, and the driver-level fast path.

SQLite is tuned so that threads and processes share one file safely (WAL, one writer at a time,
BEGIN IMMEDIATE); PostgreSQL is used as it is. Two kinds of transaction: an ORM ``session()`` for
most work, and a ``driver_transaction()`` for the few statements a waiting mail or webhook client
pays for, run on the DBAPI cursor (``DriverStatement``). Either kind can carry work to do once it
has committed (``after_commit``): waking whoever waits for what it wrote.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("gateway.store")


class Database:
    """Engine and transactional sessions; SQLite is tuned so threads share it safely."""

    def __init__(self, url: str, *, echo: bool = False):
        self.url = url
        self.engine: Engine = _make_engine(url, echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time. Threads of this process queue for it here, in order and
        # woken at once, instead of in SQLite's busy handler, which polls with sleeps of up to 100 ms.
        self._writer = threading.RLock() if self.is_sqlite else nullcontext()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on normal exit (on disk when it returns), rolled back on an exception.

        What was registered with ``after_commit`` runs once it has committed, outside the writer lock.
        """
        with self._writer, self._sessions.begin() as session:
            yield session
        _run_after_commit(session.info.pop(_AFTER_COMMIT, None))

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A transaction that only reads: on SQLite it does not queue for the writer lock."""
        with self._sessions() as session:
            session.connection(execution_options={READ_ONLY: True})
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def driver_transaction(self, *, flush_on_commit: bool = True) -> Iterator["DriverTransaction"]:
        """One transaction like ``session()`` (same lock, BEGIN, commit at exit, rollback on an
        exception), on the DBAPI cursor: for DriverStatements.

        The commit returns once the transaction is on disk. ``flush_on_commit=False`` lets it
        return before (SQLite's synchronous=NORMAL, PostgreSQL's synchronous_commit=off): it still
        survives a crash of any gateway process, but the newest such commits may be lost if the
        machine (or the database server) loses power. Only for writes whose sender keeps a copy
        to send again: GitHub's webhook deliveries.
        """
        with self._writer, self.engine.connect() as connection:
            if not flush_on_commit:
                connection.execution_options(**{NO_FLUSH_ON_COMMIT: True})  # read by _on_begin (SQLite)
            with connection.begin():
                cursor = connection.connection.cursor()
                try:
                    if not flush_on_commit and not self.is_sqlite:
                        cursor.execute("SET LOCAL synchronous_commit = off")
                    tx = DriverTransaction(cursor, self.engine)
                    yield tx
                finally:
                    cursor.close()
        _run_after_commit(tx.on_commit)

    def dispose(self) -> None:
        self.engine.dispose()


@dataclass(frozen=True)
class DriverTransaction:
    cursor: Any
    engine: Engine
    on_commit: dict[Callable[[], None], None] = field(default_factory=dict, repr=False)  # after_commit()

    @property
    def dialect(self) -> Dialect:
        return self.engine.dialect


_AFTER_COMMIT = "gateway_after_commit"


def after_commit(tx: Session | DriverTransaction, callback: Callable[[], None]) -> bool:
    """Call ``callback`` once the transaction of ``Database.session()`` or
    ``Database.driver_transaction()`` has committed; never if it rolls back.

    A callback registered twice runs once: False says it already was. It runs after the commit,
    outside the writer lock; an exception in it is logged, not raised (the commit stands).
    """
    callbacks = tx.on_commit if isinstance(tx, DriverTransaction) else tx.info.setdefault(_AFTER_COMMIT, {})
    if callback in callbacks:
        return False
    callbacks[callback] = None
    return True


def _run_after_commit(callbacks: dict[Callable[[], None], None] | None) -> None:
    for callback in callbacks or ():
        try:
            callback()
        except Exception:
            log.exception("after-commit callback %r failed", callback)


class DriverStatement:
    """A Core statement compiled once per dialect and run straight on the DBAPI cursor.

    For the statements every mail and webhook delivery runs while its sender waits
    (gateway.store.replies, gateway.store.webhooks): there, SQLAlchemy's execution path costs several
    times SQLite's own work. The SQL is still SQLAlchemy's, from the models; parameters named in ``keys`` go through their
    columns' bind processors as SQLAlchemy would pass them; rows come back as the driver gives them
    (no result processing: read ids, strings and NULL tests only). No expanding IN lists.
    """

    def __init__(self, statement, keys: tuple[str, ...]):
        self.statement, self.keys = statement, keys
        self._by_dialect: dict[str, tuple[str, Callable[[dict], Any]]] = {}

    def execute(self, tx: DriverTransaction, params: dict[str, Any]):
        """Run once; returns the cursor, to fetch from."""
        sql, convert = self._compiled(tx.dialect)
        tx.cursor.execute(sql, convert(params))
        return tx.cursor

    def executemany(self, tx: DriverTransaction, rows: list[dict[str, Any]]) -> None:
        sql, convert = self._compiled(tx.dialect)
        tx.cursor.executemany(sql, [convert(row) for row in rows])

    def _compiled(self, dialect: Dialect) -> tuple[str, Callable[[dict], Any]]:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect, column_keys=list(self.keys))
            fixed = {name: value for name, value in compiled.params.items() if name not in self.keys}
            processors = [(name, processor) for name in self.keys
                          if (processor := compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
                          is not None]
            order = compiled.positiontup if compiled.positional else None

            def convert(params: dict[str, Any]):
                values = {**fixed, **params}
                for name, processor in processors:
                    values[name] = processor(values[name])
                return values if order is None else tuple(values[name] for name in order)

            found = self._by_dialect[dialect.name] = (str(compiled), convert)
        return found


READ_ONLY = "gateway_read_only"
NO_FLUSH_ON_COMMIT = "gateway_no_flush_on_commit"
SQLITE_BUSY_MS = 10          # SQLite's own wait: its busy handler sleeps up to 100 ms between tries
SQLITE_WRITER_WAIT = 30.0    # how long a writer queues for the lock before giving up
SQLITE_FIRST_POLL, SQLITE_LAST_POLL = 0.00005, 0.001


def _begin_immediate(raw_connection) -> None:
    """Take SQLite's writer lock, polling while another process holds it: from 50 µs, doubling to 1 ms.

    A write transaction here holds the lock for about 0.1 ms (webhook delivery) to a few ms;
    SQLite's own busy handler sleeps 1 ms first and backs off to 100 ms, so with web, smtp and
    worker processes on one SQLite file the lock sat idle while waiters slept. Its handler is off
    (busy_timeout 0) only for this statement.
    """
    deadline = time.monotonic() + SQLITE_WRITER_WAIT
    delay = SQLITE_FIRST_POLL
    raw_connection.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                raw_connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, SQLITE_LAST_POLL)
    finally:
        raw_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")


def insert_or_ignore(where: Session | DriverTransaction, model, values: dict,
                     conflict_columns: tuple[str, ...]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL, in a session or a driver
    transaction; True if the row went in.

    The statement is built once per table, columns and dialect (this runs on every webhook delivery).
    """
    driver = isinstance(where, DriverTransaction)
    dialect = where.dialect.name if driver else where.get_bind().dialect.name
    key = (dialect, model.__tablename__, tuple(values), conflict_columns)
    statement = _INSERT_OR_IGNORE.get(key)
    if statement is None:
        module = postgresql if dialect == "postgresql" else sqlite
        statement = _INSERT_OR_IGNORE[key] = DriverStatement(module.insert(model).on_conflict_do_nothing(
            index_elements=list(conflict_columns)).returning(*(getattr(model, c) for c in conflict_columns)),
            keys=tuple(values))
    # RETURNING, not rowcount: psycopg reports -1 for this statement when it is not built with .values()
    if driver:
        return statement.execute(where, values).fetchone() is not None
    return where.connection().execute(statement.statement, values).first() is not None


_INSERT_OR_IGNORE: dict[tuple, DriverStatement] = {}


def _make_engine(url: str, echo: bool) -> Engine:
    if url.startswith("sqlite"):
        database = url.split(":///", 1)[1] if ":///" in url else ""
        if database and database != ":memory:":
            Path(database.split("?", 1)[0]).parent.mkdir(parents=True, exist_ok=True)
        # Every transaction opens with BEGIN IMMEDIATE: writers queue on the busy timeout
        # instead of failing with "database is locked" on a read-to-write upgrade.
        # Connections are pooled, so the PRAGMAs below run once per connection, not per transaction.
        engine = create_engine(url, echo=echo, pool_size=5, max_overflow=20,
                               connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection):
            # Readers take a snapshot (WAL) and never wait for the writer; see Database.read_session.
            options = connection.get_execution_options()
            if options.get(READ_ONLY):
                connection.exec_driver_sql("BEGIN")
                return
            # FULL: a commit returns once the WAL is fsynced. NORMAL (driver_transaction's
            # flush_on_commit=False): before;
            # the next FULL commit or checkpoint syncs it. SQLite takes this only between transactions.
            level = "NORMAL" if options.get(NO_FLUSH_ON_COMMIT) else "FULL"
            raw, info = connection.connection.driver_connection, connection.connection.info
            if info.get("synchronous") != level:
                raw.execute(f"PRAGMA synchronous={level}")
                info["synchronous"] = level
            _begin_immediate(raw)

        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10)
