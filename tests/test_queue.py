import os
from datetime import timedelta

from sqlalchemy import select

from gateway.errors import PermanentError, TransientError
from gateway.queue import JobKind, Worker, backoff_seconds, enqueue, retry_dead
from gateway.store import Installation, Job, utcnow


class Clock:
    def __init__(self):
        self.now = utcnow() + timedelta(seconds=1)  # jobs enqueued "now" are due

    def __call__(self):
        return self.now


def add_job(db, kind="k", installation_id=None, max_attempts=3):
    with db.session() as s:
        return enqueue(s, kind, {"n": 1}, installation_id=installation_id, max_attempts=max_attempts)


def job_row(db, job_id):
    with db.session() as s:
        job = s.get(Job, job_id)
        return job.status, job.attempts, job.last_error, job.run_after


def test_done_job_runs_once(db):
    seen = []
    job_id = add_job(db)
    worker = Worker(db, [JobKind("k", lambda job: seen.append(job.payload))])
    assert worker.run_until_idle() == 1
    assert seen == [{"n": 1}]
    assert job_row(db, job_id)[0] == "done"


def test_transient_failure_backs_off_honours_retry_after_then_dead_letters(db):
    clock = Clock()
    dead = []

    def run(job):
        raise TransientError("GitHub said wait", retry_after=120)

    job_id = add_job(db, max_attempts=2)
    worker = Worker(db, [JobKind("k", run, on_dead=lambda job, reason: dead.append(reason))], clock=clock)
    assert worker.run_once()
    status, attempts, error, run_after = job_row(db, job_id)
    assert (status, attempts, error) == ("queued", 1, "GitHub said wait")
    assert run_after == clock.now + timedelta(seconds=120)
    assert not worker.run_once()  # not due yet
    clock.now += timedelta(seconds=121)
    assert worker.run_once()
    assert job_row(db, job_id)[:2] == ("dead", 2)
    assert dead == ["gave up after 2 attempts: GitHub said wait"]
    assert retry_dead(db, job_id)
    assert job_row(db, job_id)[:2] == ("queued", 0)


def test_permanent_failure_dead_letters_at_once(db):
    def run(job):
        raise PermanentError("App not installed on octo/widgets")

    job_id = add_job(db, max_attempts=5)
    Worker(db, [JobKind("k", run)]).run_until_idle()
    status, attempts, error, _ = job_row(db, job_id)
    assert (status, attempts, error) == ("dead", 1, "App not installed on octo/widgets")


def test_unexpected_exception_is_retried_with_jittered_backoff(db):
    clock = Clock()
    job_id = add_job(db)
    Worker(db, [JobKind("k", lambda job: 1 / 0)], clock=clock, rng=lambda: 0.5).run_once()
    status, attempts, error, run_after = job_row(db, job_id)
    assert status == "queued" and "ZeroDivisionError" in error
    assert run_after == clock.now + timedelta(seconds=1.0)


def test_backoff_grows_and_is_capped():
    assert backoff_seconds(1, rng=lambda: 1.0) == 2.0
    assert backoff_seconds(5, rng=lambda: 1.0) == 32.0
    assert backoff_seconds(30, rng=lambda: 1.0, cap=600) == 600


def test_expired_lease_lets_another_worker_finish_a_crashed_job(db):
    clock = Clock()
    job_id = add_job(db)
    crashed = Worker(db, [], worker_id="crashed", clock=clock)
    assert crashed.claim() is not None  # claimed, then the process "died"
    finished = []
    other = Worker(db, [JobKind("k", lambda job: finished.append(job.id))], worker_id="other", clock=clock)
    assert not other.run_once()  # the lease still holds
    clock.now += timedelta(minutes=6)
    assert other.run_once()
    assert finished == [job_id] and job_row(db, job_id)[:2] == ("done", 2)


def test_jobs_of_a_suspended_installation_wait(db):
    job_id = add_job(db, installation_id=42)
    with db.session() as s:
        s.add(Installation(id=42, suspended_at=utcnow(), suspended_reason="suspended by owner"))
    worker = Worker(db, [JobKind("k", lambda job: None)])
    assert not worker.run_once()
    with db.session() as s:
        s.get(Installation, 42).suspended_at = None
    assert worker.run_once() and job_row(db, job_id)[0] == "done"


def test_a_job_that_finds_its_installation_suspended_waits_without_spending_an_attempt(db):
    from gateway.queue import raise_if_suspended

    with db.session() as s:
        s.add(Installation(id=7, suspended_at=utcnow(), suspended_reason="the App was uninstalled"))
    job_id = add_job(db)  # enqueued before anyone knew its installation
    ran = []

    def run(job):
        raise_if_suspended(db, job.id, 7)
        ran.append(job.id)

    worker = Worker(db, [JobKind("k", run)])
    assert worker.run_until_idle() == 1  # claimed once, then left alone
    status, attempts, error, _ = job_row(db, job_id)
    assert (status, attempts, error) == ("queued", 0, "paused: the App was uninstalled")
    with db.session() as s:
        s.get(Installation, 7).suspended_at = None
    assert worker.run_until_idle() == 1 and ran == [job_id] and job_row(db, job_id)[0] == "done"


def test_a_slow_job_keeps_its_lease_by_heartbeat_and_is_not_run_twice(db):
    import threading

    job_id = add_job(db)
    release, started, runs = threading.Event(), threading.Event(), []

    def slow(job):
        runs.append(job.id)
        started.set()
        release.wait(10)

    slow_worker = Worker(db, [JobKind("k", slow)], worker_id="slow", lease=timedelta(seconds=0.6))
    thread = threading.Thread(target=slow_worker.run_once)
    thread.start()
    assert started.wait(10)
    other = Worker(db, [JobKind("k", lambda job: runs.append(("other", job.id)))], worker_id="other")
    for _ in range(8):  # 1.6 s: well past the 0.6 s lease, which the heartbeat keeps renewing
        threading.Event().wait(0.2)
        assert not other.run_once()
    release.set()
    thread.join(10)
    assert runs == [job_id]
    assert job_row(db, job_id)[:2] == ("done", 1)


def test_a_worker_that_lost_its_lease_does_not_record_an_outcome(db):
    clock = Clock()
    job_id = add_job(db)
    taken_over = []

    def run_slowly(job):
        # While this attempt ran, its lease ran out (no heartbeat: the process was frozen)
        # and another worker took the job over and finished it.
        clock.now += timedelta(minutes=2)
        other = Worker(db, [JobKind("k", lambda j: taken_over.append(j.id))], worker_id="other", clock=clock)
        assert other.run_once()
        raise TransientError("GitHub answered 502")

    frozen = Worker(db, [JobKind("k", run_slowly)], worker_id="frozen", clock=clock,
                    lease=timedelta(seconds=60))
    frozen._renew_interval = None
    assert frozen.run_once()
    assert taken_over == [job_id]
    status, attempts, error, _ = job_row(db, job_id)
    assert (status, attempts, error) == ("done", 2, None)  # not re-queued by the stale worker


def test_an_idle_worker_wakes_when_a_job_is_committed(db):
    import threading

    from gateway.queue import bell_for

    done = threading.Event()
    worker = Worker(db, [JobKind("k", lambda job: done.set())], poll_interval=60, bell=bell_for(db))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,))
    thread.start()
    try:
        threading.Event().wait(0.3)  # the worker found nothing and sleeps for up to a minute
        add_job(db)
        assert done.wait(10), "the worker slept through the commit"
    finally:
        stop.set()
        bell_for(db).ring()
        thread.join(10)


def test_a_rolled_back_enqueue_does_not_ring(db):
    from gateway.queue import bell_for

    bell = bell_for(db)
    before = bell.generation
    try:
        with db.session() as s:
            enqueue(s, "k", {})
            raise RuntimeError("the rest of the transaction failed")
    except RuntimeError:
        pass
    assert bell.generation == before
    add_job(db)
    assert bell.generation == before + 1


def test_postgres_notify_wakes_a_worker_in_another_process(db):
    """A second Database on the same URL stands in for another process: its commit NOTIFYs."""

    import pytest

    from gateway.queue import JobBell, PostgresListener
    from gateway.store import Database

    if db.is_sqlite:
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite workers in other processes poll")
    bell = JobBell()
    first = bell.generation  # before the listener starts: it may ring before this thread looks again
    listener = PostgresListener(db.engine.url.render_as_string(hide_password=False), bell).start()
    try:
        assert bell.wait(first, 10)  # rung once on LISTEN
        listening = bell.generation
        other = Database(db.url)
        try:
            with other.session() as s:
                enqueue(s, "k", {})
        finally:
            other.dispose()
        assert bell.wait(listening, 10), "no NOTIFY arrived"
    finally:
        listener.stop()


def test_a_deferred_job_waits_without_spending_attempts(db):
    from gateway.errors import Deferred

    clock = Clock()
    job_id = add_job(db, max_attempts=2)
    runs = []

    def run(job):
        runs.append(job.attempts)
        if len(runs) < 5:
            raise Deferred("no write slot for 30 s", retry_after=30)

    worker = Worker(db, [JobKind("k", run)], clock=clock)
    for _ in range(4):
        assert worker.run_once()
        status, attempts, error, run_after = job_row(db, job_id)
        assert (status, attempts, error) == ("queued", 0, "no write slot for 30 s")
        assert run_after == clock.now + timedelta(seconds=30)
        assert not worker.run_once()
        clock.now += timedelta(seconds=31)
    assert worker.run_once()
    assert runs == [1, 1, 1, 1, 1]  # every run was a first attempt: nothing was ever tried
    assert job_row(db, job_id)[:2] == ("done", 1)


def test_jobs_added_in_a_driver_transaction_ring_once_when_it_commits(db):
    from gateway.queue import bell_for, enqueue_many

    bell = bell_for(db)
    before = bell.generation
    with db.driver_transaction() as tx:
        enqueue_many(tx, "k", [({"n": 1}, None), ({"n": 2}, 42)])
        assert enqueue(tx, "k", {"n": 3}, max_attempts=2) > 0
        assert bell.generation == before  # not before the commit
    assert bell.generation == before + 1
    try:
        with db.driver_transaction() as tx:
            enqueue_many(tx, "k", [({"n": 4}, None)])
            raise RuntimeError("the rest of the transaction failed")
    except RuntimeError:
        pass
    assert bell.generation == before + 1
    with db.session() as s:
        rows = s.scalars(select(Job).order_by(Job.id)).all()
        assert [(j.payload, j.installation_id, j.status, j.max_attempts) for j in rows] == [
            ('{"n": 1}', None, "queued", 8), ('{"n": 2}', 42, "queued", 8), ('{"n": 3}', None, "queued", 2)]


def test_bells_and_listeners_are_kept_per_engine_never_by_url(db):
    from sqlalchemy.engine import Engine

    from gateway.queue import JobBell, PostgresListener, bell_for
    from gateway.queue import wakeup

    assert bell_for(db) is bell_for(db.engine)
    assert all(isinstance(key, Engine) for key in [*wakeup._bells, *wakeup._listeners])
    listener = PostgresListener("postgresql+psycopg://gateway:s3cret-pw@db.example/gateway", JobBell())
    assert "s3cret-pw" not in repr(listener)


def test_workers_of_one_process_have_their_own_ids_and_respect_each_others_leases(gateway):
    from gateway.runner import WorkerThreads

    workers = WorkerThreads(gateway.ctx, threads=3).workers
    ids = [worker.worker_id for worker in workers]
    assert len(set(ids)) == 3, ids
    assert all(worker_id.split(":")[1] == str(os.getpid()) for worker_id in ids)  # host:pid:suffix

    db, clock = gateway.ctx.db, Clock()
    job_id = add_job(db)
    taken_over = []

    def run_slowly(job):
        # This thread's lease ran out while it ran (no heartbeat: frozen); a sibling thread took it over.
        clock.now += timedelta(minutes=2)
        sibling = Worker(db, [JobKind("k", lambda j: taken_over.append(j.id))], clock=clock)
        assert sibling.worker_id != frozen.worker_id
        assert sibling.run_once()
        raise TransientError("GitHub answered 502")

    frozen = Worker(db, [JobKind("k", run_slowly)], clock=clock, lease=timedelta(seconds=60))
    frozen._renew_interval = None
    assert frozen.run_once()
    assert taken_over == [job_id]
    assert job_row(db, job_id)[:3] == ("done", 2, None)  # the frozen worker recorded nothing


def test_each_claim_lookup_reads_its_partial_index_in_order(db):
    """The claim must not sort (or even read) all due jobs: its cost would grow with the queue."""
    from sqlalchemy import text

    from gateway.queue.claim import due_jobs, expired_leases

    for query, index in ((expired_leases(utcnow()), "ix_jobs_running_lease"),
                         (due_jobs(utcnow()), "ix_jobs_queued_due")):
        with db.session() as s:
            statement = query.limit(1).with_for_update(skip_locked=True).compile(
                s.get_bind(), compile_kwargs={"literal_binds": True})
            if db.is_sqlite:
                plan = "\n".join(row[-1] for row in s.execute(text(f"EXPLAIN QUERY PLAN {statement}")))
                assert f"USING INDEX {index}" in plan and "TEMP B-TREE" not in plan, plan
            else:
                s.execute(text("SET LOCAL enable_seqscan = off"))  # an empty table is otherwise read whole
                plan = "\n".join(row[0] for row in s.execute(text(f"EXPLAIN {statement}")))
                assert f"Index Scan using {index}" in plan and "Sort" not in plan, plan
