"""Flow 3, reply: a participant's mail reply becomes a comment on the PR, then a receipt.

At the SMTP edge (ReplyPipeline, called by inbound.handler and POST /inbound/raw):
  RCPT TO  the address's token names a live thread, or it is the bare reply
           mailbox (the Message-ID token decides at DATA)     else 550 5.1.1
  DATA     find the thread from the recipient or the signed Message-ID
           automated mail (auto-reply, bounce)      → recorded, 250, never answered
           sender not a participant                 → recorded, 550 5.7.1
           DMARC fail from the trusted verifier     → recorded, 550 5.7.1
           Message-ID already taken for this thread → recorded as duplicate, 250
           otherwise store raw + queue process_reply in one transaction → 250
           (a failed write → 451 4.3.0; the client retries)
The job (process_reply):
  parse → extract the new text (plain part, else HTML) → nothing new? verdict
  `empty` and a receipt saying so → post the comment with its marker
  (idempotent) → verdict `posted` and a receipt with the link, one transaction.
A failure after the 250 is retried, then the message is marked `failed`; it stays stored.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import bindparam, insert, select

from gateway.flows import comment
from gateway.flows.context import FlowContext
from gateway.flows.mail import queue_thread_mail
from gateway.flows.unsubscribe import unsubscribe
from gateway.queue import ClaimedJob, JobKind, enqueue
from gateway.signing import REPLY_LOCAL, TokenInvalid
from gateway.store import InboundMessage, Participant, Thread, utcnow
from inbound import rules
from inbound.handler import (ACCEPTED, DMARC_FAIL, NOT_PARTICIPANT, RECIPIENT_OK, UNKNOWN_RECIPIENT, Decision,
                             Envelope)
from inbound.html_reply import extract_reply_from_html
from inbound.parse import ParsedMessage, parse_message
from inbound.reply import extract_reply
from outbound.compose import receipt_content

log = logging.getLogger("gateway.reply")
JOB = "process_reply"
UNSUBSCRIBE_LOCAL = "unsubscribe"


class ReplyPipeline:
    """The decisions the SMTP receiver asks for; it only translates them to SMTP."""

    def __init__(self, ctx: FlowContext, channel: str = "smtp"):
        self.ctx = ctx
        self.channel = channel

    # -- RCPT TO ------------------------------------------------------------

    def check_recipient(self, address: str) -> Decision:
        local, _, domain = address.strip().strip("<>").rpartition("@")
        local = local.lower()
        if domain.lower() == self.ctx.settings.reply_domain and local == REPLY_LOCAL:
            return RECIPIENT_OK  # sub-address dropped: the signed Message-ID must name the thread
        try:
            if local.startswith(UNSUBSCRIBE_LOCAL + "+"):
                if domain.lower() != self.ctx.settings.reply_domain:
                    return UNKNOWN_RECIPIENT.because(f"unsubscribe address at foreign domain {domain!r}")
                self.ctx.tokens.verify_unsubscribe(local.split("+", 1)[1])
                return RECIPIENT_OK
            thread_id = self.ctx.tokens.verify_address(address)
        except TokenInvalid as exc:
            return UNKNOWN_RECIPIENT.because(str(exc))
        if (problem := self._thread_problem(thread_id)) is not None:
            return UNKNOWN_RECIPIENT.because(problem)
        return RECIPIENT_OK

    def _thread_problem(self, thread_id: str) -> str | None:
        with self.ctx.db.read_session() as session:
            return _why_refused(session.connection().execute(_THREAD_STATE, {"thread_id": thread_id}).first(),
                                   thread_id)

    # -- DATA ----------------------------------------------------------------

    def deliver(self, envelope: Envelope) -> Decision:
        message = parse_message(envelope.content)
        unsubscribes = [r for r in envelope.rcpt_tos if r.lower().startswith(UNSUBSCRIBE_LOCAL + "+")]
        for address in unsubscribes:
            unsubscribe(self.ctx, address.split("@")[0].split("+", 1)[1])
        replies = [r for r in envelope.rcpt_tos if r not in unsubscribes]
        if unsubscribes and not replies:
            return ACCEPTED.because("unsubscribed")  # never a comment, whatever it threads under
        thread_ids = self._threads_of(replies, message)
        if not thread_ids:
            return UNKNOWN_RECIPIENT.because("no valid token in the recipient or In-Reply-To/References")
        decisions = [self._deliver_to_thread(thread_id, envelope, message) for thread_id in thread_ids]
        accepted = [d for d in decisions if d.accepted]
        return accepted[0] if accepted else decisions[0]

    def _threads_of(self, recipients: list[str], message: ParsedMessage) -> list[str]:
        found: list[str] = []
        for address in recipients:
            try:
                found.append(self.ctx.tokens.verify_address(address))
            except TokenInvalid:
                pass
        if not found:  # second channel: our signed Message-ID in the reply's threading headers
            for message_id in (*message.in_reply_to, *reversed(message.references)):
                try:
                    found.append(self.ctx.tokens.verify_message_id(message_id))
                    break
                except TokenInvalid as exc:
                    log.debug("ignoring %s: %s", message_id, exc)
        if not found and message.header("X-Gateway-Thread"):
            try:
                found.append(self.ctx.tokens.verify_headers(message.header("X-Gateway-Thread") or "",
                                                            message.header("X-Gateway-Sig") or "",
                                                            message.header("X-Gateway-Sig-Ts") or ""))
            except TokenInvalid as exc:
                log.info("X-Gateway headers refused: %s", exc)
        return list(dict.fromkeys(found))  # unknown or revoked threads are refused when delivering

    def _deliver_to_thread(self, thread_id: str, envelope: Envelope, message: ParsedMessage) -> Decision:
        """Decide and record in one transaction, while the client waits: Core statements built once
        (below), so a mail costs their execution, not the ORM's unit of work or statement building."""
        settings = self.ctx.settings
        verdict, reason, decision = "queued", None, ACCEPTED
        with self.ctx.db.session() as session:
            db = session.connection()
            thread = db.execute(_THREAD_STATE, {"thread_id": thread_id}).first()
            if (problem := _why_refused(thread, thread_id)) is not None:
                return UNKNOWN_RECIPIENT.because(problem)
            participants = db.execute(_PARTICIPANTS, {"thread_id": thread_id}).scalars().all()
            if automated := rules.classify_automated(message, envelope.mail_from):
                verdict, reason = automated
            elif not rules.is_participant(message.from_address or "", participants):
                verdict, reason = "rejected-not-participant", f"{message.from_address} is not a participant"
                decision = NOT_PARTICIPANT.because(reason)
            elif settings.trusted_authserv_id and rules.dmarc_result(
                    message, settings.trusted_authserv_id) == "fail":
                verdict, reason = "rejected-dmarc", f"DMARC fail reported by {settings.trusted_authserv_id}"
                decision = DMARC_FAIL.because(reason)
            elif message.message_id and db.execute(_ALREADY_RECEIVED, {
                    "thread_id": thread_id, "message_id": message.message_id}).first():
                verdict, reason = "duplicate", "this Message-ID was already received for this thread"
            inbound_id = db.execute(_RECORD_INBOUND, {
                "thread_id": thread_id, "message_id": message.message_id, "envelope_from": envelope.mail_from,
                "recipients": ",".join(envelope.rcpt_tos), "from_address": message.from_address,
                "subject": message.subject[:500], "peer": envelope.peer, "channel": self.channel,
                "size": len(envelope.content), "raw": envelope.content, "verdict": verdict, "reason": reason,
                "received_at": utcnow()}).scalar_one()
            if verdict == "queued":
                enqueue(session, JOB, {"inbound_id": inbound_id}, installation_id=thread.installation_id,
                        max_attempts=settings.job_max_attempts)
            log.info("inbound %s for thread %s: %s%s", inbound_id, thread_id, verdict, f" ({reason})" if reason else "")
        return decision if decision is not ACCEPTED else ACCEPTED.because(verdict)


_THREAD_STATE = select(Thread.installation_id, Thread.revoked_at).where(Thread.id == bindparam("thread_id"))
_PARTICIPANTS = select(Participant.email).where(Participant.thread_id == bindparam("thread_id"))
_ALREADY_RECEIVED = select(InboundMessage.id).where(
    InboundMessage.thread_id == bindparam("thread_id"), InboundMessage.message_id == bindparam("message_id"),
    InboundMessage.verdict.in_(("queued", "posted", "empty", "failed"))).limit(1)
_RECORD_INBOUND = insert(InboundMessage).returning(InboundMessage.id)


def _why_refused(thread, thread_id: str) -> str | None:
    """Why a reply to this thread (a Thread, or a row of _THREAD_STATE) is refused; None if it is not."""
    if thread is None:
        return f"thread {thread_id} does not exist"
    if thread.revoked_at is not None:
        return f"thread {thread_id} was revoked"
    return None


# -- the job -------------------------------------------------------------------


@dataclass(frozen=True)
class _Work:
    inbound_id: int
    thread_id: str
    repo: str
    pr_number: int
    title: str
    installation_id: int
    raw: bytes


def process_reply(ctx: FlowContext, job: ClaimedJob) -> None:
    with ctx.db.session() as session:
        row = session.get(InboundMessage, job.payload["inbound_id"])
        if row is None or row.verdict != "queued":
            return  # finished before a crash
        thread = session.get(Thread, row.thread_id)
        work = _Work(row.id, thread.id, thread.repo, thread.pr_number, thread.title, thread.installation_id, row.raw)

    message = parse_message(work.raw)
    if message.text and message.text.strip():
        extraction = extract_reply(message.text)
    else:
        extraction = extract_reply_from_html(message.html or "")
    attachments = [(a.filename or a.content_type, a.size) for a in message.attachments]

    if not extraction.text.strip():
        _record(ctx, work, message, verdict="empty", comment_id=None, comment_url=None)
        return

    with ctx.db.session() as session:
        participant = session.scalars(select(Participant).where(
            Participant.thread_id == work.thread_id, Participant.email == message.from_address)).first()
        known_name = participant.name if participant else None
    body, redacted = comment.render_comment(
        sender=comment.sender_line(message.from_name or known_name, message.from_address or "",
                                   show_address=ctx.settings.show_sender_address),
        text=extraction.text, cut=extraction.cut, attachments=attachments,
        marker_text=comment.marker(work.thread_id, work.inbound_id))
    if redacted:
        log.warning("inbound %s: redacted %s before posting", work.inbound_id, ", ".join(redacted))
    posted = ctx.github.post_comment(work.installation_id, work.repo, work.pr_number, body,
                                     comment.marker(work.thread_id, work.inbound_id),
                                     may_exist=job.attempts > 1)  # only an earlier attempt can have posted
    _record(ctx, work, message, verdict="posted", comment_id=posted.id, comment_url=posted.url,
            attachments=attachments)


def _record(ctx: FlowContext, work: _Work, message: ParsedMessage, *, verdict: str, comment_id: int | None,
            comment_url: str | None, attachments=()) -> None:
    """The verdict and the receipt, committed together."""
    with ctx.db.session() as session:
        row = session.get(InboundMessage, work.inbound_id)
        row.verdict, row.comment_id, row.comment_url, row.processed_at = verdict, comment_id, comment_url, ctx.clock()
        thread = session.get(Thread, work.thread_id)
        participant = session.scalars(select(Participant).where(
            Participant.thread_id == work.thread_id, Participant.email == message.from_address)).first()
        if participant is None:
            return
        note = (f"{len(attachments)} attachment(s) were listed by name in the comment but not uploaded."
                if attachments else None)
        content = receipt_content(repo=work.repo, title=work.title, comment_url=comment_url, attachments_note=note)
        queue_thread_mail(session, ctx, thread=thread, participant=participant, kind="receipt", content=content,
                          in_reply_to=f"<{message.message_id}>" if message.message_id else None)


def reply_failed(ctx: FlowContext, job: ClaimedJob, reason: str) -> None:
    with ctx.db.session() as session:
        row = session.get(InboundMessage, job.payload["inbound_id"])
        if row is not None and row.verdict == "queued":
            row.verdict, row.reason, row.processed_at = "failed", reason, ctx.clock()


def job_kinds(ctx: FlowContext) -> list[JobKind]:
    return [JobKind(JOB, lambda job: process_reply(ctx, job), on_dead=lambda job, reason: reply_failed(ctx, job, reason))]
