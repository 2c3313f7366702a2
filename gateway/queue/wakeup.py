"""Waking idle workers when a job is committed, instead of making them poll.

In the same process a JobBell rings at once; across processes PostgreSQL's LISTEN/NOTIFY rings it.
Polling stays the fallback (SQLite across processes, jobs whose retry time comes, a listener that
lost its connection). A bell never misses a ring: a worker reads its generation before looking
for work and waits on that generation.
"""
from __future__ import annotations

import logging
import threading
import weakref

from sqlalchemy import func, select
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session

from gateway.store import Database, DriverStatement, DriverTransaction, after_commit

log = logging.getLogger("gateway.queue")

NOTIFY_CHANNEL = "gateway_jobs"


class JobBell:
    """Wakes idle workers of this process when a job is committed; no wake-up is ever missed.

    A worker reads ``generation`` before looking for work and waits with it; a ring that
    happened in between makes the wait return at once.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        with self._condition:
            return self._generation

    def ring(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, since: int, timeout: float) -> bool:
        """True if rung since ``since``, False on timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: self._generation != since, timeout)


# Per engine (a Database's): weakly, so a disposed test database takes its bell and listener along.
# Never per URL: a URL carries the password.
_bells: weakref.WeakKeyDictionary[Engine, JobBell] = weakref.WeakKeyDictionary()
_listeners: weakref.WeakKeyDictionary[Engine, "PostgresListener"] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def bell_for(db: Database | Engine) -> JobBell:
    """This process's bell for ``db``: rung when a job committed through it, or (PostgreSQL, once
    ``listen_for_jobs`` runs) through any other process."""
    engine = db.engine  # a Database's engine, or the engine itself (Engine.engine is itself)
    with _lock:
        bell = _bells.get(engine)
        if bell is None:
            bell = _bells[engine] = JobBell()
        return bell


def wake_workers_on_commit(tx: Session | DriverTransaction) -> None:
    """Once ``tx`` commits, wake idle workers: this process's by its bell, other processes' by a
    NOTIFY sent inside ``tx`` (PostgreSQL delivers it on commit and drops it on rollback).

    Once per transaction, however many jobs it adds.
    """
    engine = tx.engine if isinstance(tx, DriverTransaction) else tx.get_bind()
    if not after_commit(tx, bell_for(engine).ring):
        return  # already arranged for this transaction
    if engine.dialect.name == "postgresql":
        if isinstance(tx, DriverTransaction):
            _NOTIFY_WORKERS.execute(tx, {})
        else:
            tx.execute(_NOTIFY_WORKERS.statement)


_NOTIFY_WORKERS = DriverStatement(select(func.pg_notify(NOTIFY_CHANNEL, "")), keys=())


class PostgresListener:
    """LISTENs for jobs committed by other processes and rings this process's bell.

    One per process and database; reconnects after a failure (polling covers the gap). The DSN
    (with its password) is only used to connect: not kept in a registry, not logged.
    """

    def __init__(self, dsn: str | URL, bell: JobBell):
        url = make_url(dsn)
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._password = url.password
        self._where = url.render_as_string(hide_password=True)
        self.bell = bell
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-listener", daemon=True)

    def __repr__(self) -> str:
        return f"PostgresListener({self._where})"

    def start(self) -> "PostgresListener":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.bell.ring()  # jobs committed while we were not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.bell.ring()
            except Exception as exc:  # server restart, network: poll until we are back
                reason = str(exc).replace(self._password, "***") if self._password else str(exc)
                log.warning("listening for jobs on %s failed, retrying in 5 s: %s", self._where, reason)
                self._stop.wait(5)


def listen_for_jobs(db: Database) -> JobBell:
    """This process's bell for ``db``, rung by other processes too when ``db`` is PostgreSQL."""
    engine = db.engine
    bell = bell_for(engine)
    if engine.dialect.name == "postgresql":
        with _lock:
            if engine not in _listeners:
                listener = _listeners[engine] = PostgresListener(engine.url, bell).start()
                weakref.finalize(engine, listener.stop)  # the listener holds no reference to the engine
    return bell
