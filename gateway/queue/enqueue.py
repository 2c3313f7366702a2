"""Adding jobs: inside the caller's transaction, so the job and the data that asks for it commit
together and a crash can lose neither.

One way in, from an ORM session or a driver transaction alike (``enqueue``, ``enqueue_many``): the
webhook and SMTP paths add their jobs on the DBAPI cursor while the sender waits. Waking the workers
once the transaction commits is the queue's business (``wakeup``), never the caller's.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from gateway.domain import JobStatus
from gateway.queue.wakeup import wake_workers_on_commit
from gateway.store import DriverStatement, DriverTransaction, Job, utcnow


def enqueue(tx: Session | DriverTransaction, kind: str, payload: dict[str, Any], *,
            installation_id: int | None = None, run_after: datetime | None = None, max_attempts: int = 8) -> int:
    """Add a job inside ``tx`` (a ``db.session()`` or a ``db.driver_transaction()``); returns its id.

    Due at once unless ``run_after``. Idle workers wake when ``tx`` commits.
    """
    now = utcnow()
    row = _job_row(kind, payload, installation_id, run_after or now, max_attempts, now)
    if isinstance(tx, DriverTransaction):
        job_id = _INSERT_JOB.execute(tx, row).fetchone()[0]
    else:
        job_id = tx.connection().execute(_INSERT_JOB.statement, row).scalar_one()
    wake_workers_on_commit(tx)
    return job_id


def enqueue_many(tx: Session | DriverTransaction, kind: str, jobs: list[tuple[dict[str, Any], int | None]], *,
                 max_attempts: int = 8) -> None:
    """Add jobs of one kind, due at once, (payload, installation id) each, in one statement."""
    if not jobs:
        return
    now = utcnow()
    rows = [_job_row(kind, payload, installation_id, now, max_attempts, now) for payload, installation_id in jobs]
    if isinstance(tx, DriverTransaction):
        _INSERT_JOBS.executemany(tx, rows)
    else:
        tx.connection().execute(_INSERT_JOBS.statement, rows)
    wake_workers_on_commit(tx)


def enqueue_once(session: Session, kind: str, payload: dict[str, Any], *, run_after: datetime | None = None,
                 max_attempts: int = 8, successor_of: int | None = None) -> int | None:
    """Add a job unless one of ``kind`` already waits to run; its id, or None if one did.

    For a periodic job that queues its own next run (``successor_of``: the running job's id), and
    for whoever starts such a chain: however many do so at once, one chain remains. One waits if it
    is queued, or running and older than ``successor_of`` (two running links: the older one
    continues the chain; the other sees it, and later its successor, and stops).
    """
    pending = session.execute(select(Job.id, Job.status).where(
        Job.kind == kind, Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))).all()
    for job_id, status in pending:
        if job_id == successor_of:
            continue
        if status == JobStatus.QUEUED or successor_of is None or job_id < successor_of:
            return None
    return enqueue(session, kind, payload, run_after=run_after, max_attempts=max_attempts)


_COLUMNS = ("kind", "payload", "installation_id", "run_after", "max_attempts", "status", "attempts",
            "created_at", "updated_at")


def _job_row(kind: str, payload: dict[str, Any], installation_id: int | None, run_after: datetime,
             max_attempts: int, now: datetime) -> dict[str, Any]:
    return dict(zip(_COLUMNS, (kind, json.dumps(payload, sort_keys=True), installation_id, run_after, max_attempts,
                               JobStatus.QUEUED, 0, now, now), strict=True))


# Core inserts run on the DBAPI cursor in a driver transaction: on every mail and webhook while
# the sender waits, the ORM's per-statement work would cost more than the database's.
_INSERT_JOB = DriverStatement(insert(Job).returning(Job.id), keys=_COLUMNS)
_INSERT_JOBS = DriverStatement(insert(Job), keys=_COLUMNS)
