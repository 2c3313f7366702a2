"""The database handle's transaction rules, on the configured backend (SQLite file or PostgreSQL)."""
import threading

from sqlalchemy import select, text

from gateway.store import Database, WebhookDelivery, utcnow


def _commit_waits_for_disk(session) -> bool:
    if session.get_bind().dialect.name == "sqlite":
        return session.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    return session.execute(text("SHOW synchronous_commit")).scalar() == "on"


def test_commits_wait_for_the_disk_unless_the_sender_keeps_a_copy(db):
    with db.session() as session:
        assert _commit_waits_for_disk(session)
    with db.session(flush_on_commit=False) as session:
        assert not _commit_waits_for_disk(session)
    with db.session() as session:  # the same pooled connection is back to waiting
        assert _commit_waits_for_disk(session)


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
