"""The GitHub adapter against the emulator on a real socket, with a real database."""
from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from sqlalchemy import func, select

from gateway.errors import Deferred, PermanentError, TransientError
from gateway.store import (Database, DatabaseTokenCache, DatabaseWriteLog, GitHubWrite, Installation,
                           InstallationToken)
from github_app.auth import InstallationTokens, app_jwt
from github_app.client import GitHubApp, MergeRefused
from github_app.pacing import WritePacer
from github_app.webhooks import sign, verify_signature
from tests.support.github import (APP_ID, INSTALLATION_ID, REPO, SECRETS, SettableClock,
                                  app_key_pair, count_requests, emulator, seeded_emulator)


@pytest.fixture
def clock():
    return SettableClock()


@pytest.fixture
def emu(clock):
    with seeded_emulator(clock) as emu:
        yield emu


def make_tokens(db, emu, clock, **options) -> InstallationTokens:
    private, _ = app_key_pair()
    return InstallationTokens(DatabaseTokenCache(db, SECRETS, clock=clock.now), app_id=APP_ID,
                              private_key=private, api_url=emu.url, clock=clock.now, **options)


def make_app(db, emu, clock, pacer=None) -> GitHubApp:
    return GitHubApp(make_tokens(db, emu, clock), api_url=emu.url, web_url=emu.url, pacer=pacer)


@pytest.fixture
def tokens(db, emu, clock):
    return make_tokens(db, emu, clock)


@pytest.fixture
def app(db, emu, clock):
    return make_app(db, emu, clock)


def token_requests(emu) -> int:
    return count_requests(emu, "POST", "/access_tokens")


# -- App JWT and installation tokens ------------------------------------------------------------

def test_app_jwt_claims():
    private, public = app_key_pair()
    now = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
    token = app_jwt(APP_ID, private, now)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, public, algorithms=["RS256"], options={"verify_exp": False,
                                                                      "verify_iat": False})
    assert claims["iss"] == APP_ID
    assert claims["iat"] == int(now.timestamp()) - 60
    assert 0 < claims["exp"] - claims["iat"] <= 600
    assert claims["exp"] > now.timestamp()


def test_token_fetched_once_then_cached_encrypted(db, emu, tokens):
    first = tokens.get(INSTALLATION_ID)
    second = tokens.get(INSTALLATION_ID)
    assert first == second and first.startswith("ghs_")
    assert token_requests(emu) == 1
    # A second process (new object, same database) is served from the cache too.
    assert make_tokens(db, emu, SettableClock()).get(INSTALLATION_ID) == first
    assert token_requests(emu) == 1
    with db.session() as session:
        row = session.get(InstallationToken, INSTALLATION_ID)
        assert first not in row.token_ciphertext
        assert row.expires_at > datetime.now(timezone.utc) + timedelta(minutes=50)


def test_token_refreshed_within_five_minutes_of_expiry(emu, tokens, clock):
    first = tokens.get(INSTALLATION_ID)
    clock.advance(timedelta(minutes=54))
    assert tokens.get(INSTALLATION_ID) == first
    assert token_requests(emu) == 1
    clock.advance(timedelta(minutes=2))   # 4 minutes left: inside the margin
    second = tokens.get(INSTALLATION_ID)
    assert second != first
    assert token_requests(emu) == 2


def test_invalidate_drops_cached_row(db, emu, tokens):
    tokens.get(INSTALLATION_ID)
    tokens.invalidate(INSTALLATION_ID)
    with db.session() as session:
        assert session.get(InstallationToken, INSTALLATION_ID) is None
    tokens.get(INSTALLATION_ID)
    assert token_requests(emu) == 2


def test_token_cache_reads_rows_under_a_previous_key_and_drops_unknown_keys(db):
    expires = datetime(2025, 3, 1, 13, 0, tzinfo=timezone.utc)
    DatabaseTokenCache(db, ["old-key-0123456789abcdef0123456789"]).put(INSTALLATION_ID, "ghs_abc", expires)
    rotated = DatabaseTokenCache(db, ["new-key-0123456789abcdef0123456789", "old-key-0123456789abcdef0123456789"])
    assert rotated.get(INSTALLATION_ID) == ("ghs_abc", expires)
    assert DatabaseTokenCache(db, ["new-key-0123456789abcdef0123456789"]).get(INSTALLATION_ID) is None
    rotated.put(INSTALLATION_ID, "ghs_def", expires)       # replaces the row
    assert rotated.get(INSTALLATION_ID) == ("ghs_def", expires)
    rotated.drop(INSTALLATION_ID)
    assert rotated.get(INSTALLATION_ID) is None


def test_unknown_installation_is_permanent(tokens):
    with pytest.raises(PermanentError, match="installation 999 not found"):
        tokens.get(999)


def test_expired_token_is_refetched_once_and_call_succeeds(emu, app):
    assert app.default_branch(INSTALLATION_ID, REPO) == "main"
    emu.expire_all_tokens()
    assert app.branch_sha(INSTALLATION_ID, REPO, "feature") == emu.branch_sha(REPO, "feature")
    assert token_requests(emu) == 2


def test_a_thread_keeps_its_client_and_connection_until_the_token_changes(emu, app):
    assert app.default_branch(INSTALLATION_ID, REPO) == "main"
    first = app._client(app.tokens.get(INSTALLATION_ID))
    assert app.branch_sha(INSTALLATION_ID, REPO, "feature") == emu.branch_sha(REPO, "feature")
    assert app._client(app.tokens.get(INSTALLATION_ID)) is first        # reused: keep-alive to GitHub
    emu.expire_all_tokens()
    assert app.default_branch(INSTALLATION_ID, REPO) == "main"           # 401, fresh token, new client
    assert app._client(app.tokens.get(INSTALLATION_ID)) is not first
    other_thread = []
    thread = threading.Thread(target=lambda: other_thread.append(app._client(app.tokens.get(INSTALLATION_ID))))
    thread.start()
    thread.join()
    assert other_thread[0] is not app._client(app.tokens.get(INSTALLATION_ID))   # PyGithub is not thread-safe


def test_a_fresh_token_refused_again_is_retried_later_not_dead_lettered(emu, app):
    emu.faults.inject("expire_token", path_regex=r"^/repos/", times=2)
    with pytest.raises(TransientError, match="refused a freshly issued installation token") as raised:
        app.default_branch(INSTALLATION_ID, REPO)
    assert "ghs_" not in str(raised.value)
    assert token_requests(emu) == 2
    assert app.default_branch(INSTALLATION_ID, REPO) == "main"  # the next attempt goes through


def test_installation_looked_up_from_repo(tokens):
    assert tokens.installation_for_repo(REPO) == INSTALLATION_ID


def test_not_installed_is_permanent(emu, tokens):
    emu.add_repo("octo/gadgets")
    with pytest.raises(PermanentError) as raised:
        tokens.installation_for_repo("octo/gadgets")
    assert str(raised.value) == ("The GitHub App is not installed on octo/gadgets; install it or "
                                 "pass installation_id")


def test_check_and_slug(tokens):
    tokens.check()
    assert tokens.app_slug() == "gateway-sandbox"


def test_check_with_wrong_key_is_permanent(db, emu, clock):
    other = InstallationTokens(DatabaseTokenCache(db, SECRETS), app_id="9999",
                               private_key=app_key_pair()[0], api_url=emu.url, clock=clock.now)
    with pytest.raises(PermanentError, match="GITHUB_APP_ID"):
        other.check()


def test_check_when_github_is_down_is_transient(emu, tokens):
    emu.faults.inject("5xx", path_regex="^/app$")
    with pytest.raises(TransientError):
        tokens.check()


# -- pull requests ------------------------------------------------------------------------------

def test_open_or_reuse_creates_then_reuses(emu, app):
    info, created = app.open_or_reuse_pull_request(INSTALLATION_ID, REPO, head="feature",
                                                   base="main", title="Add widget", body="Hi")
    assert created and info.state == "open" and not info.merged and info.title == "Add widget"
    assert info.head_sha == emu.branch_sha(REPO, "feature")
    assert info.url.endswith(f"/{REPO}/pull/{info.number}")
    again, created_again = app.open_or_reuse_pull_request(INSTALLATION_ID, REPO, head="feature",
                                                          base="main", title="Other", body="")
    assert (again.number, created_again) == (info.number, False)
    assert len(emu.pulls(REPO)) == 1
    assert app.get_pull_request(INSTALLATION_ID, REPO, info.number) == info


def test_open_reuses_after_losing_the_create_race(emu, app):
    # Someone opens the same PR between our list and our create: GitHub answers 422.
    fault = emu.faults.inject("latency", path_regex=r"/pulls$", method="POST", seconds=0.5)

    def racer():
        deadline = time.monotonic() + 10
        while fault.hits == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        emu.add_pull_as(REPO, "octo", head="feature", base="main", title="Theirs")

    thread = threading.Thread(target=racer)
    thread.start()
    info, created = app.open_or_reuse_pull_request(INSTALLATION_ID, REPO, head="feature",
                                                   base="main", title="Ours", body="")
    thread.join()
    assert (info.title, created) == ("Theirs", False)
    assert len(emu.pulls(REPO)) == 1


def test_open_with_missing_branch_is_permanent(app):
    with pytest.raises(PermanentError) as raised:
        app.open_or_reuse_pull_request(INSTALLATION_ID, REPO, head="nope", base="main",
                                       title="t", body="b")
    assert str(raised.value) == f"Branch 'nope' not found in {REPO}"


def test_branch_sha_of_missing_branch_is_permanent(app):
    with pytest.raises(PermanentError) as raised:
        app.branch_sha(INSTALLATION_ID, REPO, "nope")
    assert str(raised.value) == f"Branch 'nope' not found in {REPO}"


def test_read_only_permission_is_permanent(db, clock):
    with seeded_emulator(clock, permissions={"metadata": "read", "contents": "read",
                                             "pull_requests": "read"}) as emu:
        app = make_app(db, emu, clock)
        with pytest.raises(PermanentError) as raised:
            app.open_or_reuse_pull_request(INSTALLATION_ID, REPO, head="feature", base="main",
                                           title="t", body="b")
    assert str(raised.value) == f"Permission denied: the App needs 'Pull requests: write' on {REPO}"


def test_server_error_is_transient(emu, app):
    emu.faults.inject("5xx", path_regex=r"^/repos/octo/widgets$", status=503)
    with pytest.raises(TransientError) as raised:
        app.default_branch(INSTALLATION_ID, REPO)
    assert "503" in str(raised.value) and raised.value.retry_after is None


def test_primary_rate_limit_is_transient_with_reset(emu, app):
    emu.faults.inject("rate_limit_primary", path_regex=r"^/repos/", reset_in=120)
    with pytest.raises(TransientError, match="rate limit") as raised:
        app.default_branch(INSTALLATION_ID, REPO)
    assert 100 <= raised.value.retry_after <= 125


def test_secondary_rate_limit_is_transient_with_retry_after(emu, app):
    emu.faults.inject("rate_limit_secondary", path_regex=r"/pulls$", method="POST",
                      retry_after=42)
    with pytest.raises(TransientError) as raised:
        app.open_or_reuse_pull_request(INSTALLATION_ID, REPO, head="feature", base="main",
                                       title="t", body="b")
    assert raised.value.retry_after == 42
    assert emu.pulls(REPO) == []


def test_secondary_rate_limit_as_429(emu, app):
    emu.faults.inject("rate_limit_secondary", path_regex=r"^/repos/", status=429, retry_after=7)
    with pytest.raises(TransientError) as raised:
        app.default_branch(INSTALLATION_ID, REPO)
    assert raised.value.retry_after == 7


def test_timeout_is_transient(db, emu, clock):
    app = GitHubApp(make_tokens(db, emu, clock), api_url=emu.url, web_url=emu.url, timeout=1)
    app.tokens.get(INSTALLATION_ID)
    emu.faults.inject("latency", path_regex=r"^/repos/", seconds=2.5)
    with pytest.raises(TransientError, match="in time"):
        app.default_branch(INSTALLATION_ID, REPO)


def test_unreachable_github_is_transient(db, clock):
    with emulator(clock) as emu:
        url = emu.url
    tokens = InstallationTokens(DatabaseTokenCache(db, SECRETS), app_id=APP_ID,
                                private_key=app_key_pair()[0], api_url=url, clock=clock.now)
    with pytest.raises(TransientError, match="Could not reach GitHub"):
        tokens.get(INSTALLATION_ID)


def test_missing_pull_request_is_permanent(app):
    with pytest.raises(PermanentError, match=r"Pull request #99 not found in octo/widgets"):
        app.get_pull_request(INSTALLATION_ID, REPO, 99)


# -- comments -----------------------------------------------------------------------------------

def test_post_comment_is_idempotent_by_marker(emu, app):
    pr, _ = app.open_or_reuse_pull_request(INSTALLATION_ID, REPO, head="feature", base="main",
                                           title="t", body="b")
    emu.add_comment_as(REPO, pr.number, "reviewer", "Looks good")
    marker = "<!-- gateway:reply:1 -->"
    first = app.post_comment(INSTALLATION_ID, REPO, pr.number, "Thanks!", marker)
    second = app.post_comment(INSTALLATION_ID, REPO, pr.number, "Thanks!", marker)
    assert second == first
    assert first.body.startswith("Thanks!") and marker in first.body
    assert first.author == "gateway-sandbox[bot]"
    bodies = [c["body"] for c in emu.comments(REPO, pr.number)]
    assert sum(marker in b for b in bodies) == 1
    other = app.post_comment(INSTALLATION_ID, REPO, pr.number, "More", "<!-- gateway:reply:2 -->")
    assert other.id != first.id and len(emu.comments(REPO, pr.number)) == 3


# -- merge --------------------------------------------------------------------------------------

def open_pr(app) -> int:
    pr, _ = app.open_or_reuse_pull_request(INSTALLATION_ID, REPO, head="feature", base="main",
                                           title="Add widget", body="b")
    return pr.number


def test_merge_succeeds(emu, app):
    number = open_pr(app)
    head = app.get_pull_request(INSTALLATION_ID, REPO, number).head_sha
    result = app.merge(INSTALLATION_ID, REPO, number, expected_head_sha=head)
    assert result.merged and result.sha == emu.branch_sha(REPO, "main")
    after = app.get_pull_request(INSTALLATION_ID, REPO, number)
    assert after.merged and after.state == "closed"
    # A retry after a crash finds the merge done instead of failing.
    assert app.merge(INSTALLATION_ID, REPO, number).merged


def test_merge_with_moved_head_is_refused(emu, app):
    number = open_pr(app)
    with pytest.raises(MergeRefused) as raised:
        app.merge(INSTALLATION_ID, REPO, number, expected_head_sha="0" * 40)
    assert raised.value.reason == "Head branch was modified. Review and try the merge again."
    assert raised.value.reason in str(raised.value)
    assert not app.get_pull_request(INSTALLATION_ID, REPO, number).merged


def test_merge_of_closed_pr_is_refused(emu, app):
    number = open_pr(app)
    emu.close_pull(REPO, number)
    with pytest.raises(MergeRefused) as raised:
        app.merge(INSTALLATION_ID, REPO, number)
    assert "not mergeable" in raised.value.reason


def test_merge_rejects_unknown_method(app):
    with pytest.raises(ValueError):
        app.merge(INSTALLATION_ID, REPO, 1, method="octopus")


# -- pacing -------------------------------------------------------------------------------------

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
SCALED = ((3, 1.0), (5, 10.0))   # GitHub's minute and hour limits, shrunk: pace 0.34 s, window 10.2 s


class RecordingSleep:
    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class FakeTime:
    """A clock that moves only when slept on (or set), recording every sleep."""

    def __init__(self, start: datetime = T0):
        self.now = start
        self.calls: list[float] = []

    def clock(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += timedelta(seconds=seconds)


def logged_slots(db, installation_id: int = INSTALLATION_ID) -> list[float]:
    """The installation's logged slots, as seconds after T0, oldest first."""
    with db.session() as session:
        return [round((at - T0).total_seconds(), 6)
                for at in session.scalars(select(GitHubWrite.at)
                                          .where(GitHubWrite.installation_id == installation_id)
                                          .order_by(GitHubWrite.at))]


def assert_within(slots: list[float], limits, *, spacing: float) -> None:
    """No ``window`` seconds hold more than ``count`` slots, and neighbours are ``spacing`` apart."""
    micros = [round(s * 1e6) for s in slots]          # exact arithmetic at the store's resolution
    assert all(b - a >= round(spacing * 1e6) for a, b in zip(micros, micros[1:]))
    for count, window in limits:
        width = round(window * 1e6)
        for t in micros:
            assert sum(1 for s in micros if t - width < s <= t) <= count


def test_pacer_spaces_writes_at_the_minute_limits_pace(db):
    fake = FakeTime()
    pacer = WritePacer(DatabaseWriteLog(db), clock=fake.clock, sleep=fake.sleep)   # 80/60 s, 500/3600 s
    assert pacer.interval == timedelta(seconds=0.765)            # 60/80 s plus 2 %
    for _ in range(4):
        pacer.reserve(INSTALLATION_ID)
    assert fake.calls == [pytest.approx(0.765)] * 3
    assert logged_slots(db) == [0.0, 0.765, 1.53, 2.295]


def test_pacer_a_slot_taken_late_is_made_up_for_within_the_margin(db):
    fake = FakeTime()
    pacer = WritePacer(DatabaseWriteLog(db), clock=fake.clock, sleep=fake.sleep)
    assert pacer.catch_up == timedelta(seconds=0.3825)           # half a step (< 2 % of 60 s)
    pacer.reserve(INSTALLATION_ID)                               # slot 0
    fake.now += timedelta(seconds=0.965)                         # the next worker came 0.2 s late
    pacer.reserve(INSTALLATION_ID)                               # sent at once, logged on schedule
    assert logged_slots(db) == [0.0, 0.765] and fake.calls == []
    pacer.reserve(INSTALLATION_ID)                               # back on the 0.765 s grid
    assert fake.calls == [pytest.approx(0.565)] and logged_slots(db)[-1] == 1.53
    fake.now += timedelta(seconds=10)                            # idle: at most half a step credited
    pacer.reserve(INSTALLATION_ID)
    assert logged_slots(db)[-1] == pytest.approx(11.53 - 0.3825)


def test_pacer_with_late_workers_keeps_the_real_send_times_within_the_limits(db):
    import random

    rng = random.Random(6)
    fake = FakeTime()
    pacer = WritePacer(DatabaseWriteLog(db), clock=fake.clock, sleep=fake.sleep,
                       max_wait=timedelta(hours=2))
    sent = []
    for _ in range(600):
        fake.now += timedelta(seconds=rng.choice((0, 0, 0.05, 0.3, 1.0)))   # busy workers, now and then
        pacer.reserve(INSTALLATION_ID)
        sent.append((fake.now - T0).total_seconds())                       # when the request goes out
    assert_within(sent, ((80, 60.0), (500, 3600.0)), spacing=0.765 - 0.3825)
    assert sent[499] - sent[0] < 499 * 0.765 * 1.05                        # lateness did not add up


def test_pacer_waits_for_a_slot_to_leave_the_long_window(db):
    fake = FakeTime()
    pacer = WritePacer(DatabaseWriteLog(db), limits=SCALED, max_wait=timedelta(seconds=60),
                       clock=fake.clock, sleep=fake.sleep)
    for _ in range(7):
        pacer.reserve(INSTALLATION_ID)
    # Five slots at the short pace fill the 10 s budget; the sixth waits until the first is
    # 10.2 s old, the seventh until the second is.
    assert logged_slots(db) == [0.0, 0.34, 0.68, 1.02, 1.36, 10.2, 10.54]
    assert fake.calls == [pytest.approx(s) for s in (0.34, 0.34, 0.34, 0.34, 8.84, 0.34)]
    fake.now = T0 + timedelta(seconds=30)                  # idle past every window: no wait
    pacer.reserve(INSTALLATION_ID)
    assert len(fake.calls) == 6 and logged_slots(db)[-1] == 30.0


def test_pacer_beyond_max_wait_is_transient_and_reserves_nothing(db):
    now = T0
    sleep = RecordingSleep()
    pacer = WritePacer(DatabaseWriteLog(db), limits=SCALED, max_wait=timedelta(seconds=5),
                       clock=lambda: now, sleep=sleep)
    for _ in range(5):
        pacer.reserve(INSTALLATION_ID)                     # slots 0 .. 1.36 s
    assert sleep.calls == [pytest.approx(s) for s in (0.34, 0.68, 1.02, 1.36)]
    with pytest.raises(TransientError) as raised:
        pacer.reserve(INSTALLATION_ID)                     # next slot 10.2 s > max_wait
    assert isinstance(raised.value, Deferred)              # the queue spends no attempt on it
    assert raised.value.retry_after == pytest.approx(10.2)
    now = T0 + timedelta(seconds=5)
    with pytest.raises(TransientError) as raised:
        pacer.reserve(INSTALLATION_ID)
    assert raised.value.retry_after == pytest.approx(5.2)
    assert logged_slots(db) == [0.0, 0.34, 0.68, 1.02, 1.36]   # the refusals took no slot
    assert len(sleep.calls) == 4
    now = T0 + timedelta(seconds=5.2)                      # exactly max_wait ahead: taken
    pacer.reserve(INSTALLATION_ID)
    assert sleep.calls[-1] == pytest.approx(5.0)
    assert logged_slots(db)[-1] == 10.2


def test_pacer_installations_are_independent(db):
    sleep = RecordingSleep()
    pacer = WritePacer(DatabaseWriteLog(db), limits=SCALED, max_wait=timedelta(seconds=5),
                       clock=lambda: T0, sleep=sleep)
    for _ in range(5):
        pacer.reserve(INSTALLATION_ID)
    with pytest.raises(TransientError):
        pacer.reserve(INSTALLATION_ID)
    pacer.reserve(5)                                       # its own, empty schedule: no wait
    pacer.reserve(5)
    assert sleep.calls == [pytest.approx(s) for s in (0.34, 0.68, 1.02, 1.36, 0.34)]
    assert logged_slots(db, 5) == [0.0, 0.34]
    assert logged_slots(db) == [0.0, 0.34, 0.68, 1.02, 1.36]


EXPECTED_CONCURRENT = [0.0, 0.34, 0.68, 1.02, 1.36, 10.2, 10.54, 10.88]


def test_pacer_concurrent_reservations_get_distinct_slots_within_limits(db):
    sleep = RecordingSleep()
    errors: list[BaseException] = []
    # Half the threads share the test's Database, half have their own engine and connections
    # (as separate processes would).
    own = [Database(db.url) for _ in range(4)]
    pacers = [WritePacer(DatabaseWriteLog(d), limits=SCALED, max_wait=timedelta(seconds=60),
                         clock=lambda: T0, sleep=sleep) for d in [db] * 4 + own]
    barrier = threading.Barrier(len(pacers))

    def reserve(pacer):
        try:
            barrier.wait()
            pacer.reserve(INSTALLATION_ID)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reserve, args=(p,)) for p in pacers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for d in own:
        d.dispose()
    assert errors == []
    assert logged_slots(db) == EXPECTED_CONCURRENT
    assert sorted(round(s, 6) for s in sleep.calls) == EXPECTED_CONCURRENT[1:]   # slot 0: no sleep
    assert_within(EXPECTED_CONCURRENT, SCALED, spacing=0.34)


def _reserve_in_process(url: str, results) -> None:
    """A worker process: its own Database, two reservations at T0, the waits it was told."""
    sleep = RecordingSleep()
    database = Database(url)
    try:
        pacer = WritePacer(DatabaseWriteLog(database), limits=SCALED, max_wait=timedelta(seconds=60),
                           clock=lambda: T0, sleep=sleep)
        pacer.reserve(INSTALLATION_ID)
        pacer.reserve(INSTALLATION_ID)
        results.put(sleep.calls)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(repr(exc))
    finally:
        database.dispose()


def test_pacer_shares_one_schedule_across_processes(db):
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=_reserve_in_process, args=(db.url, results)) for _ in range(4)]
    for process in processes:
        process.start()
    reported = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert all(isinstance(calls, list) for calls in reported), reported
    waits = sorted(round(s, 6) for calls in reported for s in calls)
    assert waits == EXPECTED_CONCURRENT[1:]
    assert logged_slots(db) == EXPECTED_CONCURRENT


def test_pacer_drains_a_burst_of_500_near_the_best_rate(db):
    fake = FakeTime()
    pacer = WritePacer(DatabaseWriteLog(db), clock=fake.clock, sleep=fake.sleep)
    for _ in range(500):
        pacer.reserve(INSTALLATION_ID)                     # never refused: each waits 0.765 s
    elapsed = (fake.now - T0).total_seconds()
    assert elapsed == pytest.approx(499 * 0.765)          # 381.7 s
    # The limits allow at best 80 a minute: the 500th no sooner than 499 * 0.75 s.
    assert 499 * 0.75 / elapsed >= 0.9
    slots = logged_slots(db)
    assert len(slots) == 500
    assert_within(slots, ((80, 60.0), (500, 3600.0)), spacing=0.765)
    assert_within(slots, ((80, 61.2), (500, 3672.0)), spacing=0.765)   # with the margin, too
    with pytest.raises(TransientError) as raised:          # the hour's budget is spent
        pacer.reserve(INSTALLATION_ID)
    assert raised.value.retry_after == pytest.approx(3672 - 499 * 0.765)


def test_pacer_off_never_sleeps_or_writes(db):
    sleep = RecordingSleep()
    pacer = WritePacer(DatabaseWriteLog(db), limits=(), clock=lambda: T0, sleep=sleep)
    for _ in range(100):
        pacer.reserve(INSTALLATION_ID)
    assert sleep.calls == []
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(GitHubWrite)) == 0
        assert session.get(Installation, INSTALLATION_ID) is None


def test_pacer_limits_can_be_switched_off_later(db):
    sleep = RecordingSleep()
    pacer = WritePacer(DatabaseWriteLog(db), clock=lambda: T0, sleep=sleep)
    pacer.reserve(INSTALLATION_ID)
    pacer.limits = ()
    pacer.reserve(INSTALLATION_ID)
    assert sleep.calls == [] and pacer.interval == timedelta(0)
    assert logged_slots(db) == [0.0]


def test_pacer_rejects_nonsense_limits(db):
    for limits in (((0, 60.0),), ((80, 0.0),)):
        with pytest.raises(ValueError):
            WritePacer(DatabaseWriteLog(db), limits=limits)
    with pytest.raises(ValueError):
        WritePacer(DatabaseWriteLog(db), safety=-0.1)


def test_pacer_prunes_rows_older_than_the_longest_window(db):
    fake = FakeTime()
    pacer = WritePacer(DatabaseWriteLog(db), limits=SCALED, clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        pacer.reserve(INSTALLATION_ID)
    pacer.reserve(5)
    assert logged_slots(db) == [0.0, 0.34, 0.68]
    fake.now = T0 + timedelta(seconds=10.6)               # 0 and 0.34 are older than 10.2 s
    pacer.reserve(INSTALLATION_ID)                         # logged 0.02 s early: it came late
    assert logged_slots(db) == [0.68, 10.58]
    assert logged_slots(db, 5) == [0.68]                   # pruned by its own next reservation


def test_pacer_keeps_existing_installation_row(db):
    with db.session() as session:
        session.add(Installation(id=INSTALLATION_ID, account="octo"))
    WritePacer(DatabaseWriteLog(db), clock=lambda: T0, sleep=RecordingSleep()).reserve(INSTALLATION_ID)
    with db.session() as session:
        assert session.get(Installation, INSTALLATION_ID).account == "octo"
    assert logged_slots(db) == [0.0]


def test_client_paces_content_creation(db, emu, clock):
    sleep = RecordingSleep()
    fixed = clock.now()
    pacer = WritePacer(DatabaseWriteLog(db), clock=lambda: fixed, sleep=sleep)
    app = make_app(db, emu, clock, pacer=pacer)
    number = open_pr(app)                                                    # slot 0
    app.post_comment(INSTALLATION_ID, REPO, number, "one", "<!-- m1 -->")   # slot 0.765 s
    app.post_comment(INSTALLATION_ID, REPO, number, "one", "<!-- m1 -->")   # found: no write
    app.get_pull_request(INSTALLATION_ID, REPO, number)                      # a read: no slot
    assert app.merge(INSTALLATION_ID, REPO, number).merged                   # slot 1.53 s
    assert app.merge(INSTALLATION_ID, REPO, number).already_merged           # no write
    assert sleep.calls == [pytest.approx(0.765), pytest.approx(1.53)]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(GitHubWrite)) == 3


# -- webhooks -----------------------------------------------------------------------------------

def test_webhook_signature():
    body = b'{"action":"created"}'
    header = sign("s3cret", body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature("s3cret", body, header)
    assert verify_signature("s3cret", body, header.upper().replace("SHA256=", "sha256="))
    assert not verify_signature("s3cret", body + b" ", header)
    assert not verify_signature("other", body, header)
    assert not verify_signature("s3cret", body, None)
    assert not verify_signature("s3cret", body, "")
    assert not verify_signature("s3cret", body, "sha1=" + header[7:47])
    assert not verify_signature("s3cret", body, "sha256=zz" + header[9:])
    assert not verify_signature("s3cret", body, header[:-2])
    assert not verify_signature("", body, sign("", body))


def test_webhook_signature_matches_emulator(clock):
    with emulator(clock, webhook_secret="hooks") as emu:
        body = b'{"zen":"Keep it logically awesome."}'
        assert verify_signature("hooks", body, emu.sign_webhook(body))
