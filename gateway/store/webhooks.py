"""What a GitHub webhook delivery writes while GitHub waits for the answer.

GitHub keeps every delivery and redelivers it on request (the App's Recent Deliveries, or its
API), so this transaction commits without waiting for the disk: it survives a crash of any gateway
process, and only a power loss can take the newest deliveries, which GitHub still has. Its
statements run on the driver's cursor, as the reply door's do (``gateway.store.replies``).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from gateway.store.database import Database, DriverTransaction, insert_or_ignore
from gateway.store.models import WebhookDelivery


@dataclass(frozen=True)
class ReceivedDelivery:
    """One ``webhook_deliveries`` row: the body as GitHub sent it, handled later by a job."""

    delivery_id: str
    event: str
    action: str | None
    payload: str
    received_at: datetime


class DeliveryLog:
    """The delivery's transaction; ``transaction`` is where its handling job is queued."""

    def __init__(self, transaction: DriverTransaction):
        self.transaction = transaction

    def add(self, delivery: ReceivedDelivery) -> bool:
        """True the first time this delivery id is seen; False for a redelivery (no second effect),
        also when the same delivery races in twice."""
        return insert_or_ignore(self.transaction, WebhookDelivery, vars(delivery), ("delivery_id",))


@contextmanager
def delivery_log(db: Database) -> Iterator[DeliveryLog]:
    with db.driver_transaction(flush_on_commit=False) as transaction:
        yield DeliveryLog(transaction)
