"""The emulator's secondary rate limits and its after-the-fact faults, over real sockets.

What a GitHub App would see when it writes too fast (80 a minute, 500 an hour), keeps too many
requests in flight, or loses an answer to a request GitHub did carry out (dropped connection,
timeout). Windows are scaled down or the emulator's clock is advanced so nothing sleeps long.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from github import Auth, Github, GithubIntegration
from github.GithubException import RateLimitExceededException

from github_emulator import GitHubEmulator
from github_emulator.faults import RATE_DOCS
from github_emulator.limits import parse_limits
from tests.support.github import SettableClock, app_key_pair

APP_ID = 12345
INSTALLATION = 4242
REPO = "octo-org/widgets"
FAST = dict(timeout=5, retry=0, seconds_between_requests=0, seconds_between_writes=0)
SECONDARY = "You have exceeded a secondary rate limit"


@pytest.fixture
def app_key() -> tuple[str, str]:
    return app_key_pair()


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def emu(app_key, clock):
    emulator = GitHubEmulator(app_id=APP_ID, app_public_key_pem=app_key[1], clock=clock.time)
    emulator.start()
    emulator.add_repo(REPO)
    emulator.add_installation(INSTALLATION, "octo-org", [REPO])
    emulator.create_branch(REPO, "feature", files={"feature.txt": "new feature\n"})
    # The PR exists without an API write, so every write below is one the test makes.
    emulator.add_pull_as(REPO, "alice", "feature", "main", "A PR")
    yield emulator
    emulator.stop()


@pytest.fixture
def token(emu) -> str:
    return emu.issue_token(INSTALLATION, ttl=10 ** 6)   # outlives clock jumps


@pytest.fixture
def api(token):
    with requests.Session() as session:
        session.headers["Authorization"] = f"token {token}"
        yield session


def comment(emu, api, body: str = "hi", **kw) -> requests.Response:
    return api.post(f"{emu.url}/repos/{REPO}/issues/1/comments", json={"body": body},
                    timeout=kw.pop("timeout", 5), **kw)


def assert_secondary(resp: requests.Response) -> int:
    """The response is GitHub's secondary-limit refusal; returns its Retry-After."""
    assert resp.status_code == 403
    body = resp.json()
    assert body["message"].startswith(SECONDARY) and body["documentation_url"] == RATE_DOCS
    assert resp.headers["X-GitHub-Request-Id"] in body["message"]
    return int(resp.headers["Retry-After"])


# -- content creation ---------------------------------------------------------------------------

def test_defaults_are_githubs_documented_values(emu):
    assert emu.content_limits == ((80, 60.0), (500, 3600.0))
    assert emu.max_concurrent == 100
    assert emu.limit_hits == 0 and emu.content_writes(INSTALLATION) == []


def test_81st_write_in_a_minute_is_refused_before_it_has_effect(emu, api, token, app_key):
    started = time.time()
    assert [comment(emu, api, f"c{i}").status_code for i in range(80)] == [201] * 80
    refused = comment(emu, api, "one too many")
    retry_after = assert_secondary(refused)
    assert 60 - (time.time() - started) - 1 <= retry_after <= 60
    bodies = [c["body"] for c in emu.comments(REPO, 1)]
    assert len(bodies) == 80 and "one too many" not in bodies
    # Every write method counts; PyGithub sees GitHub's secondary-limit 403.
    first = emu.comments(REPO, 1)[0]["id"]
    patched = api.patch(f"{emu.url}/repos/{REPO}/issues/comments/{first}",
                        json={"body": "edited"}, timeout=5)
    assert_secondary(patched)
    assert emu.comments(REPO, 1)[0]["body"] == "c0"
    pr = Github(auth=Auth.Token(token), base_url=emu.url, **FAST).get_repo(REPO).get_pull(1)
    with pytest.raises(RateLimitExceededException) as err:
        pr.create_issue_comment("via PyGithub")
    assert err.value.status == 403 and int(err.value.headers["retry-after"]) >= 1
    assert emu.limit_hits_for(INSTALLATION, "content") == 3 and emu.limit_hits == 3
    assert emu.limit_hits_for(INSTALLATION, "concurrency") == 0
    # Refusals take no slot; reads and App calls are not content creation.
    writes = emu.content_writes(INSTALLATION)
    assert len(writes) == 80 and writes == sorted(writes) and writes[0] >= started - 1
    assert pr.title == "A PR" and len(list(pr.get_issue_comments())) == 80
    gi = GithubIntegration(auth=Auth.AppAuth(APP_ID, app_key[0]), base_url=emu.url, **FAST)
    assert gi.get_access_token(INSTALLATION).token.startswith("ghs_")
    assert len(emu.content_writes(INSTALLATION)) == 80


def test_scaled_down_window_frees_a_slot_once_it_passes(emu, api):
    emu.set_content_limits(((3, 1.0),))
    assert api.patch(f"{emu.url}/repos/{REPO}/pulls/1", json={"title": "Renamed"},
                     timeout=5).status_code == 200
    assert comment(emu, api).status_code == 201
    assert api.post(f"{emu.url}/repos/{REPO}/git/refs", timeout=5,
                    json={"ref": "refs/heads/copy", "sha": emu.branch_sha(REPO, "main")}
                    ).status_code == 201
    merge_url = f"{emu.url}/repos/{REPO}/pulls/1/merge"
    assert assert_secondary(api.put(merge_url, json={}, timeout=5)) == 1
    assert emu.pull(REPO, 1)["merged"] is False
    first = emu.content_writes(INSTALLATION)[0]
    time.sleep(max(0.0, first + 1.0 - time.time()) + 0.05)
    merged = api.put(merge_url, json={}, timeout=5)
    assert merged.status_code == 200 and emu.pull(REPO, 1)["merged"] is True
    assert len(emu.content_writes(INSTALLATION)) == 4
    assert emu.limit_hits_for(INSTALLATION) == 1


def test_hourly_window_follows_the_emulator_clock(emu, api, clock):
    emu.set_content_limits(((100, 60.0), (4, 3600.0)))
    assert [comment(emu, api).status_code for _ in range(4)] == [201] * 4
    assert 3595 <= assert_secondary(comment(emu, api)) <= 3600
    clock.advance(timedelta(seconds=61))        # the minute window is empty, the hour still full
    assert 3530 <= assert_secondary(comment(emu, api)) <= 3540
    clock.advance(timedelta(seconds=3600 - 61))
    assert comment(emu, api, "an hour later").status_code == 201
    assert len(emu.comments(REPO, 1)) == 5 and emu.limit_hits_for(INSTALLATION) == 2
    writes = emu.content_writes(INSTALLATION)
    assert writes[-1] - writes[0] >= 3600       # on the emulator's clock, not time.monotonic


def test_limits_are_per_installation(emu, api):
    emu.set_content_limits(((2, 60.0),))
    emu.add_repo("other-org/gadgets")
    emu.add_installation(99, "other-org", ["other-org/gadgets"])
    assert [comment(emu, api).status_code for _ in range(3)] == [201, 201, 403]
    other = requests.post(f"{emu.url}/repos/other-org/gadgets/git/refs", timeout=5,
                          headers={"Authorization": f"token {emu.issue_token(99)}"},
                          json={"ref": "refs/heads/x",
                                "sha": emu.branch_sha("other-org/gadgets", "main")})
    assert other.status_code == 201
    assert emu.limit_hits_for(INSTALLATION) == 1 and emu.limit_hits_for(99) == 0
    assert len(emu.content_writes(99)) == 1 and len(emu.content_writes(INSTALLATION)) == 2


def test_app_calls_token_revocation_and_git_push_do_not_count(emu, api, app_key, tmp_path):
    emu.set_content_limits(((1, 60.0),))
    gi = GithubIntegration(auth=Auth.AppAuth(APP_ID, app_key[0]), base_url=emu.url, **FAST)
    tokens = [gi.get_access_token(INSTALLATION).token for _ in range(3)]   # POST, as the App
    revoked = requests.delete(f"{emu.url}/installation/token", timeout=5,
                              headers={"Authorization": f"token {tokens[0]}"})
    assert revoked.status_code == 204
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
               GIT_TERMINAL_PROMPT="0", GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="d@example.com",
               GIT_COMMITTER_NAME="Dev", GIT_COMMITTER_EMAIL="d@example.com")
    work = tmp_path / "work"
    basic = base64.b64encode(f"x-access-token:{tokens[1]}".encode()).decode()
    for args in (["init", "-q", "-b", "pushed", str(work)],
                 ["-C", str(work), "commit", "-q", "--allow-empty", "-m", "x"],
                 ["-C", str(work), "-c", f"http.extraHeader=Authorization: Basic {basic}",
                  "push", "-q", f"{emu.url}/{REPO}.git", "pushed"]):
        done = subprocess.run(["git", *args], env=env, capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, done.stderr
    assert emu.branch_sha(REPO, "pushed") is not None
    assert emu.content_writes(INSTALLATION) == [] and emu.limit_hits == 0
    assert [comment(emu, api).status_code for _ in range(2)] == [201, 403]


def test_reset_limits_empties_windows_and_counters(emu, api):
    emu.set_content_limits(((1, 60.0),))
    assert [comment(emu, api).status_code for _ in range(3)] == [201, 403, 403]
    assert emu.limit_hits == 2 and len(emu.content_writes(INSTALLATION)) == 1
    emu.reset_limits()
    assert emu.limit_hits == 0 and emu.limit_hits_for(INSTALLATION) == 0
    assert emu.content_writes(INSTALLATION) == []
    assert [comment(emu, api).status_code for _ in range(2)] == [201, 403]
    assert emu.limit_hits == 1


def test_disabled_limits_never_refuse(app_key):
    with GitHubEmulator(APP_ID, app_key[1], content_limits=(), max_concurrent=None) as emu:
        emu.add_repo(REPO)
        emu.add_installation(INSTALLATION, "octo-org", [REPO])
        emu.create_branch(REPO, "feature", files={"f.txt": "f\n"})
        emu.add_pull_as(REPO, "alice", "feature", "main", "t")
        with requests.Session() as api:
            api.headers["Authorization"] = f"token {emu.issue_token(INSTALLATION)}"
            statuses = [comment(emu, api, f"c{i}").status_code for i in range(85)]
            assert statuses == [201] * 85
            assert emu.limit_hits == 0 and len(emu.content_writes(INSTALLATION)) == 85
            # Switched on and off on the running emulator.
            emu.set_content_limits(((85, 60.0),))
            assert_secondary(comment(emu, api))
            emu.content_limits = None
            assert comment(emu, api).status_code == 201
    assert len(emu.comments(REPO, 1)) == 86


def test_bad_limits_are_refused():
    with pytest.raises(ValueError):
        GitHubEmulator(APP_ID, b"unused", content_limits=((0, 60.0),))
    with pytest.raises(ValueError):
        GitHubEmulator(APP_ID, b"unused", max_concurrent=-1)
    assert parse_limits("80/60,500/3600") == ((80, 60.0), (500, 3600.0))
    assert parse_limits("off") == ()
    with pytest.raises(ValueError):
        parse_limits("80")


# -- concurrency -----------------------------------------------------------------------------

def test_concurrency_limit_refuses_requests_over_the_in_flight_limit(emu, token, app_key):
    emu.set_max_concurrent(2)
    emu.add_repo("other-org/gadgets")
    emu.add_installation(99, "other-org", ["other-org/gadgets"])
    slow = emu.faults.inject("latency", path_regex=rf"^/repos/{REPO}$", method="GET",
                             seconds=1.0, times=None)
    headers = {"Authorization": f"token {token}"}
    statuses: list[int] = []

    def held() -> None:
        statuses.append(requests.get(f"{emu.url}/repos/{REPO}", headers=headers,
                                     timeout=5).status_code)

    threads = [threading.Thread(target=held) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 3
    while emu.in_flight(INSTALLATION) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    third = requests.get(f"{emu.url}/repos/{REPO}/pulls", headers=headers, timeout=5)
    assert assert_secondary(third) == 1
    # Other installations and the App itself are not held up.
    other = requests.get(f"{emu.url}/repos/other-org/gadgets", timeout=5,
                         headers={"Authorization": f"token {emu.issue_token(99)}"})
    gi = GithubIntegration(auth=Auth.AppAuth(APP_ID, app_key[0]), base_url=emu.url, **FAST)
    assert other.status_code == 200 and gi.get_app().slug
    for t in threads:
        t.join()
    assert statuses == [200, 200] and slow.hits == 2
    assert emu.limit_hits_for(INSTALLATION, "concurrency") == 1
    assert emu.limit_hits_for(INSTALLATION, "content") == 0 and emu.limit_hits == 1
    assert emu.in_flight(INSTALLATION) == 0
    assert requests.get(f"{emu.url}/repos/{REPO}/pulls", headers=headers,
                        timeout=5).status_code == 200


def test_sequential_requests_never_trip_a_limit_of_one(emu, api):
    emu.set_max_concurrent(1)
    for _ in range(20):
        assert api.get(f"{emu.url}/repos/{REPO}/pulls/1", timeout=5).status_code == 200
        with requests.Session() as fresh:     # a new connection each time, too
            fresh.headers.update(api.headers)
            assert fresh.get(f"{emu.url}/repos/{REPO}", timeout=5).status_code == 200
    assert emu.limit_hits == 0


# -- faults after the fact -----------------------------------------------------------------------

def test_drop_carries_out_the_request_then_closes_without_an_answer(emu, api, token):
    fault = emu.faults.inject("drop", path_regex=r"/comments$", method="POST")
    with pytest.raises(requests.ConnectionError):
        comment(emu, api, "did it land?")
    assert [c["body"] for c in emu.comments(REPO, 1)] == ["did it land?"]
    assert fault.hits == 1 and not emu.faults.armed
    assert ("POST", f"/repos/{REPO}/issues/1/comments", 0) in emu.requests_log
    assert len(emu.content_writes(INSTALLATION)) == 1 and emu.in_flight(INSTALLATION) == 0
    assert comment(emu, api, "again").status_code == 201
    emu.faults.inject("drop", path_regex=r"/pulls/1$", method="PATCH")
    pr = Github(auth=Auth.Token(token), base_url=emu.url, **FAST).get_repo(REPO).get_pull(1)
    with pytest.raises(requests.ConnectionError):
        pr.edit(title="Renamed")
    assert emu.pull(REPO, 1)["title"] == "Renamed"


def test_timeout_carries_out_the_request_and_answers_too_late(emu, api):
    # The answer would come after 30 s; emu.stop() cuts the wait short.
    fault = emu.faults.inject("timeout", path_regex=r"/comments$", method="POST", seconds=30)
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        comment(emu, api, "slow", timeout=0.3)
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5     # on a loaded machine the handler may trail the client
    while not emu.comments(REPO, 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [c["body"] for c in emu.comments(REPO, 1)] == ["slow"] and fault.hits == 1
    assert emu.in_flight(INSTALLATION) == 1        # the held answer is still in flight
    assert ("POST", f"/repos/{REPO}/issues/1/comments", 201) not in emu.requests_log
    with requests.Session() as fresh:
        fresh.headers.update(api.headers)
        assert comment(emu, fresh, "quick").status_code == 201
    assert [c["body"] for c in emu.comments(REPO, 1)] == ["slow", "quick"]


def test_an_error_fault_wins_over_drop_which_stays_armed(emu, api):
    drop = emu.faults.inject("drop", path_regex=r"/comments$")
    error = emu.faults.inject("5xx", path_regex=r"/comments$", status=503)
    assert comment(emu, api).status_code == 503
    assert emu.comments(REPO, 1) == [] and error.hits == 1 and drop.hits == 0
    with pytest.raises(requests.ConnectionError):
        comment(emu, api)
    assert len(emu.comments(REPO, 1)) == 1 and drop.hits == 1


# -- probability ---------------------------------------------------------------------------------

def _pattern(emu, api, n: int = 40) -> list[int]:
    return [api.get(f"{emu.url}/repos/{REPO}", timeout=5).status_code for _ in range(n)]


def test_probability_faults_hit_some_requests_repeatably(emu, api):
    fault = emu.faults.inject("5xx", path_regex=rf"^/repos/{REPO}$", times=None,
                              probability=0.3, seed=7)
    first = _pattern(emu, api)
    assert set(first) == {200, 502} and 0 < first.count(502) < 40
    assert fault.hits == first.count(502)
    emu.faults.clear()
    emu.faults.inject("5xx", path_regex=rf"^/repos/{REPO}$", times=None, probability=0.3, seed=7)
    assert _pattern(emu, api) == first
    emu.faults.clear()
    # Without a per-fault seed the injector's RNG is used: emu.faults.seed() or
    # GitHubEmulator(seed=...).
    emu.faults.seed(3)
    emu.faults.inject("latency", path_regex=r"^/nowhere$", times=None, probability=0.5)
    emu.faults.inject("5xx", path_regex=rf"^/repos/{REPO}$", times=None, probability=0.5)
    shared = _pattern(emu, api, 20)
    emu.faults.seed(3)
    assert _pattern(emu, api, 20) == shared and 0 < shared.count(502) < 20


def test_probability_with_times_caps_the_hits(emu, api):
    fault = emu.faults.inject("5xx", path_regex=rf"^/repos/{REPO}$", times=2, probability=0.5,
                              seed=1)
    statuses = _pattern(emu, api, 30)
    assert statuses.count(502) == 2 and fault.hits == 2 and fault.exhausted


def test_probability_applies_to_drop(emu, api):
    fault = emu.faults.inject("drop", path_regex=r"/comments$", times=None, probability=0.5,
                              seed=11)
    outcomes = []
    for i in range(12):
        try:
            outcomes.append(comment(emu, api, f"c{i}").status_code)
        except requests.ConnectionError:
            outcomes.append("dropped")
    assert 0 < outcomes.count("dropped") < 12 and fault.hits == outcomes.count("dropped")
    assert len(emu.comments(REPO, 1)) == 12       # dropped or not, every comment landed


@pytest.mark.parametrize("p", [0, -0.1, 1.5])
def test_probability_is_checked(emu, p):
    with pytest.raises(ValueError):
        emu.faults.inject("5xx", probability=p)


# -- standalone --------------------------------------------------------------------------------

def test_standalone_main_takes_limit_flags(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "github_emulator", "--data-dir",
                             str(tmp_path), "--repo", "acme/app", "--content-limits", "1/60",
                             "--max-concurrent", "5", "--seed", "1"],
                            stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        info = json.loads(proc.stdout.readline())
        gi = GithubIntegration(auth=Auth.AppAuth(info["app_id"],
                                                 Path(info["private_key_file"]).read_text()),
                               base_url=info["url"], **FAST)
        token = gi.get_access_token(info["installation_id"]).token
        url = f"{info['url']}/repos/acme/app/git/refs"
        headers = {"Authorization": f"token {token}"}
        sha = requests.get(f"{info['url']}/repos/acme/app/branches/main", headers=headers,
                           timeout=5).json()["commit"]["sha"]
        made = [requests.post(url, headers=headers, timeout=5,
                              json={"ref": f"refs/heads/b{i}", "sha": sha}) for i in range(2)]
        assert made[0].status_code == 201
        assert_secondary(made[1])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
