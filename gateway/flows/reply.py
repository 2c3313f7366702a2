"""Flow 3, reply: a participant's mail reply becomes a comment on the PR, then a receipt.

At the SMTP edge (ReplyPipeline, called by inbound.handler and POST /inbound/raw):
  RCPT TO  the address's token names a live thread, or it is the bare reply
           mailbox (the Message-ID token decides at DATA)     else 550 5.1.1
           (a thread found live is remembered for 5 s; DATA reads it again)
  DATA     read: the headers only; the thread from the recipient or the signed Message-ID;
           unsubscribe addresses                                  (no database: `read`)
           record, against the database, in one transaction:     (`record`)
           unsubscribe requests carried out; only those?  → 250, never a comment
           automated mail (auto-reply, bounce)      → recorded, 250, never answered
           sender not a participant                 → recorded, 550 5.7.1
           DMARC fail from the trusted verifier     → recorded, 550 5.7.1
           Message-ID already taken for this thread → recorded as duplicate, 250
           otherwise store raw + queue process_reply in one transaction → 250
           (a failed write → 451 4.3.0; the client retries)
           Messages that arrive together are recorded in one transaction (one commit).
           (`gateway smtp`: both in its writer process, for what its protocol processes received.)
The job (process_reply):
  parse the whole message → machine-sent after all (a delivery-status part)? verdict, no answer
  → extract the new text (plain part, else HTML) → nothing new? verdict
  `empty` and a receipt saying so → post the comment with its marker
  (idempotent) → verdict `posted` and a receipt with the link, one transaction.
A failure after the 250 is retried, then the message is marked `failed`; it stays stored.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import bindparam, insert, or_, select

from gateway.flows import comment
from gateway.flows.context import FlowContext
from gateway.flows.mail import queue_thread_mail
from gateway.flows.unsubscribe import unsubscribe
from gateway.queue import ClaimedJob, JobKind, enqueue_many
from gateway.signing import REPLY_LOCAL, TokenInvalid
from gateway.store import DriverStatement, InboundMessage, Participant, Thread, utcnow
from inbound import rules
from inbound.handler import (ACCEPTED, DMARC_FAIL, NOT_PARTICIPANT, RECIPIENT_OK, TRY_LATER, UNKNOWN_RECIPIENT,
                             Decision, Envelope)
from inbound.html_reply import extract_reply_from_html
from inbound.parse import ParsedMessage, parse_headers, parse_message
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
        self._live_until: dict[str, float] = {}  # thread id -> monotonic time its "live" answer expires

    # -- RCPT TO ------------------------------------------------------------

    def check_recipient(self, address: str) -> Decision:
        answer = self._recipient(address)
        if isinstance(answer, Decision):
            return answer
        if self._recently_live(answer):
            return RECIPIENT_OK
        with self.ctx.db.read_session() as session:
            thread = session.connection().execute(_THREAD_OF_RECIPIENT, {"id": answer}).first()
        if (problem := _why_refused(thread, answer)) is not None:
            return UNKNOWN_RECIPIENT.because(problem)
        if len(self._live_until) >= LIVE_THREADS_REMEMBERED:
            self._live_until.clear()
        self._live_until[answer] = time.monotonic() + LIVE_THREAD_SECONDS
        return RECIPIENT_OK

    def check_recipient_quickly(self, address: str) -> Decision | None:
        """The answer when no database read is needed (bad signature, thread seen live just now), else None.

        The receiver calls this on its event loop and only sends the rest to a thread.
        """
        answer = self._recipient(address)
        if isinstance(answer, Decision):
            return answer
        return RECIPIENT_OK if self._recently_live(answer) else None

    def _recipient(self, address: str) -> Decision | str:
        """A final answer from the address alone, or the thread id whose state decides."""
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
            return self.ctx.tokens.verify_address(address)
        except TokenInvalid as exc:
            return UNKNOWN_RECIPIENT.because(str(exc))

    def _recently_live(self, thread_id: str) -> bool:
        until = self._live_until.get(thread_id)
        return until is not None and time.monotonic() < until

    # -- DATA ----------------------------------------------------------------

    def deliver(self, envelope: Envelope) -> Decision:
        return self.deliver_many([envelope])[0]

    def deliver_many(self, envelopes: list[Envelope]) -> list[Decision]:
        """Read each message, then decide and record them all in one transaction (one commit)."""
        return self.record([self.read(envelope) for envelope in envelopes])

    def read(self, envelope: Envelope) -> "Decision | ReadMail":
        """Everything about one message that needs no database: headers, signatures, unsubscribe
        tokens. Never raises: a failure is this message's TRY_LATER."""
        try:
            return self._read(envelope)
        except Exception as error:
            log.exception("reading a message from %s failed", envelope.peer)
            return TRY_LATER.because(f"reading failed: {type(error).__name__}")

    def record(self, readings: "list[Decision | ReadMail]") -> list[Decision]:
        """Decide every read message against the database and record them in one transaction.

        The receiver hands over the messages that arrived while the previous batch was being
        written. If the batch fails, each message is tried alone, so one cannot fail the others.
        """
        readings = [self._unsubscribe(reading) if isinstance(reading, ReadMail) and reading.unsubscribe_tokens
                    else reading for reading in readings]
        pending = [mail for mail in readings if isinstance(mail, ReadMail)]
        try:
            recorded = self._store(pending) if pending else []
        except Exception:
            if len(pending) < 2:
                raise
            log.exception("recording %d messages together failed; recording each alone", len(pending))
            recorded = [self._record_alone(mail) for mail in pending]
        answers = iter(recorded)
        return [mail if isinstance(mail, Decision) else next(answers) for mail in readings]

    def _record_alone(self, mail: "ReadMail") -> Decision:
        try:
            return self._store([mail])[0]
        except Exception as error:
            log.exception("recording a message from %s failed", mail.envelope.peer)
            return TRY_LATER.because(f"recording failed: {type(error).__name__}")

    def _unsubscribe(self, mail: "ReadMail") -> "Decision | ReadMail":
        """Carry out a message's unsubscribe requests; it is then a reply only if it names a thread."""
        try:
            for token in mail.unsubscribe_tokens:
                unsubscribe(self.ctx, token)
        except Exception as error:  # this message only is tried again
            log.exception("unsubscribing for a message from %s failed", mail.envelope.peer)
            return TRY_LATER.because(f"unsubscribing failed: {type(error).__name__}")
        return mail if mail.thread_ids else ACCEPTED.because("unsubscribed")

    def _read(self, envelope: Envelope) -> "Decision | ReadMail":
        """Unsubscribe requests, and the threads a reply belongs to, from its envelope and headers."""
        message = parse_headers(envelope.content)  # the body is read by the job, not while the client waits
        unsubscribes = [r for r in envelope.rcpt_tos if r.lower().startswith(UNSUBSCRIBE_LOCAL + "+")]
        tokens = tuple(address.split("@")[0].split("+", 1)[1] for address in unsubscribes)
        replies = [r for r in envelope.rcpt_tos if r not in unsubscribes]
        # Sent only to unsubscribe addresses: never a comment, whatever it threads under.
        thread_ids = self._threads_of(replies, message) if replies else []
        if not thread_ids and not tokens:
            return UNKNOWN_RECIPIENT.because("no valid token in the recipient or In-Reply-To/References")
        return ReadMail(envelope, message, tuple(thread_ids), tokens)

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

    def _store(self, mails: list["ReadMail"]) -> list[Decision]:
        """Decide and record in one transaction, while the clients wait: DriverStatements (below),
        a few short ones per batch."""
        settings = self.ctx.settings
        thread_ids = list(dict.fromkeys(thread_id for mail in mails for thread_id in mail.thread_ids))
        with self.ctx.db.driver_transaction() as tx:
            threads, participants = {}, {}
            for thread_id in thread_ids:
                row = _THREAD_STATE.execute(tx, {"id": thread_id}).fetchone()
                threads[thread_id] = None if row is None else _ThreadState(*row)
                participants[thread_id] = [email for (email,) in
                                           _PARTICIPANT_EMAILS.execute(tx, {"thread_id": thread_id}).fetchall()]
            received = {(thread_id, mail.message.message_id) for mail in mails if mail.message.message_id
                        for thread_id in mail.thread_ids if threads[thread_id] is not None
                        and _ALREADY_RECEIVED.execute(tx, {"thread_id": thread_id,
                                                           "message_id": mail.message.message_id}).fetchone()}
            now, rows, decisions = utcnow(), [], []
            recorded: list[tuple[ReadMail, str, int | None, str, str | None]] = []  # in the order of rows
            for mail in mails:
                per_thread = []
                for thread_id in mail.thread_ids:
                    thread = threads[thread_id]
                    if (problem := _why_refused(thread, thread_id)) is not None:
                        per_thread.append(UNKNOWN_RECIPIENT.because(problem))
                        continue
                    verdict, reason, decision = _verdict(mail, thread_id, participants[thread_id], received,
                                                         settings.trusted_authserv_id)
                    if verdict == "queued" and mail.message.message_id:
                        received.add((thread_id, mail.message.message_id))  # a repeat later in this batch
                    rows.append(_inbound_row(mail, thread_id, verdict, reason, self.channel, now))
                    per_thread.append(decision)
                    recorded.append((mail, thread_id, thread.installation_id, verdict, reason))
                accepted = [d for d in per_thread if d.accepted]
                decisions.append(accepted[0] if accepted else per_thread[0])
            inbound_ids = [_RECORD_INBOUND.execute(tx, row).fetchone()[0] for row in rows]
            jobs = [({"inbound_id": inbound_id}, installation_id)
                    for inbound_id, (_, _, installation_id, verdict, _) in zip(inbound_ids, recorded, strict=True)
                    if verdict == "queued"]
            if jobs:
                enqueue_many(tx, JOB, jobs, max_attempts=settings.job_max_attempts)
        # Logged once committed (a rolled-back batch is retried and logged then), outside the writer lock.
        for inbound_id, (mail, thread_id, _, verdict, reason) in zip(inbound_ids, recorded):
            log.info("inbound %s for thread %s via %s from <%s> (%s, %d bytes): %s%s", inbound_id, thread_id,
                     self.channel, mail.envelope.mail_from, mail.envelope.peer, len(mail.envelope.content), verdict,
                     f" ({reason})" if reason else "")
        return decisions


@dataclass(frozen=True)
class ReadMail:
    """A message read and checked without the database, on its way to ``record``."""

    envelope: Envelope
    message: ParsedMessage  # headers only
    thread_ids: tuple[str, ...]  # signed and verified; whether they are live is for record()
    unsubscribe_tokens: tuple[str, ...] = ()  # verified when carried out


def _verdict(mail: ReadMail, thread_id: str, participants: list[str], received: set[tuple[str, str]],
             trusted_authserv_id: str | None) -> tuple[str, str | None, Decision]:
    """What becomes of one message on one live thread: (verdict, reason for the log, SMTP answer)."""
    message = mail.message
    if automated := rules.classify_automated(message, mail.envelope.mail_from):
        return automated[0], automated[1], ACCEPTED.because(automated[0])
    if not rules.is_participant(message.from_address or "", participants):
        reason = f"{message.from_address} is not a participant"
        return "rejected-not-participant", reason, NOT_PARTICIPANT.because(reason)
    if trusted_authserv_id and rules.dmarc_result(message, trusted_authserv_id) == "fail":
        reason = f"DMARC fail reported by {trusted_authserv_id}"
        return "rejected-dmarc", reason, DMARC_FAIL.because(reason)
    if message.message_id and (thread_id, message.message_id) in received:
        return "duplicate", "this Message-ID was already received for this thread", ACCEPTED.because("duplicate")
    return "queued", None, ACCEPTED.because("queued")


def _inbound_row(mail: ReadMail, thread_id: str, verdict: str, reason: str | None, channel: str, now) -> dict:
    envelope, message = mail.envelope, mail.message
    return {"thread_id": thread_id, "message_id": message.message_id, "envelope_from": envelope.mail_from,
            "recipients": ",".join(envelope.rcpt_tos), "from_address": message.from_address,
            "subject": message.subject[:500], "peer": envelope.peer, "channel": channel,
            "size": len(envelope.content), "raw": envelope.content, "verdict": verdict, "reason": reason,
            "received_at": now}


LIVE_THREAD_SECONDS = 5.0  # a live thread's RCPT answer is reused this long; DATA always reads the row
LIVE_THREADS_REMEMBERED = 10_000
_THREAD_OF_RECIPIENT = select(Thread.revoked_at).where(Thread.id == bindparam("id"))
_THREAD_STATE = DriverStatement(select(Thread.installation_id, Thread.revoked_at).where(Thread.id == bindparam("id")),
                                keys=("id",))
_PARTICIPANT_EMAILS = DriverStatement(select(Participant.email).where(Participant.thread_id == bindparam("thread_id")),
                                      keys=("thread_id",))
_ALREADY_RECEIVED = DriverStatement(select(InboundMessage.id).where(
    InboundMessage.thread_id == bindparam("thread_id"), InboundMessage.message_id == bindparam("message_id"),
    or_(*(InboundMessage.verdict == verdict for verdict in ("queued", "posted", "empty", "failed")))).limit(1),
    keys=("thread_id", "message_id"))
_RECORD_INBOUND = DriverStatement(insert(InboundMessage).returning(InboundMessage.id),
                                  keys=("thread_id", "message_id", "envelope_from", "recipients", "from_address",
                                        "subject", "peer", "channel", "size", "raw", "verdict", "reason",
                                        "received_at"))


@dataclass(frozen=True)
class _ThreadState:
    installation_id: int | None
    revoked_at: object  # only tested for NULL


def _why_refused(thread, thread_id: str) -> str | None:
    """Why a reply to this thread (a row with its revoked_at, or None) is refused; None if it is not."""
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
    envelope_from: str


def process_reply(ctx: FlowContext, job: ClaimedJob) -> None:
    with ctx.db.session() as session:
        row = session.get(InboundMessage, job.payload["inbound_id"])
        if row is None or row.verdict != "queued":
            return  # finished before a crash
        thread = session.get(Thread, row.thread_id)
        work = _Work(row.id, thread.id, thread.repo, thread.pr_number, thread.title, thread.installation_id, row.raw,
                     row.envelope_from or "")

    message = parse_message(work.raw)
    if automated := rules.classify_automated(message, work.envelope_from):
        # Only the headers were read at DATA; the body can still show a machine (a delivery-status part).
        _mark(ctx, work.inbound_id, verdict=automated[0], reason=automated[1])
        return
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
    _mark(ctx, job.payload["inbound_id"], verdict="failed", reason=reason)


def _mark(ctx: FlowContext, inbound_id: int, *, verdict: str, reason: str) -> None:
    """A queued message's final verdict when no comment is posted (and no receipt sent)."""
    with ctx.db.session() as session:
        row = session.get(InboundMessage, inbound_id)
        if row is not None and row.verdict == "queued":
            row.verdict, row.reason, row.processed_at = verdict, reason, ctx.clock()


def job_kinds(ctx: FlowContext) -> list[JobKind]:
    return [JobKind(JOB, lambda job: process_reply(ctx, job), on_dead=lambda job, reason: reply_failed(ctx, job, reason))]
