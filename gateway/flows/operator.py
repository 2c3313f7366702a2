"""What an operator looks at and does by hand: inbound verdicts, revoking a thread's tokens."""
from __future__ import annotations

from sqlalchemy import select

from gateway.flows.context import FlowContext
from gateway.store import InboundMessage, Thread


def inbound_messages(ctx: FlowContext, *, verdict: str | None = None, thread: str | None = None,
                     limit: int = 50) -> list[dict]:
    query = select(InboundMessage).order_by(InboundMessage.id.desc()).limit(limit)
    if verdict:
        query = query.where(InboundMessage.verdict == verdict)
    if thread:
        query = query.where(InboundMessage.thread_id == thread)
    with ctx.db.session() as session:
        return [{"id": m.id, "thread": m.thread_id, "verdict": m.verdict, "reason": m.reason,
                 "message_id": m.message_id, "from": m.from_address, "subject": m.subject,
                 "channel": m.channel, "size": m.size, "comment_url": m.comment_url,
                 "received_at": m.received_at.isoformat(),
                 "processed_at": m.processed_at.isoformat() if m.processed_at else None}
                for m in session.scalars(query)]


def revoke_thread(ctx: FlowContext, thread_id: str) -> bool:
    """From now on every token of this thread is refused at RCPT TO and DATA."""
    with ctx.db.session() as session:
        thread = session.get(Thread, thread_id)
        if thread is None:
            return False
        if thread.revoked_at is None:
            thread.revoked_at = ctx.clock()
        return True
