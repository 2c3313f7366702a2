"""The database handle's transaction rules, on the configured backend (SQLite file or PostgreSQL)."""
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, insert, select, text

from gateway.store import Database, DriverStatement, WebhookDelivery, utcnow


def _commit_waits_for_disk(session) -> bool:
    if session.get_bind().dialect.name == "sqlite":
        return session.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    return session.execute(text("SHOW synchronous_commit")).scalar() == "on"


def _driver_commit_waits_for_disk(tx) -> bool:
    if tx.dialect.name == "sqlite":
        return tx.cursor.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    tx.cursor.execute("SHOW synchronous_commit")
    return tx.cursor.fetchone()[0] == "on"


def test_commits_wait_for_the_disk_unless_the_sender_keeps_a_copy(db):
    with db.session() as session:
        assert _commit_waits_for_disk(session)
    with db.driver_transaction() as tx:
        assert _driver_commit_waits_for_disk(tx)
    with db.driver_transaction(flush_on_commit=False) as tx:
        assert not _driver_commit_waits_for_disk(tx)
    with db.session() as session:  # the same pooled connection is back to waiting
        assert _commit_waits_for_disk(session)
    with db.driver_transaction() as tx:
        assert _driver_commit_waits_for_disk(tx)


def test_a_writer_waits_for_another_process_writer_and_then_sees_its_row(db):
    """A second Database is a second engine and pool: to SQLite, another process."""
    other = Database(db.url)
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with other.session() as session:
            session.add(WebhookDelivery(delivery_id="first", event="ping", payload="{}", received_at=utcnow()))
            session.flush()
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert holding.wait(10)
        threading.Timer(0.3, release.set).start()
        with db.session() as session:
            ids = set(session.scalars(select(WebhookDelivery.delivery_id)))
            session.add(WebhookDelivery(delivery_id="second", event="ping", payload="{}", received_at=utcnow()))
    finally:
        release.set()
        holder.join(10)
        other.dispose()
    if db.is_sqlite:  # it queued for the lock, so its snapshot began after the other's commit
        assert ids == {"first"}
    with db.read_session() as session:
        assert set(session.scalars(select(WebhookDelivery.delivery_id))) == {"first", "second"}


_INSERT_DELIVERY = DriverStatement(insert(WebhookDelivery), keys=("delivery_id", "event", "action", "payload",
                                                                  "received_at"))
_DELIVERY_EVENT = DriverStatement(select(WebhookDelivery.event).where(WebhookDelivery.delivery_id == bindparam("id")),
                                  keys=("id",))


def test_driver_statements_store_what_the_orm_reads_back_and_roll_back_on_error(db):
    at = datetime(2026, 11, 21, 16, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    with db.driver_transaction() as tx:
        _INSERT_DELIVERY.executemany(tx, [{"delivery_id": f"d{n}", "event": "ping", "action": None, "payload": "{}",
                                           "received_at": at} for n in range(2)])
        assert _DELIVERY_EVENT.execute(tx, {"id": "d1"}).fetchone() == ("ping",)  # its own writes, before commit
    with db.session() as session:
        session.add(WebhookDelivery(delivery_id="orm", event="ping", payload="{}", received_at=at))
    with db.session() as session:
        rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.delivery_id)).all()
        assert [(r.delivery_id, r.received_at) for r in rows] == [("d0", at), ("d1", at), ("orm", at)]
        stored = session.execute(text("SELECT delivery_id, received_at FROM webhook_deliveries")).all()
        assert len({value for _, value in stored}) == 1, stored  # byte for byte what the ORM writes

    with pytest.raises(RuntimeError):
        with db.driver_transaction() as tx:
            _INSERT_DELIVERY.execute(tx, {"delivery_id": "lost", "event": "ping", "action": None, "payload": "{}",
                                          "received_at": at})
            raise RuntimeError("the batch failed")
    with db.driver_transaction() as tx:
        assert _DELIVERY_EVENT.execute(tx, {"id": "lost"}).fetchone() is None


def test_after_commit_runs_once_each_after_a_commit_and_never_after_a_rollback(db, caplog):
    from gateway.store import after_commit

    ran = []
    for transaction in (db.session, db.driver_transaction):
        with transaction() as tx:
            before = list(ran)
            assert after_commit(tx, lambda: ran.append("first"))
            ring = lambda: ran.append("twice registered")  # noqa: E731
            assert after_commit(tx, ring) and not after_commit(tx, ring)
            assert ran == before  # not before the commit
        with pytest.raises(RuntimeError):
            with transaction() as tx:
                after_commit(tx, lambda: ran.append("rolled back"))
                raise RuntimeError("the transaction failed")
        with transaction() as tx:  # a failing callback is logged; the commit stands, the others run
            after_commit(tx, lambda: 1 / 0)
            after_commit(tx, lambda: ran.append("after a failing one"))
    assert ran == ["first", "twice registered", "after a failing one"] * 2
    assert "after-commit callback" in caplog.text
