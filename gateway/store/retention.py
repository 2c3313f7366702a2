"""Forgetting old records, in bounded batches.

Each batch is its own short transaction of at most ``BATCH_ROWS`` rows, found through an index
(models: ix_jobs_status_finished, ix_inbound_raw_by_age, ix_outbound_sent_body_by_age,
ix_webhook_handled_by_age): SQLite's one
writer lock is never held for long, and PostgreSQL never holds many row locks at once. What to
forget and when is the caller's (gateway.flows.retention); these only carry it out.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update

from gateway.domain import JobStatus
from gateway.store.database import Database
from gateway.store.models import (INBOUND_RAW_CLEARABLE, OUTBOUND_BODY_CLEARABLE, WEBHOOK_HANDLED, InboundMessage,
                                  Job, OutboundMail, WebhookDelivery)

BATCH_ROWS = 2000


def clear_raw_mail(db: Database, received_before: datetime) -> int:
    """Drop the stored bodies of inbound mails with a verdict received before then; the rows stay.

    A mail still waiting for its job (verdict queued) keeps its body. Returns how many were cleared.
    """
    oldest = (select(InboundMessage.id).where(INBOUND_RAW_CLEARABLE, InboundMessage.received_at < received_before)
              .order_by(InboundMessage.received_at))
    return _in_batches(db, lambda: update(InboundMessage).values(raw=None), InboundMessage.id, oldest)


def clear_sent_mail(db: Database, sent_before: datetime) -> int:
    """Empty the stored bodies of outbound mails sent before then; the rows (who, when, which
    Message-ID) stay. Pending and dead-lettered mails keep theirs: they may still be sent."""
    oldest = (select(OutboundMail.id).where(OUTBOUND_BODY_CLEARABLE, OutboundMail.sent_at < sent_before)
              .order_by(OutboundMail.sent_at))
    return _in_batches(db, lambda: update(OutboundMail).values(raw=b""), OutboundMail.id, oldest)


def delete_finished_jobs(db: Database, finished_before: datetime) -> int:
    """Delete jobs done before then; dead-lettered, queued and running ones stay."""
    oldest = (select(Job.id).where(Job.status == JobStatus.DONE, Job.finished_at < finished_before)
              .order_by(Job.finished_at))
    return _in_batches(db, lambda: delete(Job), Job.id, oldest)


def delete_handled_deliveries(db: Database, received_before: datetime) -> int:
    """Delete webhook deliveries handled (with an outcome) and received before then."""
    oldest = (select(WebhookDelivery.delivery_id)
              .where(WEBHOOK_HANDLED, WebhookDelivery.received_at < received_before)
              .order_by(WebhookDelivery.received_at))
    return _in_batches(db, lambda: delete(WebhookDelivery), WebhookDelivery.delivery_id, oldest)


def _in_batches(db: Database, statement, key, oldest) -> int:
    """Run ``statement`` on the rows ``oldest`` names, BATCH_ROWS per transaction, until none are left."""
    total = 0
    while True:
        batch = statement().where(key.in_(oldest.limit(BATCH_ROWS)))
        with db.session() as session:
            count = session.execute(batch.execution_options(synchronize_session=False)).rowcount
        total += count
        if count < BATCH_ROWS:
            return total
