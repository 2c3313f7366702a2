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

from sqlalchemy.engine import Engine

from gateway.store import Database

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


_bells: dict[str, JobBell] = {}
_bells_lock = threading.Lock()
_engine_urls: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def _url_of(engine: Engine) -> str:
    """The engine's whole URL, which every Database on the same database shares; rendered once."""
    url = _engine_urls.get(engine)
    if url is None:
        url = _engine_urls[engine] = engine.url.render_as_string(hide_password=False)
    return url


def bell_for(db: Database | Engine) -> JobBell:
    """The bell shared by every Database object on the same URL in this process."""
    url = _url_of(db.engine)  # a Database's engine, or the engine itself (Engine.engine is itself)
    with _bells_lock:
        return _bells.setdefault(url, JobBell())


class PostgresListener:
    """LISTENs for jobs committed by other processes and rings this process's bell.

    One per process and database; reconnects after a failure (polling covers the gap).
    """

    def __init__(self, url: str, bell: JobBell):
        self.url = url
        self.bell = bell
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-listener", daemon=True)

    def start(self) -> "PostgresListener":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import psycopg

        dsn = self.url.replace("postgresql+psycopg://", "postgresql://", 1)
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.bell.ring()  # jobs committed while we were not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.bell.ring()
            except Exception as exc:  # server restart, network: poll until we are back
                log.warning("listening for jobs failed, retrying in 5 s: %s", exc)
                self._stop.wait(5)


_listeners: dict[str, PostgresListener] = {}


def listen_for_jobs(db: Database) -> JobBell:
    """This process's bell for ``db``, rung by other processes too when ``db`` is PostgreSQL."""
    bell = bell_for(db)
    url = _url_of(db.engine)
    if db.engine.dialect.name == "postgresql":
        with _bells_lock:
            if url not in _listeners:
                _listeners[url] = PostgresListener(url, bell).start()
    return bell
