"""Flow 2, notify: every mail to a participant goes through this outbox.

A mail is composed and stored with its delivery job in the caller's
transaction, so whatever caused it (a PR opened, a reply posted, a review on
GitHub) and the mail are committed together. Delivery is a job: retried on
4xx and connection errors, dead-lettered on 5xx, never sent twice.
"""
from __future__ import annotations

from email.utils import formataddr, parseaddr

from sqlalchemy.orm import Session

from gateway.domain import MailStatus, RequestStatus
from gateway.flows.context import FlowContext
from gateway.queue import ClaimedJob, JobKind, enqueue
from gateway.store import OutboundMail, Participant, PullRequestRequest, Thread
from outbound.compose import ThreadHeaders, compose


def queue_thread_mail(session: Session, ctx: FlowContext, *, thread: Thread, participant: Participant,
                      kind: str, content: tuple[str, str, str], in_reply_to: str | None = None,
                      request_id: str | None = None) -> OutboundMail | None:
    """Compose a mail in the thread for one participant and queue its delivery.

    Returns None (and sends nothing) when the participant has unsubscribed;
    receipts of their own replies still go out, since they asked for those.
    """
    if participant.unsubscribed_at is not None and kind != "receipt":
        return None
    subject, text, html = content
    thread.message_seq += 1
    message_id = ctx.tokens.message_id(thread.id, thread.message_seq)
    root = thread.root_message_id
    references = tuple(ref for ref in (root, in_reply_to) if ref)
    unsubscribe = ctx.tokens.unsubscribe_token(thread.id, participant.id)
    headers = ThreadHeaders(
        message_id=message_id,
        reply_to=ctx.tokens.reply_address(thread.id),
        signed=ctx.tokens.signed_headers(thread.id),
        list_id=f"{thread.repo} #{thread.pr_number} <{thread.id}.threads.{ctx.settings.reply_domain}>",
        in_reply_to=in_reply_to or root,
        references=references,
        unsubscribe_url=f"{ctx.settings.public_url}/unsubscribe/{unsubscribe}",
        unsubscribe_mailto=f"mailto:unsubscribe+{unsubscribe}@{ctx.settings.reply_domain}",
    )
    message = compose(sender=ctx.settings.mail_from, to=formataddr((participant.name or "", participant.email)),
                      subject=subject, text=text, html=html, thread=headers, date=ctx.clock())
    if root is None:
        thread.root_message_id = message_id
    mail = OutboundMail(thread_id=thread.id, kind=kind, recipient=participant.email,
                        envelope_from=parseaddr(ctx.settings.mail_from)[1], message_id=message_id, raw=message.as_bytes())
    session.add(mail)
    session.flush()
    enqueue(session, "deliver_mail", {"mail_id": mail.id, "request_id": request_id},
            max_attempts=ctx.settings.job_max_attempts)
    return mail


def deliver_mail(ctx: FlowContext, job: ClaimedJob) -> None:
    with ctx.db.session() as session:
        mail = session.get(OutboundMail, job.payload["mail_id"])
        if mail is None or mail.status == MailStatus.SENT:
            return
        mail.attempts += 1
        raw, envelope_from, recipient = mail.raw, mail.envelope_from, mail.recipient
    ctx.relay.send(raw, envelope_from=envelope_from, recipients=[recipient])
    with ctx.db.session() as session:
        mail = session.get(OutboundMail, job.payload["mail_id"])
        mail.status, mail.sent_at, mail.last_error = MailStatus.SENT, ctx.clock(), None
        request_id = job.payload.get("request_id")
        if request_id:
            request = session.get(PullRequestRequest, request_id)
            if request is not None and request.status == RequestStatus.OPENED:
                request.status = RequestStatus.NOTIFIED


def mail_dead(ctx: FlowContext, job: ClaimedJob, reason: str) -> None:
    with ctx.db.session() as session:
        mail = session.get(OutboundMail, job.payload["mail_id"])
        if mail is not None:
            mail.status, mail.last_error = MailStatus.DEAD, reason


def job_kinds(ctx: FlowContext) -> list[JobKind]:
    return [JobKind("deliver_mail", lambda job: deliver_mail(ctx, job),
                    on_dead=lambda job, reason: mail_dead(ctx, job, reason))]
