from datetime import timedelta

from gateway.errors import PermanentError, TransientError
from gateway.queue import JobKind, Worker, backoff_seconds, enqueue, replay
from gateway.store import Installation, Job, utcnow


class Clock:
    def __init__(self):
        self.now = utcnow() + timedelta(seconds=1)  # jobs enqueued "now" are due

    def __call__(self):
        return self.now


def add_job(db, kind="k", installation_id=None, max_attempts=3):
    with db.session() as s:
        return enqueue(s, kind, {"n": 1}, installation_id=installation_id, max_attempts=max_attempts).id


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
    assert replay(db, job_id)
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
