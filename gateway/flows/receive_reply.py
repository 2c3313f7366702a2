"""Flow 3a, a reply at the door: is this mail ours to take, and if so, record it and queue its posting.

The SMTP receiver (``inbound``) and ``POST /inbound/raw`` (``gateway.web``) ask; each turns the
answer (a ``gateway.domain.Answer``) into its own protocol's reply. Nothing is taken that is not
recorded first: an accepted message's row and its posting job commit before the answer goes out.

At RCPT TO, for each recipient:
  an unsubscribe address or the bare reply mailbox     → recipient ok (DATA decides)
  a reply address whose signature fails                → unknown recipient
  its thread does not exist or was revoked             → unknown recipient
  otherwise                                            → recipient ok
At the end of DATA (``deliver_many``; messages that end together are recorded together):
  read, without the database: the headers, the threads the recipients or the signed
  Message-ID in In-Reply-To/References name, the unsubscribe tokens       (``read``)
  carry out its unsubscribe requests; sent only to those? → accepted, never a comment
  then for each thread it names, in one transaction:                     (``_decide_and_record``)
    the thread is gone or revoked                      → unknown recipient
    an auto-reply or a bounce                          → recorded, accepted, never answered
    the sender is not a participant                    → recorded, not a participant
    DMARC fail reported by the trusted verifier        → recorded, authentication failed
    its Message-ID was already taken for this thread   → recorded as duplicate, accepted
    otherwise                                          → recorded and queued for posting, accepted
  our own failure (reading, recording)                 → try later: the sender sends it again
Posting the comment is the job's: ``gateway.flows.post_reply``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.domain import (ACCEPTED, AUTHENTICATION_FAILED, NOT_PARTICIPANT, RECIPIENT_OK, TRY_LATER,
                            UNKNOWN_RECIPIENT, Answer, Verdict)
from gateway.flows.context import FlowContext
from gateway.flows.unsubscribe import unsubscribe
from gateway.queue import enqueue
from gateway.signing import REPLY_LOCAL, TokenInvalid
from gateway.store import utcnow
from gateway.store.replies import LiveThreads, ReceivedMail, ReplyBook, record_together, why_refused
from inbound import rules
from inbound.handler import Envelope
from inbound.parse import ParsedMessage, parse_headers

log = logging.getLogger("gateway.reply")
POST_REPLY = "process_reply"  # the job kind; stored in queued jobs, so the name stays
UNSUBSCRIBE_LOCAL = "unsubscribe"


@dataclass(frozen=True)
class IncomingReply:
    """A message read without the database, on its way to being decided and recorded."""

    envelope: Envelope
    message: ParsedMessage  # headers only: the body is read by the job, not while the sender waits
    thread_ids: tuple[str, ...]  # signed and verified; whether they are live is decided when recording
    unsubscribe_tokens: tuple[str, ...] = ()  # verified when carried out


class ReplyDoor:
    """The answers the SMTP receiver and POST /inbound/raw ask for."""

    def __init__(self, ctx: FlowContext, channel: str = "smtp"):
        self.ctx = ctx
        self.channel = channel
        self.threads = LiveThreads(ctx.db)

    # -- RCPT TO ------------------------------------------------------------

    def check_recipient(self, address: str) -> Answer:
        answer = self._answer_from_address(address)
        if isinstance(answer, Answer):
            return answer
        problem = self.threads.why_refused(answer)
        return RECIPIENT_OK if problem is None else UNKNOWN_RECIPIENT.because(problem)

    def check_recipient_quickly(self, address: str) -> Answer | None:
        """The answer when no database read is needed (bad signature, thread seen live just now), else
        None. The receiver calls this on its event loop and sends only the rest to a thread."""
        answer = self._answer_from_address(address)
        if isinstance(answer, Answer):
            return answer
        return RECIPIENT_OK if self.threads.remembered_live(answer) else None

    def _answer_from_address(self, address: str) -> Answer | str:
        """A final answer from the address alone, or the id of the thread whose state decides."""
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

    # -- end of DATA ----------------------------------------------------------

    def deliver(self, envelope: Envelope) -> Answer:
        return self.deliver_many([envelope])[0]

    def deliver_many(self, envelopes: list[Envelope]) -> list[Answer]:
        """Read each message, carry out its unsubscribe requests, then decide and record the replies
        together (one commit). One answer per envelope, in order."""
        readings = [self.read(envelope) for envelope in envelopes]
        readings = [self._unsubscribe(r) if isinstance(r, IncomingReply) and r.unsubscribe_tokens else r
                    for r in readings]
        replies = [r for r in readings if isinstance(r, IncomingReply)]
        recorded = iter(record_together(self.ctx.db, replies, self._decide_and_record, on_failure=_could_not_record))
        return [next(recorded) if isinstance(r, IncomingReply) else r for r in readings]

    def read(self, envelope: Envelope) -> "Answer | IncomingReply":
        """Everything about one message that needs no database. Never raises: a failure is TRY_LATER."""
        try:
            message = parse_headers(envelope.content)
            unsubscribes = [r for r in envelope.rcpt_tos if r.lower().startswith(UNSUBSCRIBE_LOCAL + "+")]
            tokens = tuple(address.split("@")[0].split("+", 1)[1] for address in unsubscribes)
            replies = [r for r in envelope.rcpt_tos if r not in unsubscribes]
            # Sent only to unsubscribe addresses: never a comment, whatever it threads under.
            thread_ids = self._threads_named(replies, message) if replies else []
        except Exception as error:
            log.exception("reading a message from %s failed", envelope.peer)
            return TRY_LATER.because(f"reading failed: {type(error).__name__}")
        if not thread_ids and not tokens:
            return UNKNOWN_RECIPIENT.because("no valid token in the recipient or In-Reply-To/References")
        return IncomingReply(envelope, message, tuple(thread_ids), tokens)

    def _threads_named(self, recipients: list[str], message: ParsedMessage) -> list[str]:
        """The threads a reply belongs to: its signed recipient addresses, else the signed Message-ID
        it answers, else our signed X-Gateway headers (a client that kept only those)."""
        found: list[str] = []
        for address in recipients:
            try:
                found.append(self.ctx.tokens.verify_address(address))
            except TokenInvalid:
                pass
        if not found:
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
        return list(dict.fromkeys(found))

    def _unsubscribe(self, reply: IncomingReply) -> "Answer | IncomingReply":
        """Carry out a message's unsubscribe requests; it is then a reply only if it names a thread."""
        try:
            for token in reply.unsubscribe_tokens:
                unsubscribe(self.ctx, token)
        except Exception as error:  # this message only is tried again
            log.exception("unsubscribing for a message from %s failed", reply.envelope.peer)
            return TRY_LATER.because(f"unsubscribing failed: {type(error).__name__}")
        return reply if reply.thread_ids else ACCEPTED.because("unsubscribed")

    def _decide_and_record(self, book: ReplyBook, reply: IncomingReply) -> Answer:
        """Decide for each thread the reply names, record it there, queue its posting; the message's
        answer is the first acceptance, else the first refusal."""
        answers = []
        for thread_id in reply.thread_ids:
            thread = book.thread(thread_id)
            if (problem := why_refused(thread, thread_id)) is not None:
                answers.append(UNKNOWN_RECIPIENT.because(problem))
                continue
            verdict, reason, answer = self._judge(book, reply, thread_id, thread.participants)
            inbound_id = book.record(self._received(reply, thread_id, verdict, reason))
            if verdict is Verdict.QUEUED:
                enqueue(book.transaction, POST_REPLY, {"inbound_id": inbound_id},
                        installation_id=thread.installation_id, max_attempts=self.ctx.settings.job_max_attempts)
            book.after_commit(lambda i=inbound_id, t=thread_id, v=verdict, r=reason: self._log(reply, i, t, v, r))
            answers.append(answer)
        return next((answer for answer in answers if answer.accepted), answers[0])

    def _judge(self, book: ReplyBook, reply: IncomingReply, thread_id: str,
               participants: tuple[str, ...]) -> tuple[Verdict, str | None, Answer]:
        """What becomes of one reply on one live thread: its verdict, why, and the answer to the sender."""
        message, trusted = reply.message, self.ctx.settings.trusted_authserv_id
        if automated := rules.classify_automated(message, reply.envelope.mail_from):
            verdict, reason = automated
            return verdict, reason, ACCEPTED.because(verdict)
        if not rules.is_participant(message.from_address or "", participants):
            reason = f"{message.from_address} is not a participant"
            return Verdict.NOT_PARTICIPANT, reason, NOT_PARTICIPANT.because(reason)
        if trusted and rules.dmarc_result(message, trusted) == "fail":
            reason = f"DMARC fail reported by {trusted}"
            return Verdict.DMARC_FAIL, reason, AUTHENTICATION_FAILED.because(reason)
        if message.message_id and book.already_received(thread_id, message.message_id):
            return (Verdict.DUPLICATE, "this Message-ID was already received for this thread",
                    ACCEPTED.because(Verdict.DUPLICATE))
        return Verdict.QUEUED, None, ACCEPTED.because(Verdict.QUEUED)

    def _received(self, reply: IncomingReply, thread_id: str, verdict: Verdict, reason: str | None) -> ReceivedMail:
        envelope, message = reply.envelope, reply.message
        return ReceivedMail(thread_id=thread_id, message_id=message.message_id, envelope_from=envelope.mail_from,
                            recipients=",".join(envelope.rcpt_tos), from_address=message.from_address,
                            subject=message.subject[:500], peer=envelope.peer, channel=self.channel,
                            size=len(envelope.content), raw=envelope.content, verdict=verdict, reason=reason,
                            received_at=utcnow())

    def _log(self, reply: IncomingReply, inbound_id: int, thread_id: str, verdict: Verdict, reason: str | None):
        log.info("inbound %s for thread %s via %s from <%s> (%s, %d bytes): %s%s", inbound_id, thread_id,
                 self.channel, reply.envelope.mail_from, reply.envelope.peer, len(reply.envelope.content),
                 verdict, f" ({reason})" if reason else "")


def _could_not_record(reply: IncomingReply, error: Exception) -> Answer:
    return TRY_LATER.because(f"recording failed: {type(error).__name__}")
