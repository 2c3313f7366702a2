"""The system of record's tables: what the gateway knows, as SQLAlchemy models.

Every externally visible effect is driven by a row written here (a job, an outbound mail, an
inbound message). Nothing a process must remember lives only in its memory, so more web, SMTP and
worker processes can share one PostgreSQL. ORM objects stay inside `with db.session()` blocks;
flows hand dataclasses on.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timezone

from sqlalchemy import (BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text,
                        TypeDecorator, UniqueConstraint, func, select, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from gateway.domain import JobStatus, MailStatus, RequestStatus, Verdict, utcnow  # noqa: F401 (utcnow: re-exported)


def new_id(length: int = 12) -> str:
    """Lower-case base32 ids: safe in mail local parts that MTAs may lower-case."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "".join(secrets.choice(alphabet) for _ in range(length))


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use gateway.store.utcnow()")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class PullRequestRequest(Base):
    """One call of POST /api/pull-requests and what became of it."""

    __tablename__ = "pull_request_requests"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id(16))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    repo: Mapped[str] = mapped_column(String(200))
    head: Mapped[str] = mapped_column(String(255))
    base: Mapped[str | None] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    reporter_email: Mapped[str] = mapped_column(String(320))
    reporter_name: Mapped[str | None] = mapped_column(String(200))
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    source_url: Mapped[str | None] = mapped_column(Text)
    source_ref: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), default=RequestStatus.QUEUED)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    pr_number: Mapped[int | None] = mapped_column(Integer)
    pr_url: Mapped[str | None] = mapped_column(Text)
    thread_id: Mapped[str | None] = mapped_column(ForeignKey("threads.id"))
    job_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Thread(Base):
    """A mail conversation bound to one pull request; its id is what reply tokens sign."""

    __tablename__ = "threads"
    id: Mapped[str] = mapped_column(String(16), primary_key=True, default=new_id)
    repo: Mapped[str] = mapped_column(String(200))
    pr_number: Mapped[int] = mapped_column(Integer)
    pr_url: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(String(300))
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    root_message_id: Mapped[str | None] = mapped_column(String(255))
    message_seq: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# GitHub's repository names are case-insensitive; the caller's spelling is kept for display.
Index("ix_threads_repo_pr", func.lower(Thread.repo), Thread.pr_number)


def thread_for_pull(session: Session, repo: str, pr_number: int) -> Thread | None:
    """The mail thread of a pull request, however the repository name is cased."""
    return session.scalars(select(Thread).where(func.lower(Thread.repo) == repo.lower(),
                                                Thread.pr_number == pr_number)).first()


class Participant(Base):
    """Who may post to a thread by mail, and whether they still want its mail."""

    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("thread_id", "email"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.id"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default="reporter")
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# A sent mail's body, not yet cleared (a cleared body is empty: the column is NOT NULL).
OUTBOUND_BODY_CLEARABLE = text(f"status = '{MailStatus.SENT}' AND length(raw) > 0")


class OutboundMail(Base):
    """The outbox: a composed mail waiting for (or done with) the relay."""

    __tablename__ = "outbound_mails"
    # Sent bodies retention may clear, by age (store.retention); a mail enters it once sent.
    __table_args__ = (Index("ix_outbound_sent_body_by_age", "sent_at", sqlite_where=OUTBOUND_BODY_CLEARABLE,
                            postgresql_where=OUTBOUND_BODY_CLEARABLE),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[str | None] = mapped_column(ForeignKey("threads.id"))
    kind: Mapped[str] = mapped_column(String(30))
    recipient: Mapped[str] = mapped_column(String(320))
    envelope_from: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(255))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20), default=MailStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# A stored body whose message has its verdict (a queued one is still to be read by its job).
INBOUND_RAW_CLEARABLE = text(f"raw IS NOT NULL AND verdict <> '{Verdict.QUEUED}'")


class InboundMessage(Base):
    """A mail the receiver accepted (or refused), stored raw, with its verdict."""

    __tablename__ = "inbound_messages"
    __table_args__ = (Index("ix_inbound_thread_msgid", "thread_id", "message_id"),
                      Index("ix_inbound_verdict", "verdict"),
                      # Bodies retention may clear, by age (store.retention); an accepted reply
                      # enters it once its job gave it a verdict, not on the SMTP path.
                      Index("ix_inbound_raw_by_age", "received_at", sqlite_where=INBOUND_RAW_CLEARABLE,
                            postgresql_where=INBOUND_RAW_CLEARABLE))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[str | None] = mapped_column(ForeignKey("threads.id"))
    message_id: Mapped[str | None] = mapped_column(String(998))
    envelope_from: Mapped[str] = mapped_column(String(320), default="")
    recipients: Mapped[str] = mapped_column(Text, default="")
    from_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    peer: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(10), default="smtp")
    size: Mapped[int] = mapped_column(Integer, default=0)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    verdict: Mapped[str] = mapped_column(String(40), default=Verdict.QUEUED)
    reason: Mapped[str | None] = mapped_column(Text)
    comment_id: Mapped[int | None] = mapped_column(BigInteger)
    comment_url: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# Literal, not bound: a partial index serves a query only if the query's WHERE names its condition
# (SQLite's planner, and PostgreSQL's generic plans of prepared statements, cannot see a parameter's value).
JOB_IS_QUEUED = text(f"status = '{JobStatus.QUEUED}'")
JOB_IS_RUNNING = text(f"status = '{JobStatus.RUNNING}'")


class Job(Base):
    """A durable unit of work; see gateway.queue for the life cycle."""

    __tablename__ = "jobs"
    __table_args__ = (
        # The claim's two lookups (gateway.queue.claim), each read in index order and as small as
        # the queue, however many finished jobs there are: the earliest due queued job, and leases
        # that ran out. They lead with the (constant) status so that a planner without statistics
        # (SQLite is never ANALYZEd) prefers them to ix_jobs_status_finished, which would need a sort.
        Index("ix_jobs_queued_due", "status", "run_after", "id", sqlite_where=JOB_IS_QUEUED,
              postgresql_where=JOB_IS_QUEUED),
        Index("ix_jobs_running_lease", "status", "locked_until", sqlite_where=JOB_IS_RUNNING,
              postgresql_where=JOB_IS_RUNNING),
        # Jobs by status (health counts, the operator's listings) and finished jobs by age (retention).
        Index("ix_jobs_status_finished", "status", "finished_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(50))
    payload: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(100))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InstallationToken(Base):
    """Cached installation access token, encrypted with a key derived from the secret key."""

    __tablename__ = "installation_tokens"
    installation_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    token_ciphertext: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Installation(Base):
    """What we know of an App installation: suspension pauses its jobs.

    Its row is also the lock that serialises GitHub write-slot reservations (store.github.DatabaseWriteLog).
    """

    __tablename__ = "installations"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account: Mapped[str | None] = mapped_column(String(200))
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    suspended_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class GitHubWrite(Base):
    """A write slot handed to a content-creating GitHub request: the pacer's sliding-window log.

    Slots of one installation are strictly increasing, so (installation_id, at) is unique; the
    key's index serves the "n-th most recent slot" lookups. Rows older than the longest window are
    pruned by the next reservation.
    """

    __tablename__ = "github_writes"
    installation_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)


WEBHOOK_HANDLED = text("outcome IS NOT NULL")


class WebhookDelivery(Base):
    """A GitHub webhook delivery, stored before it is handled; its id de-duplicates."""

    __tablename__ = "webhook_deliveries"
    # Handled deliveries by age (store.retention); a delivery enters it when handled, not on receipt.
    __table_args__ = (Index("ix_webhook_handled_by_age", "received_at", sqlite_where=WEBHOOK_HANDLED,
                            postgresql_where=WEBHOOK_HANDLED),)
    delivery_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    event: Mapped[str] = mapped_column(String(50))
    action: Mapped[str | None] = mapped_column(String(50))
    payload: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


