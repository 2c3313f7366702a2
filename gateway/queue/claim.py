"""Claiming a due job with a lease, so two workers never run the same job at once.

FOR UPDATE SKIP LOCKED on PostgreSQL lets concurrent workers pass each other's rows; SQLite
serialises writers. A lease that ran out (its worker died) makes the job claimable again. Jobs of a
suspended GitHub installation are not claimed: they wait, untouched.

The claim is two lookups, each the first row of its own partial index (models.Job): jobs whose
lease ran out, then the earliest due queued job. So it reads a row or two and sorts nothing,
however many jobs are queued or finished.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from gateway.domain import JobStatus
from gateway.store import Database, Installation, Job
from gateway.store.models import JOB_IS_QUEUED, JOB_IS_RUNNING

log = logging.getLogger("gateway.queue")


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    installation_id: int | None


def claim(db: Database, worker_id: str, lease: timedelta, now: datetime) -> ClaimedJob | None:
    """Take the next job for ``worker_id`` until ``now + lease``, spending one attempt.

    A job whose worker died (its lease ran out) comes first: it has waited longest.
    """
    with db.session() as session:
        job = _first(session, expired_leases(now)) or _first(session, due_jobs(now))
        if job is None:
            return None
        if job.status == JobStatus.RUNNING:
            log.warning("job %s (%s): lease of %s ran out, taking it over", job.id, job.kind, job.locked_by)
        job.status, job.locked_by, job.locked_until = JobStatus.RUNNING, worker_id, now + lease
        job.attempts += 1
        return ClaimedJob(job.id, job.kind, json.loads(job.payload), job.attempts, job.max_attempts,
                          job.installation_id)


def expired_leases(now: datetime) -> Select:
    """Running jobs whose lease ran out, oldest first (ix_jobs_running_lease)."""
    return (select(Job).where(JOB_IS_RUNNING, Job.locked_until < now, _not_suspended())
            .order_by(Job.locked_until))


def due_jobs(now: datetime) -> Select:
    """Queued jobs that are due, earliest first (ix_jobs_queued_due)."""
    return (select(Job).where(JOB_IS_QUEUED, Job.run_after <= now, _not_suspended())
            .order_by(Job.run_after, Job.id))


def _not_suspended():
    suspended = select(Installation.id).where(Installation.suspended_at.is_not(None))
    return or_(Job.installation_id.is_(None), Job.installation_id.not_in(suspended))


def _first(session: Session, query: Select) -> Job | None:
    return session.scalars(query.limit(1).with_for_update(skip_locked=True)).first()
