"""Running jobs: the loop, the outcome of each attempt, the lease's heartbeat, dead letters.

A worker claims a job (claim.py), runs its kind's handler and records what came of it, but only
while it still holds the lease: a heartbeat renews the lease every third of it while the job runs,
so only a worker that died loses its job, and a worker that lost it anyway records nothing.
Failures are retried with backoff (backoff.py) or after the delay the other side asked for; a job
that keeps failing, or fails for good, is dead-lettered with its reason and can be retried by an
operator. Not here: what a job does. Flows register one handler per job kind.
"""
from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.domain import JobStatus
from gateway.errors import Deferred, PermanentError, TransientError
from gateway.queue.backoff import backoff_seconds
from gateway.queue.claim import ClaimedJob, claim
from gateway.queue.wakeup import JobBell, wake_workers_on_commit
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
class JobKind:
    """How to run one kind of job, and what to record when it is dead-lettered."""

    name: str
    run: Callable[[ClaimedJob], None]
    on_dead: Callable[[ClaimedJob, str], None] | None = None


def retry_dead(db: Database, job_id: int) -> bool:
    """Put a dead-lettered job back in the queue with a fresh attempt budget (operator's retry)."""
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.status != JobStatus.DEAD:
            return False
        job.status, job.attempts, job.run_after = JobStatus.QUEUED, 0, utcnow()
        job.locked_by = job.locked_until = job.finished_at = None
        wake_workers_on_commit(session)
        return True


def new_worker_id() -> str:
    """host:pid:random, unique to one Worker: workers of one process must tell each other apart,
    or one would record an outcome for a job a sibling took over (host and pid say where it runs)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Worker:
    def __init__(self, db: Database, kinds: list[JobKind], *, worker_id: str | None = None,
                 lease: timedelta = timedelta(seconds=60), poll_interval: float = 1.0,
                 backoff_cap: float = 3600.0, rng: Callable[[], float] = random.random,
                 clock: Callable[[], datetime] = utcnow, bell: JobBell | None = None):
        self.db = db
        self.kinds = {kind.name: kind for kind in kinds}
        self.worker_id = worker_id or new_worker_id()
        self.lease = lease
        self.poll_interval = poll_interval
        self.backoff_cap = backoff_cap
        self.rng = rng
        self.clock = clock
        self.bell = bell
        self._renew_interval: float | None = lease.total_seconds() / 3  # None: no heartbeat (tests)

    def claim(self) -> ClaimedJob | None:
        return claim(self.db, self.worker_id, self.lease, self.clock())

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
            self._finish(job, JobStatus.DONE, None)
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
                update(Job).where(Job.id == job_id, Job.locked_by == self.worker_id, Job.status == JobStatus.RUNNING)
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
            row.status, row.last_error = JobStatus.QUEUED, reason
            row.run_after = self.clock() + timedelta(seconds=delay)
            row.locked_by = row.locked_until = None

    def _pause(self, job: ClaimedJob, reason: str, run_after: datetime | None = None) -> None:
        """Back in the queue without spending the attempt: nothing was tried."""
        log.info("job %s (%s) %s", job.id, job.kind, reason)
        with self.db.session() as session:
            row = self._owned_row(session, job)
            if row is None:
                return
            row.status, row.last_error, row.attempts = JobStatus.QUEUED, reason, max(0, row.attempts - 1)
            row.locked_by = row.locked_until = None
            if run_after is not None:
                row.run_after = run_after

    def _dead(self, job: ClaimedJob, kind: JobKind | None, reason: str) -> None:
        log.error("job %s (%s) dead-lettered: %s", job.id, job.kind, reason)
        if self._finish(job, JobStatus.DEAD, reason) and kind is not None and kind.on_dead is not None:
            try:
                kind.on_dead(job, reason)
            except Exception:
                log.exception("recording the failure of job %s failed", job.id)

    def _finish(self, job: ClaimedJob, status: JobStatus, reason: str | None) -> bool:
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
        if row is None or row.locked_by != self.worker_id or row.status != JobStatus.RUNNING:
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
