"""History pruning: old bodies, finished jobs and handled deliveries go; verdicts and dead letters stay."""
from datetime import timedelta

import pytest
from sqlalchemy import select

from gateway.config import Settings
from gateway.flows import retention
from gateway.flows.context import build_context
from gateway.queue import Worker, enqueue
from gateway.store import InboundMessage, Job, WebhookDelivery, utcnow
from gateway.store import retention as store_retention


class Clock:
    def __init__(self):
        self.now = utcnow() + timedelta(seconds=1)

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def context(db, tmp_path, clock, **settings):
    settings = Settings(database_url=db.url, data_dir=tmp_path, secret_key="s" * 32, reply_domain="r.example",
                        **settings)
    return build_context(settings, db, clock=clock)


def prune_jobs(db):
    with db.session() as s:
        jobs = s.scalars(select(Job).where(Job.kind == retention.JOB).order_by(Job.id))
        return [(j.status, j.run_after) for j in jobs]


def test_old_history_is_forgotten_and_what_matters_is_kept(db, tmp_path, clock, monkeypatch):
    monkeypatch.setattr(store_retention, "BATCH_ROWS", 2)  # several batches each
    ctx = context(db, tmp_path, clock)  # defaults: bodies 30 days, jobs 7, deliveries 7
    now = clock.now
    long_ago, lately = now - timedelta(days=40), now - timedelta(days=2)
    with db.session() as s:
        for n, (verdict, at) in enumerate([("posted", long_ago)] * 3 + [("rejected-not-participant", long_ago),
                                           ("queued", long_ago), ("posted", lately)]):
            s.add(InboundMessage(message_id=f"<m{n}@example.com>", raw=b"mail body %d" % n, verdict=verdict,
                                 received_at=at))
        for n in range(5):
            s.add(Job(kind="deliver_mail", status="done", finished_at=long_ago, run_after=long_ago))
        s.add(Job(kind="deliver_mail", status="done", finished_at=lately, run_after=lately))
        s.add(Job(kind="deliver_mail", status="dead", finished_at=long_ago, run_after=long_ago, last_error="gone"))
        s.add(Job(kind="deliver_mail", status="queued", run_after=long_ago + timedelta(days=100)))
        for n in range(3):
            s.add(WebhookDelivery(delivery_id=f"old-{n}", event="ping", payload="{}", outcome="relayed",
                                  received_at=long_ago))
        s.add(WebhookDelivery(delivery_id="old-unhandled", event="ping", payload="{}", received_at=long_ago))
        s.add(WebhookDelivery(delivery_id="recent", event="ping", payload="{}", outcome="relayed", received_at=lately))

    retention.keep_pruning(ctx)
    assert Worker(db, retention.job_kinds(ctx), clock=clock).run_until_idle() == 1

    with db.session() as s:
        mails = [(m.verdict, m.raw) for m in s.scalars(select(InboundMessage).order_by(InboundMessage.id))]
        assert mails == [("posted", None)] * 3 + [("rejected-not-participant", None), ("queued", b"mail body 4"),
                                                  ("posted", b"mail body 5")]
        jobs = [(j.status, j.finished_at) for j in s.scalars(select(Job).where(Job.kind == "deliver_mail"))]
        assert sorted(jobs, key=str) == sorted([("done", lately), ("dead", long_ago), ("queued", None)], key=str)
        assert sorted(s.scalars(select(WebhookDelivery.delivery_id))) == ["old-unhandled", "recent"]
    (done, _), queued = prune_jobs(db)
    assert (done, queued) == ("done", ("queued", now + retention.EVERY))  # and it runs again in an hour


def test_one_prune_chain_however_many_processes_start_one(db, tmp_path, clock):
    ctx = context(db, tmp_path, clock)
    retention.keep_pruning(ctx)
    retention.keep_pruning(ctx)  # a second worker process starting
    assert [status for status, _ in prune_jobs(db)] == ["queued"]

    # Two processes that raced at start each queued one: the first to run leaves the chain to the other.
    with db.session() as s:
        enqueue(s, retention.JOB, {})
    worker = Worker(db, retention.job_kinds(ctx), clock=clock)
    assert worker.run_until_idle() == 2
    assert [status for status, _ in prune_jobs(db)] == ["done", "done", "queued"]

    # Two links running at once (two workers): the older continues the chain, whichever ends first.
    for first_to_finish in ("older", "newer"):
        clock.now += retention.EVERY
        with db.session() as s:
            enqueue(s, retention.JOB, {})
        older, newer = sorted((Worker(db, [], clock=clock).claim(), Worker(db, [], clock=clock).claim()),
                              key=lambda job: job.id)
        for job in ((older, newer) if first_to_finish == "older" else (newer, older)):
            retention.prune_history(ctx, job)
        with db.session() as s:
            queued = s.scalars(select(Job).where(Job.kind == retention.JOB, Job.status == "queued")).all()
            assert len(queued) == 1, first_to_finish
            for job in (older, newer):
                s.get(Job, job.id).status = "done"


def test_nothing_is_pruned_or_scheduled_when_everything_is_kept(db, tmp_path, clock):
    ctx = context(db, tmp_path, clock, retain_raw_mail_days=None, retain_finished_jobs_days=None,
                  retain_webhook_deliveries_days=None)
    retention.keep_pruning(ctx)
    assert prune_jobs(db) == []
    with db.session() as s:
        s.add(Job(kind="deliver_mail", status="done", finished_at=clock.now - timedelta(days=400)))
        job_id = enqueue(s, retention.JOB, {})  # queued by a process with other settings
    assert Worker(db, retention.job_kinds(ctx), clock=clock).run_until_idle() == 1
    assert [status for status, _ in prune_jobs(db)] == ["done"]  # the chain ends
    with db.session() as s:
        assert s.scalars(select(Job.kind).where(Job.id != job_id)).all() == ["deliver_mail"]


def test_two_links_that_look_at_once_leave_one_successor(db, tmp_path, clock):
    """PostgreSQL: neither sees the other's successor before it commits; only the older link queues one."""
    from gateway.queue import enqueue_once

    if db.is_sqlite:
        pytest.skip("SQLite runs one writing transaction at a time: the links look one after the other")
    with db.session() as s:
        enqueue(s, retention.JOB, {})
        enqueue(s, retention.JOB, {})
    older, newer = sorted((Worker(db, [], clock=clock).claim(), Worker(db, [], clock=clock).claim()),
                          key=lambda job: job.id)
    with db.session() as first, db.session() as second:  # both look before either commits
        queued = [enqueue_once(first, retention.JOB, {}, successor_of=newer.id),
                  enqueue_once(second, retention.JOB, {}, successor_of=older.id)]
    assert queued[0] is None and queued[1] is not None
    assert [status for status, _ in prune_jobs(db)].count("queued") == 1


def test_bodies_of_mail_sent_long_ago_are_emptied_and_unsent_mail_keeps_its_body(db, tmp_path, clock):
    from gateway.store import OutboundMail

    ctx = context(db, tmp_path, clock)
    now = clock.now
    long_ago, lately = now - timedelta(days=40), now - timedelta(days=2)
    with db.session() as s:
        for n, (status, sent_at) in enumerate([("sent", long_ago), ("sent", lately), ("pending", None),
                                               ("dead", None)]):
            s.add(OutboundMail(kind="receipt", recipient="ann@example.com", envelope_from="gw@r.example",
                               message_id=f"<o{n}@r.example>", raw=b"body %d" % n, status=status, sent_at=sent_at,
                               created_at=long_ago))

    retention.keep_pruning(ctx)
    assert Worker(db, retention.job_kinds(ctx), clock=clock).run_until_idle() == 1

    with db.session() as s:
        kept = [(m.status, m.message_id, m.raw) for m in s.scalars(select(OutboundMail).order_by(OutboundMail.id))]
    assert kept == [("sent", "<o0@r.example>", b""), ("sent", "<o1@r.example>", b"body 1"),
                    ("pending", "<o2@r.example>", b"body 2"), ("dead", "<o3@r.example>", b"body 3")]
