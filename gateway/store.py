"""The system of record: SQLAlchemy models and the database handle.

Every externally visible effect is driven by a row written here (a job, an
outbound mail, an inbound message). Nothing a process must remember lives only in
its memory, so more web, SMTP and worker processes can share one PostgreSQL.
ORM objects stay inside `with db.session()` blocks; flows hand dataclasses on.
"""
from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text,
                        TypeDecorator, UniqueConstraint, create_engine, event, func, select)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id(length: int = 12) -> str:
    """Lower-case base32 ids: safe in mail local parts that MTAs may lower-case."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "".join(secrets.choice(alphabet) for _ in range(length))


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use gateway.store.utcnow()")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class PullRequestRequest(Base):
    """One call of POST /api/pull-requests and what became of it."""

    __tablename__ = "pull_request_requests"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id(16))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    repo: Mapped[str] = mapped_column(String(200))
    head: Mapped[str] = mapped_column(String(255))
    base: Mapped[str | None] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    reporter_email: Mapped[str] = mapped_column(String(320))
    reporter_name: Mapped[str | None] = mapped_column(String(200))
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    source_url: Mapped[str | None] = mapped_column(Text)
    source_ref: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    failure_reason: Mapped[str | None] = mapped_column(Text)
    pr_number: Mapped[int | None] = mapped_column(Integer)
    pr_url: Mapped[str | None] = mapped_column(Text)
    thread_id: Mapped[str | None] = mapped_column(ForeignKey("threads.id"))
    job_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Thread(Base):
    """A mail conversation bound to one pull request; its id is what reply tokens sign."""

    __tablename__ = "threads"
    id: Mapped[str] = mapped_column(String(16), primary_key=True, default=new_id)
    repo: Mapped[str] = mapped_column(String(200))
    pr_number: Mapped[int] = mapped_column(Integer)
    pr_url: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(String(300))
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    root_message_id: Mapped[str | None] = mapped_column(String(255))
    message_seq: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# GitHub's repository names are case-insensitive; the caller's spelling is kept for display.
Index("ix_threads_repo_pr", func.lower(Thread.repo), Thread.pr_number)


def thread_for_pull(session: Session, repo: str, pr_number: int) -> Thread | None:
    """The mail thread of a pull request, however the repository name is cased."""
    return session.scalars(select(Thread).where(func.lower(Thread.repo) == repo.lower(),
                                                Thread.pr_number == pr_number)).first()


class Participant(Base):
    """Who may post to a thread by mail, and whether they still want its mail."""

    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("thread_id", "email"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.id"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default="reporter")
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboundMail(Base):
    """The outbox: a composed mail waiting for (or done with) the relay."""

    __tablename__ = "outbound_mails"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[str | None] = mapped_column(ForeignKey("threads.id"))
    kind: Mapped[str] = mapped_column(String(30))
    recipient: Mapped[str] = mapped_column(String(320))
    envelope_from: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(255))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InboundMessage(Base):
    """A mail the receiver accepted (or refused), stored raw, with its verdict."""

    __tablename__ = "inbound_messages"
    __table_args__ = (Index("ix_inbound_thread_msgid", "thread_id", "message_id"),
                      Index("ix_inbound_verdict", "verdict"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[str | None] = mapped_column(ForeignKey("threads.id"))
    message_id: Mapped[str | None] = mapped_column(String(998))
    envelope_from: Mapped[str] = mapped_column(String(320), default="")
    recipients: Mapped[str] = mapped_column(Text, default="")
    from_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    peer: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(10), default="smtp")
    size: Mapped[int] = mapped_column(Integer, default=0)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    verdict: Mapped[str] = mapped_column(String(40), default="queued")
    reason: Mapped[str | None] = mapped_column(Text)
    comment_id: Mapped[int | None] = mapped_column(BigInteger)
    comment_url: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Job(Base):
    """A durable unit of work; see gateway.queue for the life cycle."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "status", "run_after"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(50))
    payload: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(100))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InstallationToken(Base):
    """Cached installation access token, encrypted with a key derived from the secret key."""

    __tablename__ = "installation_tokens"
    installation_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    token_ciphertext: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Installation(Base):
    """What we know of an App installation: suspension pauses its jobs.

    Its row is also the lock that serialises GitHub write-slot reservations (github_app.pacing).
    """

    __tablename__ = "installations"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account: Mapped[str | None] = mapped_column(String(200))
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    suspended_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class GitHubWrite(Base):
    """A write slot handed to a content-creating GitHub request: the pacer's sliding-window log.

    Slots of one installation are strictly increasing, so (installation_id, at) is unique; the
    key's index serves the "n-th most recent slot" lookups. Rows older than the longest window are
    pruned by the next reservation.
    """

    __tablename__ = "github_writes"
    installation_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)


class WebhookDelivery(Base):
    """A GitHub webhook delivery, stored before it is handled; its id de-duplicates."""

    __tablename__ = "webhook_deliveries"
    delivery_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    event: Mapped[str] = mapped_column(String(50))
    action: Mapped[str | None] = mapped_column(String(50))
    payload: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


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
        """One transaction: committed on normal exit (on disk when it returns), rolled back on an exception."""
        with self._writer, self._sessions.begin() as session:
            yield session

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
                    yield DriverTransaction(cursor, self.engine.dialect)
                finally:
                    cursor.close()

    def dispose(self) -> None:
        self.engine.dispose()


@dataclass(frozen=True)
class DriverTransaction:
    cursor: Any
    dialect: Dialect


class DriverStatement:
    """A Core statement compiled once per dialect and run straight on the DBAPI cursor.

    For the statements every mail and webhook delivery runs while its sender waits
    (ReplyPipeline.record, github_events.receive): there, SQLAlchemy's execution path cost several
    times SQLite's own work (bench/smtp_accept.py, bench/webhook_ingest.py). The
    SQL is still SQLAlchemy's, from the models; parameters named in ``keys`` go through their
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
