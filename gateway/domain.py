"""The gateway's vocabulary: the states its records go through and the answers its flows give.

The foundation of every layer: it imports nothing of ours, so adapters (``inbound``, ``outbound``,
``github_app``), the store and the flows all speak these words. Each state is a ``StrEnum`` whose
values are the strings stored in the database and shown by the API, so a member compares equal to
its stored string. Protocol codes are not here: SMTP replies are chosen in ``inbound``, HTTP
statuses in ``gateway.web``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum, StrEnum


def utcnow() -> datetime:
    """Now, as every time in the gateway is kept: timezone-aware UTC."""
    return datetime.now(timezone.utc)


class Verdict(StrEnum):
    """What became of one inbound mail on one thread (``inbound_messages.verdict``)."""

    QUEUED = "queued"                               # accepted; its comment is being posted
    POSTED = "posted"                               # posted as a PR comment
    EMPTY = "empty"                                 # nothing new to post (all quoted)
    AUTO_REPLY = "ignored-auto-reply"               # an out-of-office or other automated answer
    BOUNCE = "bounce"                               # a delivery report
    DUPLICATE = "duplicate"                         # its Message-ID was already received
    FAILED = "failed"                               # posting failed for good (dead letter)
    NOT_PARTICIPANT = "rejected-not-participant"    # the sender may not write to this thread
    DMARC_FAIL = "rejected-dmarc"                   # the sender's domain disowns it

    @property
    def counts_as_received(self) -> bool:
        """A later copy with the same Message-ID is a duplicate of this one."""
        return self in (Verdict.QUEUED, Verdict.POSTED, Verdict.EMPTY, Verdict.FAILED)




class JobStatus(StrEnum):
    """A job's place in its life cycle (``jobs.status``); see ``gateway.queue``."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


class RequestStatus(StrEnum):
    """What became of one ``POST /api/pull-requests`` (``pull_request_requests.status``)."""

    QUEUED = "queued"
    MIRRORING = "mirroring"
    OPENING = "opening"
    OPENED = "opened"
    NOTIFIED = "notified"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (RequestStatus.OPENED, RequestStatus.NOTIFIED, RequestStatus.FAILED)


class MailStatus(StrEnum):
    """An outbound mail's delivery (``outbound_mails.status``)."""

    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


class Outcome(Enum):
    """A flow's answer to a mail at the door: at RCPT (is this a recipient?) or at the end of DATA.

    The SMTP receiver and ``POST /inbound/raw`` each turn it into their own protocol's answer.
    """

    RECIPIENT_OK = "recipient ok"
    ACCEPTED = "accepted"                       # taken: recorded (and, if it is a reply, queued for posting)
    UNKNOWN_RECIPIENT = "unknown recipient"     # no such address, or its thread is gone
    NOT_PARTICIPANT = "not a participant"
    AUTHENTICATION_FAILED = "authentication failed"
    TOO_MANY_RECIPIENTS = "too many recipients"
    TOO_BIG = "too big"
    TRY_LATER = "try later"                     # our failure: the sender should send it again

    @property
    def accepted(self) -> bool:
        return self in (Outcome.RECIPIENT_OK, Outcome.ACCEPTED)


@dataclass(frozen=True)
class Answer:
    """An ``Outcome`` with why: ``reason`` is for the log and the operator, never for the sender.

    For an accepted message the reason is what it was taken as (its Verdict, or "unsubscribed").
    """

    outcome: Outcome
    reason: str | None = field(default=None, compare=False)

    @property
    def accepted(self) -> bool:
        return self.outcome.accepted

    def because(self, reason: str) -> "Answer":
        return replace(self, reason=reason)


RECIPIENT_OK = Answer(Outcome.RECIPIENT_OK)
ACCEPTED = Answer(Outcome.ACCEPTED)
UNKNOWN_RECIPIENT = Answer(Outcome.UNKNOWN_RECIPIENT)
NOT_PARTICIPANT = Answer(Outcome.NOT_PARTICIPANT)
AUTHENTICATION_FAILED = Answer(Outcome.AUTHENTICATION_FAILED)
TOO_MANY_RECIPIENTS = Answer(Outcome.TOO_MANY_RECIPIENTS)
TOO_BIG = Answer(Outcome.TOO_BIG)
TRY_LATER = Answer(Outcome.TRY_LATER)
