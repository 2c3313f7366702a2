"""Adding jobs: inside the caller's transaction, so the job and the data that asks for it commit
together and a crash can lose neither. Idle workers wake when that transaction commits.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import event, func, insert, select
from sqlalchemy.orm import Session

from gateway.queue.wakeup import NOTIFY_CHANNEL, bell_for
from gateway.store import Database, DriverStatement, DriverTransaction, Job, utcnow


def enqueue(session: Session, kind: str, payload: dict[str, Any], *, installation_id: int | None = None,
            run_after: datetime | None = None, max_attempts: int = 8) -> int:
    """Add a job inside the caller's transaction; idle workers wake when it commits. Returns its id.

    A Core insert: it runs on every mail and webhook while the sender waits.
    """
    now = utcnow()
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
