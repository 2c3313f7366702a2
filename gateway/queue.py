"""The durable job queue and the worker that runs it.

A job row is written in the same transaction as the data that asks for it, so a
crash can lose neither. Workers claim a job with a lease (FOR UPDATE SKIP
LOCKED on PostgreSQL; SQLite serialises writers), renewed by a heartbeat while
the job runs, so a worker that dies leaves its job to be claimed again once the
lease runs out, and a slow job is never taken by a second worker. An outcome is
recorded only by the worker still holding the lease. Failures are retried with
exponential backoff and full jitter, or after the delay the other side asked for;
a job that keeps failing, or fails for good, is dead-lettered with its reason and
can be retried by an operator. Jobs of a suspended GitHub installation wait, untouched.

Idle workers sleep until a job is committed: in the same process a JobBell rings
at once, across processes PostgreSQL's NOTIFY rings it; polling is the fallback
(SQLite across processes, and jobs whose retry time comes).

Not here: what a job does. Flows register one handler per job kind.
"""
from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import event, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from gateway.errors import Deferred, PermanentError, TransientError
from gateway.store import Database, DriverStatement, DriverTransaction, Installation, Job, utcnow

log = logging.getLogger("gateway.queue")


class Paused(Exception):
    """The job's installation is suspended: put it back, untouched, until it is resumed."""


def raise_if_suspended(db: Database, job_id: int, installation_id: int) -> None:
    """Tag a job with the installation it turned out to need; Paused if that one is suspended.

    For jobs that only learn their installation while running (a PR request without one).
    """
    with db.session() as session:
        session.get(Job, job_id).installation_id = installation_id
        installation = session.get(Installation, installation_id)
        reason = (installation.suspended_reason or "the installation is suspended"
                  if installation is not None and installation.suspended_at is not None else None)
    if reason is not None:  # raised after the commit: the tag is what keeps the job waiting
        raise Paused(f"paused: {reason}")


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    installation_id: int | None


@dataclass(frozen=True)
class JobKind:
    """How to run one kind of job, and what to record when it is dead-lettered."""

    name: str
    run: Callable[[ClaimedJob], None]
    on_dead: Callable[[ClaimedJob, str], None] | None = None


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


def enqueue(session: Session | DriverTransaction, kind: str, payload: dict[str, Any], *,
            installation_id: int | None = None, run_after: datetime | None = None, max_attempts: int = 8) -> int:
    """Add a job inside the caller's transaction; idle workers wake when it commits. Returns its id.

    A Core insert: it runs on every mail and webhook while the sender waits.
    """
    now = utcnow()
    if isinstance(session, DriverTransaction):
        enqueue_rows(session, kind, [(payload, installation_id)], max_attempts=max_attempts)
        session.committed.append(lambda: None)
        return -1
    job_id = session.connection().execute(
        _INSERT_JOB, _job_row(kind, payload, installation_id, run_after or now, max_attempts, now)).scalar_one()
    _ring_on_commit(session)
    return job_id


def enqueue_rows(tx: DriverTransaction, kind: str, jobs: list[tuple[dict[str, Any], int | None]], *,
                 max_attempts: int = 8) -> None:
    """Add jobs of one kind, (payload, installation id) each, inside a Database.driver_transaction.

    Idle workers of this process wake when the caller calls ``ring_after_commit``; those of other
    processes at the commit (NOTIFY on PostgreSQL), as with ``enqueue``."""
    now = utcnow()
    _INSERT_JOB_ROWS.executemany(tx, [_job_row(kind, payload, installation_id, now, max_attempts, now)
                                      for payload, installation_id in jobs])
    if tx.dialect.name == "postgresql":
        _NOTIFY_WORKERS.execute(tx, {})


def ring_after_commit(db: Database) -> None:
    """Jobs were committed outside a Session (enqueue_rows): wake this process's idle workers."""
    bell_for(db).ring()


def _job_row(kind: str, payload: dict[str, Any], installation_id: int | None, run_after: datetime,
             max_attempts: int, now: datetime) -> dict[str, Any]:
    return {"kind": kind, "payload": json.dumps(payload, sort_keys=True), "installation_id": installation_id,
            "run_after": run_after, "max_attempts": max_attempts, "status": "queued", "attempts": 0,
            "created_at": now, "updated_at": now}


_INSERT_JOB = insert(Job).returning(Job.id)
_INSERT_JOB_ROWS = DriverStatement(insert(Job), keys=tuple(_job_row("", {}, None, utcnow(), 1, utcnow())))
# PostgreSQL delivers it to LISTENers (PostgresListener) on commit and drops it on rollback.
_NOTIFY_WORKERS = DriverStatement(select(func.pg_notify(NOTIFY_CHANNEL, "")), keys=())


def _ring_on_commit(session: Session) -> None:
    if session.info.get("gateway_bell") is not None:
        return
    bind = session.get_bind()
    session.info["gateway_bell"] = bell_for(bind)
    if bind.dialect.name == "postgresql":
        session.execute(_NOTIFY_WORKERS.statement)


@event.listens_for(Session, "after_commit")
def _ring_after_commit(session: Session) -> None:
    bell = session.info.pop("gateway_bell", None)
    if bell is not None:
        bell.ring()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop("gateway_bell", None)


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


def backoff_seconds(attempt: int, *, base: float = 2.0, cap: float = 3600.0,
                    rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): spreads a thundering herd."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return max(0.5, ceiling * rng())


def retry_dead(db: Database, job_id: int) -> bool:
    """Put a dead-lettered job back in the queue with a fresh attempt budget (operator's retry)."""
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.status != "dead":
            return False
        job.status, job.attempts, job.run_after = "queued", 0, utcnow()
        job.locked_by = job.locked_until = job.finished_at = None
        _ring_on_commit(session)
        return True


class Worker:
    def __init__(self, db: Database, kinds: list[JobKind], *, worker_id: str | None = None,
                 lease: timedelta = timedelta(seconds=60), poll_interval: float = 1.0,
                 backoff_cap: float = 3600.0, rng: Callable[[], float] = random.random,
                 clock: Callable[[], datetime] = utcnow, bell: JobBell | None = None):
        self.db = db
        self.kinds = {kind.name: kind for kind in kinds}
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.lease = lease
        self.poll_interval = poll_interval
        self.backoff_cap = backoff_cap
        self.rng = rng
        self.clock = clock
        self.bell = bell
        self._renew_interval: float | None = lease.total_seconds() / 3  # None: no heartbeat (tests)

    def claim(self) -> ClaimedJob | None:
        now = self.clock()
        suspended = select(Installation.id).where(Installation.suspended_at.is_not(None))
        with self.db.session() as session:
            query = (
                select(Job)
                .where(or_(Job.status == "queued", (Job.status == "running") & (Job.locked_until < now)))
                .where(Job.run_after <= now)
                .where(or_(Job.installation_id.is_(None), Job.installation_id.not_in(suspended)))
                .order_by(Job.run_after, Job.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            job = session.scalars(query).first()
            if job is None:
                return None
            if job.status == "running":
                log.warning("job %s (%s): lease of %s ran out, taking it over", job.id, job.kind, job.locked_by)
            job.status, job.locked_by, job.locked_until = "running", self.worker_id, now + self.lease
            job.attempts += 1
            return ClaimedJob(job.id, job.kind, json.loads(job.payload), job.attempts, job.max_attempts,
                              job.installation_id)

    def run_once(self) -> bool:
        """Claim and run one job; False when there was nothing to do."""
        job = self.claim()
        if job is None:
            return False
        kind = self.kinds.get(job.kind)
        try:
            if kind is None:
                raise PermanentError(f"no handler for job kind {job.kind!r}")
            with _Heartbeat(self, job.id):
                kind.run(job)
        except Paused as exc:
            self._pause(job, str(exc))
        except Deferred as exc:
            self._pause(job, str(exc), run_after=self.clock() + timedelta(seconds=exc.retry_after))
        except PermanentError as exc:
            self._dead(job, kind, str(exc))
        except TransientError as exc:
            self._retry_or_dead(job, kind, str(exc), exc.retry_after)
        except Exception as exc:  # a bug or an unexpected failure: retried, then dead-lettered
            log.exception("job %s (%s) raised", job.id, job.kind)
            self._retry_or_dead(job, kind, f"{type(exc).__name__}: {exc}", None)
        else:
            self._finish(job, "done", None)
        return True

    def run_until_idle(self, max_jobs: int = 1000) -> int:
        """Run jobs that are due now until none are left (tests, `gateway demo`)."""
        count = 0
        while count < max_jobs and self.run_once():
            count += 1
        return count

    def run_forever(self, stop: threading.Event) -> None:
        log.info("worker %s started", self.worker_id)
        while not stop.is_set():
            rung = self.bell.generation if self.bell is not None else 0
            try:
                busy = self.run_once()
            except Exception:  # database down: keep the process alive and try again
                log.exception("worker loop failed; retrying")
                stop.wait(self.poll_interval)
                continue
            if busy:
                continue
            if self.bell is not None:
                self.bell.wait(rung, self.poll_interval)
            else:
                stop.wait(self.poll_interval)
        log.info("worker %s stopped", self.worker_id)

    def renew_lease(self, job_id: int) -> bool:
        """Extend our lease on a running job; False if another worker has taken it over."""
        with self.db.session() as session:
            result = session.execute(
                update(Job).where(Job.id == job_id, Job.locked_by == self.worker_id, Job.status == "running")
                .values(locked_until=self.clock() + self.lease))
            return result.rowcount == 1

    # -- outcomes ----------------------------------------------------------

    def _retry_or_dead(self, job: ClaimedJob, kind: JobKind | None, reason: str, retry_after: float | None):
        if job.attempts >= job.max_attempts:
            self._dead(job, kind, f"gave up after {job.attempts} attempts: {reason}")
            return
        delay = retry_after if retry_after is not None else backoff_seconds(
            job.attempts, cap=self.backoff_cap, rng=self.rng)
        log.warning("job %s (%s) attempt %d failed, retrying in %.1fs: %s",
                    job.id, job.kind, job.attempts, delay, reason)
        with self.db.session() as session:
            row = self._owned_row(session, job)
            if row is None:
                return
            row.status, row.last_error = "queued", reason
            row.run_after = self.clock() + timedelta(seconds=delay)
            row.locked_by = row.locked_until = None

    def _pause(self, job: ClaimedJob, reason: str, run_after: datetime | None = None) -> None:
        """Back in the queue without spending the attempt: nothing was tried."""
        log.info("job %s (%s) %s", job.id, job.kind, reason)
        with self.db.session() as session:
            row = self._owned_row(session, job)
            if row is None:
                return
            row.status, row.last_error, row.attempts = "queued", reason, max(0, row.attempts - 1)
            row.locked_by = row.locked_until = None
            if run_after is not None:
                row.run_after = run_after

    def _dead(self, job: ClaimedJob, kind: JobKind | None, reason: str) -> None:
        log.error("job %s (%s) dead-lettered: %s", job.id, job.kind, reason)
        if self._finish(job, "dead", reason) and kind is not None and kind.on_dead is not None:
            try:
                kind.on_dead(job, reason)
            except Exception:
                log.exception("recording the failure of job %s failed", job.id)

    def _finish(self, job: ClaimedJob, status: str, reason: str | None) -> bool:
        with self.db.session() as session:
            row = self._owned_row(session, job)
            if row is None:
                return False
            row.status, row.last_error, row.finished_at = status, reason, self.clock()
            row.locked_by = row.locked_until = None
            return True

    def _owned_row(self, session: Session, job: ClaimedJob) -> Job | None:
        """The job's row if this worker still holds its lease; else another worker has it now."""
        row = session.execute(select(Job).where(Job.id == job.id).with_for_update()).scalar_one_or_none()
        if row is None or row.locked_by != self.worker_id or row.status != "running":
            log.warning("job %s (%s): lease lost to %s, outcome of this attempt not recorded",
                        job.id, job.kind, row.locked_by if row is not None else "nobody")
            return None
        return row


class _Heartbeat:
    """Renews a running job's lease every third of it, so only a dead worker loses its job."""

    def __init__(self, worker: Worker, job_id: int):
        self.worker = worker
        self.job_id = job_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> "_Heartbeat":
        if self.worker._renew_interval is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.worker._renew_interval):
            try:
                if not self.worker.renew_lease(self.job_id):
                    log.warning("job %s: lease lost to another worker", self.job_id)
                    return
            except Exception:
                log.exception("renewing the lease of job %s failed", self.job_id)
