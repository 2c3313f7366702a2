"""The durable job queue and the worker that runs it.

A job row is written in the same transaction as the data that asks for it, so a
crash can lose neither. Workers claim a job with a lease (FOR UPDATE SKIP
LOCKED on PostgreSQL; SQLite serialises writers), so a worker that dies leaves
its job to be claimed again once the lease runs out. Failures are retried with
exponential backoff and full jitter, or after the delay the other side asked for;
a job that keeps failing, or fails for good, is dead-lettered with its reason and
can be replayed. Jobs of a suspended GitHub installation wait, untouched.

Not here: what a job does. Flows register one handler per job kind.
"""
from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway.errors import PermanentError, TransientError
from gateway.store import Database, Installation, Job, utcnow

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


def enqueue(session: Session, kind: str, payload: dict[str, Any], *, installation_id: int | None = None,
            run_after: datetime | None = None, max_attempts: int = 8) -> Job:
    """Add a job inside the caller's transaction."""
    job = Job(kind=kind, payload=json.dumps(payload, sort_keys=True), installation_id=installation_id,
              run_after=run_after or utcnow(), max_attempts=max_attempts, status="queued")
    session.add(job)
    session.flush()
    return job


def backoff_seconds(attempt: int, *, base: float = 2.0, cap: float = 3600.0,
                    rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): spreads a thundering herd."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return max(0.5, ceiling * rng())


def replay(db: Database, job_id: int) -> bool:
    """Put a dead-lettered job back in the queue with a fresh attempt budget."""
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.status != "dead":
            return False
        job.status, job.attempts, job.run_after = "queued", 0, utcnow()
        job.locked_by = job.locked_until = job.finished_at = None
        return True


class Worker:
    def __init__(self, db: Database, kinds: list[JobKind], *, worker_id: str | None = None,
                 lease: timedelta = timedelta(minutes=5), poll_interval: float = 0.5,
                 backoff_cap: float = 3600.0, rng: Callable[[], float] = random.random,
                 clock: Callable[[], datetime] = utcnow):
        self.db = db
        self.kinds = {kind.name: kind for kind in kinds}
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.lease = lease
        self.poll_interval = poll_interval
        self.backoff_cap = backoff_cap
        self.rng = rng
        self.clock = clock

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
            kind.run(job)
        except Paused as exc:
            self._pause(job, str(exc))
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
            try:
                busy = self.run_once()
            except Exception:  # database down: keep the process alive and try again
                log.exception("worker loop failed; retrying")
                busy = False
            if not busy:
                stop.wait(self.poll_interval)
        log.info("worker %s stopped", self.worker_id)

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
            row = session.get(Job, job.id)
            row.status, row.last_error = "queued", reason
            row.run_after = self.clock() + timedelta(seconds=delay)
            row.locked_by = row.locked_until = None

    def _pause(self, job: ClaimedJob, reason: str) -> None:
        log.info("job %s (%s) %s", job.id, job.kind, reason)
        with self.db.session() as session:
            row = session.get(Job, job.id)
            row.status, row.last_error, row.attempts = "queued", reason, max(0, row.attempts - 1)
            row.locked_by = row.locked_until = None

    def _dead(self, job: ClaimedJob, kind: JobKind | None, reason: str) -> None:
        log.error("job %s (%s) dead-lettered: %s", job.id, job.kind, reason)
        self._finish(job, "dead", reason)
        if kind is not None and kind.on_dead is not None:
            try:
                kind.on_dead(job, reason)
            except Exception:
                log.exception("recording the failure of job %s failed", job.id)

    def _finish(self, job: ClaimedJob, status: str, reason: str | None) -> None:
        with self.db.session() as session:
            row = session.get(Job, job.id)
            row.status, row.last_error, row.finished_at = status, reason, self.clock()
            row.locked_by = row.locked_until = None
