"""What the reply flow reads and writes at the door, while a mail client waits for its answer.

Three things here are acceptance machinery, kept out of the flow:
- ``LiveThreads``: RCPT TO asks whether a thread is live for every recipient of every message. A
  thread found live is remembered for ``LIVE_THREAD_SECONDS``, so a burst of replies to one thread
  costs one read; DATA always reads the row again, so a revocation is never missed there.
- ``record_together``: messages whose DATA ended together are decided and recorded in one
  transaction, so they share one commit (one fsync). If that transaction fails, each message is
  recorded alone, so one message cannot fail the others.
- ``ReplyBook`` runs its few statements straight on the DBAPI cursor (``DriverStatement``):
  SQLAlchemy's SQL and types, without its per-statement execution cost, which on this path was
  several times SQLite's own work.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import bindparam, insert, or_, select

from gateway.domain import Verdict
from gateway.store.database import Database, DriverStatement, DriverTransaction, after_commit
from gateway.store.models import InboundMessage, Participant, Thread

log = logging.getLogger("gateway.reply")

LIVE_THREAD_SECONDS = 5.0  # a live thread's RCPT answer is reused this long; DATA always reads the row
LIVE_THREADS_REMEMBERED = 10_000


@dataclass(frozen=True)
class ThreadAtDoor:
    """What deciding on a reply needs to know of its thread."""

    id: str
    installation_id: int | None
    revoked: bool
    participants: tuple[str, ...]  # addresses as stored


@dataclass(frozen=True)
class ReceivedMail:
    """One ``inbound_messages`` row as the door records it: the raw message, kept until it is posted."""

    thread_id: str
    message_id: str | None
    envelope_from: str
    recipients: str
    from_address: str | None
    subject: str
    peer: str
    channel: str
    size: int
    raw: bytes
    verdict: str
    reason: str | None
    received_at: datetime


def why_refused(thread: "ThreadAtDoor | None", thread_id: str) -> str | None:
    """Why a reply to this thread is refused (it does not exist, or was revoked); None if it is not."""
    return _refusal(thread_id, exists=thread is not None, revoked=thread is not None and thread.revoked)


def _refusal(thread_id: str, *, exists: bool, revoked: bool) -> str | None:
    if not exists:
        return f"thread {thread_id} does not exist"
    if revoked:
        return f"thread {thread_id} was revoked"
    return None


class LiveThreads:
    """RCPT TO's view of threads: a read per thread, remembered while the thread is live."""

    def __init__(self, db: Database):
        self._db = db
        self._live_until: dict[str, float] = {}  # thread id -> monotonic time its "live" answer expires

    def remembered_live(self, thread_id: str) -> bool:
        """Seen live within the last LIVE_THREAD_SECONDS: no database read needed."""
        until = self._live_until.get(thread_id)
        return until is not None and time.monotonic() < until

    def why_refused(self, thread_id: str) -> str | None:
        """Read the thread (without waiting for the writer lock); None if replies to it are taken."""
        if self.remembered_live(thread_id):
            return None
        with self._db.read_session() as session:
            row = session.connection().execute(_REVOKED_AT, {"id": thread_id}).first()
        problem = _refusal(thread_id, exists=row is not None, revoked=row is not None and row.revoked_at is not None)
        if problem is None:
            if len(self._live_until) >= LIVE_THREADS_REMEMBERED:
                self._live_until.clear()
            self._live_until[thread_id] = time.monotonic() + LIVE_THREAD_SECONDS
        return problem


class ReplyBook:
    """The door's transaction: threads as they are now, what was already received, and new records.

    ``transaction`` is where jobs for what was recorded are queued, so they commit together.
    """

    def __init__(self, transaction: DriverTransaction):
        self.transaction = transaction
        self._threads: dict[str, ThreadAtDoor | None] = {}
        self._received: set[tuple[str, str]] = set()  # recorded in this transaction

    def thread(self, thread_id: str) -> ThreadAtDoor | None:
        if thread_id not in self._threads:
            row = _THREAD_STATE.execute(self.transaction, {"id": thread_id}).fetchone()
            self._threads[thread_id] = None if row is None else ThreadAtDoor(
                thread_id, row[0], row[1] is not None,
                tuple(email for (email,) in _PARTICIPANT_EMAILS.execute(
                    self.transaction, {"thread_id": thread_id}).fetchall()))
        return self._threads[thread_id]

    def already_received(self, thread_id: str, message_id: str) -> bool:
        """A copy with this Message-ID was taken for this thread before (or earlier in this batch)."""
        return (thread_id, message_id) in self._received or _ALREADY_RECEIVED.execute(
            self.transaction, {"thread_id": thread_id, "message_id": message_id}).fetchone() is not None

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once what was recorded is committed (never if it is rolled back)."""
        after_commit(self.transaction, callback)

    def record(self, mail: ReceivedMail) -> int:
        """Store the message with its verdict; returns its inbound id."""
        (inbound_id,) = _RECORD_INBOUND.execute(self.transaction, vars(mail)).fetchone()
        if mail.message_id and Verdict(mail.verdict).counts_as_received:
            self._received.add((mail.thread_id, mail.message_id))
        return inbound_id


T = TypeVar("T")
R = TypeVar("R")


def record_together(db: Database, mails: list[T], record_one: Callable[[ReplyBook, T], R],
                    on_failure: Callable[[T, Exception], R]) -> list[R]:
    """``record_one`` for every mail in one transaction (one commit); if that fails, each mail in
    its own, and a mail whose own transaction fails gets ``on_failure``'s answer. Returns once
    committed, in the order given."""
    if not mails:
        return []
    try:
        with _book(db) as book:
            return [record_one(book, mail) for mail in mails]
    except Exception as error:
        if len(mails) == 1:
            log.exception("recording a message failed")
            return [on_failure(mails[0], error)]
        log.exception("recording %d messages together failed; recording each alone", len(mails))
    return [record_together(db, [mail], record_one, on_failure)[0] for mail in mails]


@contextmanager
def _book(db: Database) -> Iterator[ReplyBook]:
    with db.driver_transaction() as transaction:
        yield ReplyBook(transaction)


_REVOKED_AT = select(Thread.revoked_at).where(Thread.id == bindparam("id"))
_THREAD_STATE = DriverStatement(select(Thread.installation_id, Thread.revoked_at).where(Thread.id == bindparam("id")),
                                keys=("id",))
_PARTICIPANT_EMAILS = DriverStatement(select(Participant.email).where(Participant.thread_id == bindparam("thread_id")),
                                      keys=("thread_id",))
_ALREADY_RECEIVED = DriverStatement(select(InboundMessage.id).where(
    InboundMessage.thread_id == bindparam("thread_id"), InboundMessage.message_id == bindparam("message_id"),
    or_(*(InboundMessage.verdict == verdict for verdict in Verdict if verdict.counts_as_received))).limit(1),
    keys=("thread_id", "message_id"))
_RECORD_INBOUND = DriverStatement(insert(InboundMessage).returning(InboundMessage.id),
                                  keys=tuple(ReceivedMail.__dataclass_fields__))
