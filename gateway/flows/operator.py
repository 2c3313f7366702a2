"""What an operator looks at and does by hand: jobs and their dead letters, inbound verdicts,
revoking a thread's tokens. The CLI and the API both call these, so they show the same thing."""
from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import defer

from gateway.flows.context import FlowContext
from gateway.queue import retry_dead
from gateway.store import InboundMessage, Job, Thread


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def job_view(job: Job) -> dict:
    return {"id": job.id, "kind": job.kind, "status": job.status, "attempts": job.attempts,
            "max_attempts": job.max_attempts, "installation_id": job.installation_id,
            "last_error": job.last_error, "payload": json.loads(job.payload),
            "run_after": _iso(job.run_after), "locked_by": job.locked_by, "locked_until": _iso(job.locked_until),
            "created_at": _iso(job.created_at), "finished_at": _iso(job.finished_at)}


def list_jobs(ctx: FlowContext, *, status: str | None = None, kind: str | None = None,
              limit: int = 50) -> list[dict]:
    """Newest first. Payloads hold ids and addresses, never credentials (those stay in their tables)."""
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if status:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.kind == kind)
    with ctx.db.read_session() as session:
        return [job_view(job) for job in session.scalars(query)]


def get_job(ctx: FlowContext, job_id: int) -> dict | None:
    with ctx.db.read_session() as session:
        job = session.get(Job, job_id)
        return job_view(job) if job is not None else None


def retry_job(ctx: FlowContext, job_id: int) -> dict | None:
    """Queue a dead-lettered job again with a fresh attempt budget; None if it is not dead."""
    return get_job(ctx, job_id) if retry_dead(ctx.db, job_id) else None


def inbound_messages(ctx: FlowContext, *, verdict: str | None = None, thread: str | None = None,
                     limit: int = 50) -> list[dict]:
    # The raw message (up to the size limit each) is not part of the listing: not loaded.
    query = select(InboundMessage).options(defer(InboundMessage.raw)).order_by(InboundMessage.id.desc()).limit(limit)
    if verdict:
        query = query.where(InboundMessage.verdict == verdict)
    if thread:
        query = query.where(InboundMessage.thread_id == thread)
    with ctx.db.read_session() as session:
        return [{"id": m.id, "thread": m.thread_id, "verdict": m.verdict, "reason": m.reason,
                 "message_id": m.message_id, "from": m.from_address, "subject": m.subject,
                 "channel": m.channel, "size": m.size, "comment_url": m.comment_url,
                 "received_at": m.received_at.isoformat(),
                 "processed_at": m.processed_at.isoformat() if m.processed_at else None}
                for m in session.scalars(query)]


def revoke_thread(ctx: FlowContext, thread_id: str) -> bool:
    """From now on every token of this thread is refused: at DATA at once, at RCPT TO once a
    receiver's memory of the thread being live runs out (gateway.store.replies.LIVE_THREAD_SECONDS)."""
    with ctx.db.session() as session:
        thread = session.get(Thread, thread_id)
        if thread is None:
            return False
        if thread.revoked_at is None:
            thread.revoked_at = ctx.clock()
        return True
