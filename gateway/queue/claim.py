"""Claiming a due job with a lease, so two workers never run the same job at once.

FOR UPDATE SKIP LOCKED on PostgreSQL lets concurrent workers pass each other's rows; SQLite
serialises writers. A lease that ran out (its worker died) makes the job claimable again. Jobs of a
suspended GitHub installation are not claimed: they wait, untouched.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from gateway.domain import JobStatus
from gateway.store import Database, Installation, Job

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
    """Take the next due job for ``worker_id`` until ``now + lease``, spending one attempt."""
    suspended = select(Installation.id).where(Installation.suspended_at.is_not(None))
    with db.session() as session:
        query = (
            select(Job)
            .where(or_(Job.status == JobStatus.QUEUED, (Job.status == JobStatus.RUNNING) & (Job.locked_until < now)))
            .where(Job.run_after <= now)
            .where(or_(Job.installation_id.is_(None), Job.installation_id.not_in(suspended)))
            .order_by(Job.run_after, Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        job = session.scalars(query).first()
        if job is None:
            return None
        if job.status == JobStatus.RUNNING:
            log.warning("job %s (%s): lease of %s ran out, taking it over", job.id, job.kind, job.locked_by)
        job.status, job.locked_by, job.locked_until = JobStatus.RUNNING, worker_id, now + lease
        job.attempts += 1
        return ClaimedJob(job.id, job.kind, json.loads(job.payload), job.attempts, job.max_attempts,
                          job.installation_id)
