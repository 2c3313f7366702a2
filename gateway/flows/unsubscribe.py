"""One-click unsubscribe (RFC 8058): stop mail for one person on one thread.

Reached by the signed HTTPS link (POST only; GET shows a button) and by mail
to the signed mailto: address. Replies keep working after unsubscribing.
"""
from __future__ import annotations

import logging

from gateway.flows.context import FlowContext
from gateway.signing import TokenInvalid
from gateway.store import Participant, Thread

log = logging.getLogger("gateway.unsubscribe")


def describe(ctx: FlowContext, token: str) -> tuple[str, str, bool] | None:
    """(repo and PR, masked address, already unsubscribed) for the confirmation page."""
    try:
        thread_id, participant_id = ctx.tokens.verify_unsubscribe(token)
    except TokenInvalid:
        return None
    with ctx.db.session() as session:
        participant = session.get(Participant, participant_id)
        if participant is None or participant.thread_id != thread_id:
            return None
        local, _, domain = participant.email.partition("@")
        masked = f"{local[:1]}…@{domain}"
        thread = session.get(Thread, thread_id)
        return f"{thread.repo} #{thread.pr_number}", masked, participant.unsubscribed_at is not None


def unsubscribe(ctx: FlowContext, token: str) -> bool:
    try:
        thread_id, participant_id = ctx.tokens.verify_unsubscribe(token)
    except TokenInvalid as exc:
        log.info("unsubscribe refused: %s", exc)
        return False
    with ctx.db.session() as session:
        participant = session.get(Participant, participant_id)
        if participant is None or participant.thread_id != thread_id:
            return False
        if participant.unsubscribed_at is None:
            participant.unsubscribed_at = ctx.clock()
            log.info("participant %s unsubscribed from thread %s", participant_id, thread_id)
    return True

