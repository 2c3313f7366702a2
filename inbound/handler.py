"""The aiosmtpd handler: translates between SMTP and the reply door (gateway.flows.receive_reply).

Sole purpose: at ``RCPT TO`` ask the pipeline whether the recipient exists
(on the event loop when it can answer without the database, else in a
thread), at the end of ``DATA`` hand it the envelope, and turn each answer (a
``gateway.domain.Answer``) into an SMTP reply with an enhanced status code
(``smtp_reply``: the only place that chooses SMTP codes).  Envelopes whose
DATA ends while the pipeline is storing a batch wait and go together in the
next one, so concurrent transactions share a commit.  It also enforces the
recipient limit and turns our own failures into ``451`` so the client
retries.

Not for: deciding anything about the message (the pipeline, implemented by
the reply flow, checks tokens, participants and stores the message; the
rules are in ``inbound.rules``), or running the server (``inbound.server``).
The detailed reason for a rejection goes to the log ("gateway.inbound");
the SMTP text stays generic so it tells a prober nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

from gateway.domain import TOO_MANY_RECIPIENTS, TRY_LATER, Answer, Outcome

log = logging.getLogger("gateway.inbound")

T = TypeVar("T")


@dataclass(frozen=True)
class SmtpReply:
    """One SMTP reply line: ``250 2.0.0 Message accepted``.

    ``reason`` is for the log only and never sent to the client.
    """

    code: int
    status: str
    text: str
    reason: str | None = field(default=None, compare=False)

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300

    def smtp(self) -> str:
        return f"{self.code} {self.status} {self.text}"


# The one place where the gateway's answers become SMTP (RFC 5321 codes, RFC 3463 enhanced codes).
# The texts stay generic so that they tell a prober nothing; the reason goes to the log.
_SMTP = {
    Outcome.RECIPIENT_OK: (250, "2.1.5", "Recipient ok"),
    Outcome.ACCEPTED: (250, "2.0.0", "Message accepted"),
    Outcome.UNKNOWN_RECIPIENT: (550, "5.1.1", "Recipient address rejected"),
    Outcome.NOT_PARTICIPANT: (550, "5.7.1", "Sender not allowed for this conversation"),
    Outcome.AUTHENTICATION_FAILED: (550, "5.7.1", "Message failed DMARC"),
    Outcome.TOO_MANY_RECIPIENTS: (452, "4.5.3", "Too many recipients"),
    Outcome.TOO_BIG: (552, "5.3.4", "Message size exceeds fixed maximum message size"),
    Outcome.TRY_LATER: (451, "4.3.0", "Temporary failure, try again later"),
}


def smtp_reply(answer: Answer) -> SmtpReply:
    """The SMTP reply that carries ``answer``."""
    return SmtpReply(*_SMTP[answer.outcome], reason=answer.reason)


@dataclass(frozen=True)
class Envelope:
    """One SMTP transaction as the pipeline sees it.

    ``mail_from`` is "" for the null sender (``MAIL FROM:<>``).  ``peer`` is
    the client's IP address (the proxied client's, behind a PROXY-protocol
    load balancer).  ``content`` is exactly the bytes of DATA, dot-unstuffed.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    peer: str
    helo: str | None


class Pipeline(Protocol):
    """What the receiver needs from the reply flow."""

    def check_recipient_quickly(self, address: str) -> Answer | None:
        """At ``RCPT TO``, without blocking: the answer, or None if it needs ``check_recipient``."""

    def check_recipient(self, address: str) -> Answer:
        """At ``RCPT TO``: is this a valid reply address?  May block (database)."""

    def deliver_many(self, envelopes: list[Envelope]) -> list[Answer]:
        """At the end of DATA: decide each, and store raw + queue, all in one transaction.

        One answer per envelope, in order; TRY_LATER (or raise) if they could not be
        stored.  May block (database).
        """


DeliverMany = Callable[[list[Envelope]], Awaitable[list[Answer]]]


class GatewayHandler:
    """aiosmtpd handler; each ``handle_*`` returns the SMTP reply line."""

    def __init__(self, pipeline: Pipeline, *, max_recipients: int = 10, executor: Executor | None = None,
                 max_batch: int = 64, deliver_many: DeliverMany | None = None):
        self.pipeline = pipeline
        self.max_recipients = max_recipients
        self.executor = executor
        self.max_batch = max_batch
        # Where DATA transactions are decided and stored: pipeline.deliver_many in a thread, or
        # (`gateway smtp`) a coroutine that hands them to the writer process (gateway.smtp_writer).
        self.deliver_many: DeliverMany = deliver_many or self._deliver_in_thread
        self.in_flight = 0  # pipeline calls running or waiting; read by Receiver.stop to drain
        # DATA transactions waiting for the pipeline; one batch is stored at a time (group commit).
        self._waiting: list[tuple[Envelope, asyncio.Future]] = []
        self._storing = False
        self._store_task: asyncio.Future | None = None

    async def handle_PROXY(self, server: Any, session: Any, envelope: Any, proxy_data: Any) -> bool:
        """Accept a well-formed PROXY header; a malformed one closes the connection."""
        valid = bool(getattr(proxy_data, "valid", False))
        if not valid:
            log.warning(
                "peer=%s invalid PROXY header: %s", _peer_of(session), getattr(proxy_data, "error", "") or "unparseable"
            )
        return valid

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
        # aiosmtpd lists AUTH once TLS is up, with no way to authenticate:
        # the receiver takes mail for its own domain only, so AUTH is not offered.
        session.host_name = hostname  # a hook must set this itself
        kept = [line for line in responses if not line[4:].upper().startswith("AUTH")]
        # The last line of a multi-line reply uses "250 ", the others "250-".
        return [line[:3] + ("-" if i < len(kept) - 1 else " ") + line[4:] for i, line in enumerate(kept)]

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
        # aiosmtpd hands the null sender over as the string "<>"; keep it so
        # (an empty mail_from would read as "no MAIL yet") and map it to ""
        # only in our Envelope.
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender ok"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        peer, mail_from = _peer_of(session), _sender_of(envelope)
        if len(envelope.rcpt_tos) >= self.max_recipients:
            answer = TOO_MANY_RECIPIENTS.because(f"more than {self.max_recipients} recipients")
        else:
            answer = self._quick_recipient_check(address)
            if answer is None:
                answer = await self._call("check_recipient",
                                          partial(self._in_thread, self.pipeline.check_recipient, address))
        reply = smtp_reply(answer)
        _log_reply("RCPT", peer, mail_from, (address,), reply)
        if reply.accepted:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return reply.smtp()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content if envelope.original_content is not None else envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        ours = Envelope(
            mail_from=_sender_of(envelope),
            rcpt_tos=tuple(envelope.rcpt_tos),
            content=bytes(content or b""),
            peer=_peer_of(session),
            helo=session.host_name,
        )
        reply = smtp_reply(await self._deliver(ours))
        _log_reply("DATA", ours.peer, ours.mail_from, ours.rcpt_tos, reply, size=len(ours.content))
        return reply.smtp()

    async def handle_exception(self, error: Exception) -> str:
        """Anything that escapes the hooks is our failure: ask the client to retry."""
        log.error("SMTP session error: %s", error, exc_info=error)
        return smtp_reply(TRY_LATER).smtp()

    def _quick_recipient_check(self, address: str) -> Answer | None:
        try:
            return self.pipeline.check_recipient_quickly(address)
        except Exception:
            log.exception("pipeline.check_recipient_quickly failed")
            return None  # the full check decides

    async def _deliver(self, envelope: Envelope) -> Answer:
        """Wait for this message's answer; messages that arrive while a batch is being stored
        go into the next batch, so concurrent transactions share one commit."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((envelope, future))
        self.in_flight += 1
        try:
            if not self._storing:
                self._storing = True
                self._store_task = asyncio.ensure_future(self._store_waiting())  # referenced: not collected
            return await asyncio.shield(future)  # a client that goes away must not cancel the others' batch
        finally:
            self.in_flight -= 1

    async def _store_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
                answers = await self._call_many([envelope for envelope, _ in batch])
                for (_, future), answer in zip(batch, answers):
                    if not future.done():
                        future.set_result(answer)
        finally:
            self._storing = False

    async def _call_many(self, envelopes: list[Envelope]) -> list[Answer]:
        answers = await self._call("deliver_many", partial(self.deliver_many, envelopes), many=len(envelopes))
        if isinstance(answers, Answer):  # the call failed: the same answer for each
            return [answers] * len(envelopes)
        return answers

    async def _deliver_in_thread(self, envelopes: list[Envelope]) -> list[Answer]:
        return await self._in_thread(self.pipeline.deliver_many, envelopes)

    def _in_thread(self, function: Callable[[T], Any], argument: T) -> Awaitable[Any]:
        return asyncio.get_running_loop().run_in_executor(self.executor, function, argument)

    async def _call(self, name: str, start: Callable[[], Awaitable[Any]], *, many: int | None = None) -> Any:
        """Await a pipeline call (``start()``): its Answer (a list of ``many``), or TRY_LATER if it failed."""
        self.in_flight += 1
        try:
            result = await start()
        except Exception as error:
            log.exception("pipeline.%s failed", name)
            return TRY_LATER.because(f"pipeline.{name} raised {type(error).__name__}: {error}")
        finally:
            self.in_flight -= 1
        if not _is_answer(result, many):
            log.error("pipeline.%s returned %r, not %s", name, result,
                      f"{many} Answers" if many is not None else "an Answer")
            return TRY_LATER.because(f"pipeline.{name} returned {type(result).__name__}")
        return result


def _is_answer(result: Any, many: int | None) -> bool:
    """An Answer, or with ``many`` a list of that many Answers."""
    if many is None:
        return isinstance(result, Answer)
    return isinstance(result, list) and len(result) == many and all(isinstance(a, Answer) for a in result)


def peer_address(session: Any) -> str:
    """The client's IP: from the PROXY header when there was one, else the socket."""
    proxy = getattr(session, "proxy_data", None)
    if proxy is not None and getattr(proxy, "valid", False) and getattr(proxy, "src_addr", None):
        return str(proxy.src_addr)
    peer = getattr(session, "peer", None)
    if isinstance(peer, (tuple, list)) and peer:
        return str(peer[0])
    return str(peer or "")


_peer_of = peer_address


def _sender_of(envelope: Any) -> str:
    mail_from = envelope.mail_from or ""
    return "" if mail_from == "<>" else mail_from


def _log_reply(stage: str, peer: str, mail_from: str, rcpts: tuple[str, ...], reply: SmtpReply, **extra: Any) -> None:
    # An accepted message is logged once, by the flow that records it (with its id); refusals here.
    level = logging.DEBUG if reply.accepted else logging.WARNING
    if not log.isEnabledFor(level):
        return
    details = "".join(f" {k}={v}" for k, v in extra.items())
    log.log(
        level,
        "%s peer=%s mail_from=<%s> rcpt=%s decision=%r%s%s",
        stage,
        peer,
        mail_from,
        ",".join(rcpts),
        reply.smtp(),
        details,
        f" reason={reply.reason}" if reply.reason else "",
    )
