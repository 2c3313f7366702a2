"""Flow 3b, a reply posted: an accepted reply becomes a comment on the PR, then a receipt to its sender.

The job (``post_reply``), for one recorded message:
  already finished (a crash after the verdict)          → nothing to do
  read the whole message; machine-sent after all (only the body shows it: a delivery-status
  part)                                                 → its verdict, no answer
  extract the new text (the plain part, else the HTML); nothing new
                                                        → verdict `empty`, and a receipt saying so
  post the comment with its marker (a retry first looks for the marker, so it is posted once)
                                                        → verdict `posted` and a receipt with the
                                                          link, committed together
A failure is retried; when the attempts are spent the message is marked `failed` (``reply_failed``)
and stays stored for an operator.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select

from gateway.domain import Verdict
from gateway.flows import comment
from gateway.flows.context import FlowContext
from gateway.flows.mail import queue_thread_mail
from gateway.flows.receive_reply import POST_REPLY
from gateway.queue import ClaimedJob, JobKind
from gateway.store import InboundMessage, Participant, Thread
from inbound import rules
from inbound.html_reply import extract_reply_from_html
from inbound.parse import ParsedMessage, parse_message
from inbound.reply import extract_reply
from outbound.compose import receipt_content

log = logging.getLogger("gateway.reply")


@dataclass(frozen=True)
class ReplyToPost:
    inbound_id: int
    thread_id: str
    repo: str
    pr_number: int
    title: str
    installation_id: int
    raw: bytes
    envelope_from: str


def post_reply(ctx: FlowContext, job: ClaimedJob) -> None:
    reply = _reply_to_post(ctx, job.payload["inbound_id"])
    if reply is None:
        return  # finished before a crash
    message = parse_message(reply.raw)
    if automated := rules.classify_automated(message, reply.envelope_from):
        verdict, reason = automated  # only the headers were read at the door; the body can still show a machine
        _finish_unanswered(ctx, reply.inbound_id, verdict=verdict, reason=reason)
        return
    if message.text and message.text.strip():
        extraction = extract_reply(message.text)
    else:
        extraction = extract_reply_from_html(message.html or "")
    attachments = [(a.filename or a.content_type, a.size) for a in message.attachments]

    if not extraction.text.strip():
        _finish_with_receipt(ctx, reply, message, verdict=Verdict.EMPTY, comment_id=None, comment_url=None)
        return

    body, redacted = comment.render_comment(
        sender=comment.sender_line(message.from_name or _known_name(ctx, reply.thread_id, message.from_address),
                                   message.from_address or "", show_address=ctx.settings.show_sender_address),
        text=extraction.text, cut=extraction.cut, attachments=attachments,
        marker_text=comment.marker(reply.thread_id, reply.inbound_id))
    if redacted:
        log.warning("inbound %s: redacted %s before posting", reply.inbound_id, ", ".join(redacted))
    posted = ctx.github.post_comment(reply.installation_id, reply.repo, reply.pr_number, body,
                                     comment.marker(reply.thread_id, reply.inbound_id),
                                     may_exist=job.attempts > 1)  # only an earlier attempt can have posted
    _finish_with_receipt(ctx, reply, message, verdict=Verdict.POSTED, comment_id=posted.id, comment_url=posted.url,
                         attachments=attachments)


def reply_failed(ctx: FlowContext, job: ClaimedJob, reason: str) -> None:
    """The attempts are spent: the message is marked failed, and stays stored."""
    _finish_unanswered(ctx, job.payload["inbound_id"], verdict=Verdict.FAILED, reason=reason)


def _reply_to_post(ctx: FlowContext, inbound_id: int) -> ReplyToPost | None:
    with ctx.db.session() as session:
        row = session.get(InboundMessage, inbound_id)
        if row is None or row.verdict != Verdict.QUEUED:
            return None
        thread = session.get(Thread, row.thread_id)
        return ReplyToPost(row.id, thread.id, thread.repo, thread.pr_number, thread.title, thread.installation_id,
                           row.raw, row.envelope_from or "")


def _known_name(ctx: FlowContext, thread_id: str, address: str | None) -> str | None:
    with ctx.db.session() as session:
        participant = _participant(session, thread_id, address)
        return participant.name if participant else None


def _finish_with_receipt(ctx: FlowContext, reply: ReplyToPost, message: ParsedMessage, *, verdict: Verdict,
                         comment_id: int | None, comment_url: str | None, attachments=()) -> None:
    """The verdict and the receipt to the sender, committed together."""
    with ctx.db.session() as session:
        row = session.get(InboundMessage, reply.inbound_id)
        row.verdict, row.comment_id, row.comment_url, row.processed_at = verdict, comment_id, comment_url, ctx.clock()
        participant = _participant(session, reply.thread_id, message.from_address)
        if participant is None:
            return
        note = (f"{len(attachments)} attachment(s) were listed by name in the comment but not uploaded."
                if attachments else None)
        content = receipt_content(repo=reply.repo, title=reply.title, comment_url=comment_url, attachments_note=note)
        queue_thread_mail(session, ctx, thread=session.get(Thread, reply.thread_id), participant=participant,
                          kind="receipt", content=content,
                          in_reply_to=f"<{message.message_id}>" if message.message_id else None)


def _finish_unanswered(ctx: FlowContext, inbound_id: int, *, verdict: str, reason: str) -> None:
    """A queued message's final verdict when no comment is posted and no receipt sent."""
    with ctx.db.session() as session:
        row = session.get(InboundMessage, inbound_id)
        if row is not None and row.verdict == Verdict.QUEUED:
            row.verdict, row.reason, row.processed_at = verdict, reason, ctx.clock()


def _participant(session, thread_id: str, address: str | None) -> Participant | None:
    return session.scalars(select(Participant).where(Participant.thread_id == thread_id,
                                                     Participant.email == address)).first()


def job_kinds(ctx: FlowContext) -> list[JobKind]:
    return [JobKind(POST_REPLY, lambda job: post_reply(ctx, job),
                    on_dead=lambda job, reason: reply_failed(ctx, job, reason))]
