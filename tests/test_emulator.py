"""The GitHub emulator, driven over real sockets by PyGithub, requests and the git CLI.

What a client of GitHub would see: App JWT rules, installation tokens, PR/comment/merge shapes
and errors, injected faults, and git smart HTTP with token auth. No mocks.
"""
from __future__ import annotations

import base64
import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Auth, Github, GithubException, GithubIntegration
from github.GithubException import (BadCredentialsException, RateLimitExceededException,
                                    UnknownObjectException)

from github_emulator import GitHubEmulator

APP_ID = 12345
INSTALLATION = 4242
REPO = "octo-org/widgets"
BOT = "gateway-sandbox[bot]"
FAST = dict(timeout=5, retry=0, seconds_between_requests=0, seconds_between_writes=0)


def _keypair() -> tuple[str, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@pytest.fixture(scope="session")
def app_key() -> tuple[str, bytes]:
    return _keypair()


@pytest.fixture(scope="session")
def other_key() -> tuple[str, bytes]:
    return _keypair()


class Clock:
    """Real time plus an offset tests can advance."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emu(app_key, clock):
    emulator = GitHubEmulator(app_id=APP_ID, app_public_key_pem=app_key[1],
                              webhook_secret="whsec", bot_login=BOT, clock=clock)
    emulator.start()
    emulator.add_repo(REPO)
    emulator.add_installation(installation_id=INSTALLATION, account="octo-org",
                              repositories=[REPO])
    emulator.create_branch(REPO, "feature", files={"feature.txt": "new feature\n"})
    yield emulator
    emulator.stop()


def integration(emu, private_key: str, app_id=APP_ID) -> GithubIntegration:
    return GithubIntegration(auth=Auth.AppAuth(app_id, private_key), base_url=emu.url, **FAST)


def client(emu, token: str, **kw) -> Github:
    return Github(auth=Auth.Token(token), base_url=emu.url, **{**FAST, **kw})


@pytest.fixture
def token(emu, app_key) -> str:
    return integration(emu, app_key[0]).get_access_token(INSTALLATION).token


@pytest.fixture
def repo(emu, token):
    return client(emu, token).get_repo(REPO)


def raw_jwt(private_key: str, **claims) -> str:
    now = int(time.time())
    payload = {"iat": now - 60, "exp": now + 300, "iss": APP_ID, **claims}
    claims = {k: v for k, v in payload.items() if v is not None}
    # PyJWT's jwt.encode refuses an int "iss"; GitHub accepts both, so sign the bytes directly.
    return jwt.api_jws.encode(json.dumps(claims).encode(), private_key, "RS256")


# -- App authentication ------------------------------------------------------------------------

def test_app_gets_installation_and_token(emu, app_key):
    gi = integration(emu, app_key[0])
    assert gi.get_app().slug == "gateway-sandbox"
    assert [i.id for i in gi.get_installations()] == [INSTALLATION]
    installation = gi.get_repo_installation("octo-org", "widgets")
    assert installation.id == INSTALLATION and installation.account.login == "octo-org"
    auth = gi.get_access_token(installation.id)
    assert auth.token.startswith("ghs_") and len(auth.token) == 40
    remaining = (auth.expires_at.timestamp() - time.time())
    assert 3500 < remaining <= 3600
    assert auth.permissions["pull_requests"] == "write"


def test_app_unknown_repo_or_installation_is_404(emu, app_key):
    gi = integration(emu, app_key[0])
    with pytest.raises(UnknownObjectException):
        gi.get_repo_installation("octo-org", "nope")
    with pytest.raises(UnknownObjectException):
        gi.get_access_token(999)


def test_token_cannot_ask_for_more_than_installation_has(emu, app_key):
    emu.add_installation(7, "read-org", [], permissions={"pull_requests": "read"})
    with pytest.raises(GithubException) as err:
        integration(emu, app_key[0]).get_access_token(7, permissions={"pull_requests": "write"})
    assert err.value.status == 422


def test_jwt_signed_with_wrong_key_is_401(emu, other_key):
    with pytest.raises(GithubException) as err:
        integration(emu, other_key[0]).get_app()
    assert err.value.status == 401
    assert err.value.data["message"] == "A JSON web token could not be decoded"


@pytest.mark.parametrize("claims, message", [
    ({"iss": 999}, "'Issuer' claim"),
    ({"iat": int(time.time()) - 1200, "exp": int(time.time()) - 600}, "'Expiration time'"),
    ({"exp": int(time.time()) + 3600}, "is too far in the future"),
    ({"iat": int(time.time()) + 600}, "'Issued at' claim"),
    ({"exp": None}, "'Expiration time'"),
])
def test_bad_jwt_claims_are_401(emu, app_key, claims, message):
    token = raw_jwt(app_key[0], **claims)
    resp = requests.get(f"{emu.url}/app", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert resp.status_code == 401
    assert message in resp.json()["message"] and resp.json()["documentation_url"]


@pytest.mark.parametrize("iss", [APP_ID, str(APP_ID)])
def test_jwt_iss_may_be_int_or_string_and_garbage_is_401(emu, app_key, iss):
    ok = requests.get(f"{emu.url}/app", timeout=5,
                      headers={"Authorization": f"Bearer {raw_jwt(app_key[0], iss=iss)}"})
    assert ok.status_code == 200 and ok.json()["id"] == APP_ID
    bad = requests.get(f"{emu.url}/app", headers={"Authorization": "Bearer a.b.c"}, timeout=5)
    assert bad.status_code == 401


# -- installation tokens -----------------------------------------------------------------------

def test_expired_or_revoked_token_is_bad_credentials(emu, app_key):
    gi = integration(emu, app_key[0])
    token = gi.get_access_token(INSTALLATION).token
    gh = client(emu, token)
    assert gh.get_repo(REPO).full_name == REPO
    emu.expire_all_tokens()
    with pytest.raises(BadCredentialsException):
        gh.get_repo(REPO)
    fresh = gi.get_access_token(INSTALLATION).token
    assert requests.delete(f"{emu.url}/installation/token", timeout=5,
                           headers={"Authorization": f"token {fresh}"}).status_code == 204
    with pytest.raises(BadCredentialsException):
        client(emu, fresh).get_repo(REPO)


def test_token_only_reaches_its_installations_repos(emu, token):
    emu.add_repo("other-org/secret", private=True)
    emu.add_repo("other-org/public")
    emu.add_installation(77, "other-org", ["other-org/secret", "other-org/public"])
    emu.create_branch("other-org/public", "x", files={"x": "x"})
    gh = client(emu, token)
    with pytest.raises(UnknownObjectException):
        gh.get_repo("other-org/secret")
    public = gh.get_repo("other-org/public")          # public repos are readable, as on GitHub
    with pytest.raises(GithubException) as err:
        public.create_pull(title="t", head="x", base="main")
    assert err.value.status == 403


def test_read_only_installation_cannot_write(emu, app_key):
    emu.add_repo("ro-org/tool")
    emu.add_installation(8, "ro-org", ["ro-org/tool"], permissions={"pull_requests": "read"})
    emu.create_branch("ro-org/tool", "feature", files={"f": "f"})
    emu.add_pull_as("ro-org/tool", "alice", "feature", "main", "by alice")
    gh = client(emu, integration(emu, app_key[0]).get_access_token(8).token)
    repo = gh.get_repo("ro-org/tool")
    pr = repo.get_pull(1)
    assert pr.user.login == "alice"
    for attempt in (lambda: repo.create_pull(title="t", head="feature", base="main"),
                    lambda: pr.create_issue_comment("hi"),
                    lambda: pr.merge()):
        with pytest.raises(GithubException) as err:
            attempt()
        assert err.value.status == 403
        assert err.value.data["message"] == "Resource not accessible by integration"


# -- pull requests -----------------------------------------------------------------------------

def test_open_find_and_read_pull_request(emu, repo):
    assert repo.get_branch("feature").commit.sha == emu.branch_sha(REPO, "feature")
    pr = repo.create_pull(title="Add feature", body="Body", head="feature", base="main")
    assert pr.number == 1 and pr.state == "open" and not pr.merged and pr.mergeable
    assert pr.user.login == BOT and pr.user.type == "Bot"
    assert pr.head.ref == "feature" and pr.head.label == "octo-org:feature"
    assert pr.head.sha == emu.branch_sha(REPO, "feature")
    assert pr.base.ref == "main" and pr.base.sha == emu.branch_sha(REPO, "main")
    assert pr.html_url == f"{emu.url}/{REPO}/pull/1"
    assert pr.created_at.tzinfo is not None and pr.changed_files == 1 and pr.commits == 1

    found = list(repo.get_pulls(state="open", head="octo-org:feature", base="main"))
    assert [p.number for p in found] == [1]
    assert list(repo.get_pulls(state="open", head="octo-org:other", base="main")) == []
    assert list(repo.get_pulls(state="closed")) == []
    assert repo.get_pull(1).title == "Add feature"
    assert emu.pulls(REPO)[0]["title"] == "Add feature"


def test_create_pull_validation_errors(emu, repo):
    repo.create_pull(title="one", head="feature", base="main")
    with pytest.raises(GithubException) as dup:
        repo.create_pull(title="two", head="feature", base="main")
    assert dup.value.status == 422
    assert dup.value.data["errors"][0]["message"] == \
        "A pull request already exists for octo-org:feature."
    with pytest.raises(GithubException) as head:
        repo.create_pull(title="t", head="missing", base="main")
    assert head.value.data["errors"] == [{"resource": "PullRequest", "field": "head",
                                          "code": "invalid"}]
    with pytest.raises(GithubException) as base:
        repo.create_pull(title="t", head="feature", base="missing")
    assert base.value.data["errors"][0]["field"] == "base"
    emu.create_branch(REPO, "same")
    with pytest.raises(GithubException) as empty:
        repo.create_pull(title="t", head="same", base="main")
    assert empty.value.data["errors"][0]["message"] == "No commits between main and same"


def test_head_filter_without_owner_is_ignored_like_github(emu, repo):
    repo.create_pull(title="one", head="feature", base="main")
    emu.create_branch(REPO, "other", files={"o": "o"})
    repo.create_pull(title="two", head="other", base="main")
    assert len(list(repo.get_pulls(state="open", head="feature"))) == 2
    assert len(list(repo.get_pulls(state="open", head="octo-org:feature"))) == 1


def test_pulls_paginate_with_link_header(emu, token):
    gh = client(emu, token, per_page=2)
    repo = gh.get_repo(REPO)
    for i in range(5):
        emu.create_branch(REPO, f"b{i}", files={f"f{i}": str(i)})
        repo.create_pull(title=f"pr {i}", head=f"b{i}", base="main")
    assert sorted(p.number for p in repo.get_pulls(state="all")) == [1, 2, 3, 4, 5]
    resp = requests.get(f"{emu.url}/repos/{REPO}/pulls?per_page=2&page=2", timeout=5,
                        headers={"Authorization": f"token {token}"})
    assert len(resp.json()) == 2
    assert 'rel="next"' in resp.headers["Link"] and 'page=3>; rel="last"' in resp.headers["Link"]


# -- comments ----------------------------------------------------------------------------------

def test_comments_as_bot_and_as_user(emu, repo, clock):
    pr = repo.create_pull(title="t", head="feature", base="main")
    ours = pr.create_issue_comment("Reply from email")
    assert ours.user.login == BOT and ours.user.type == "Bot"
    assert ours.html_url == f"{emu.url}/{REPO}/pull/1#issuecomment-{ours.id}"
    assert ours.body == "Reply from email" and ours.created_at.tzinfo is not None
    clock.offset += 120
    theirs = emu.add_comment_as(REPO, 1, "alice", "Looks good")
    assert theirs["user"]["login"] == "alice" and theirs["performed_via_github_app"] is None
    assert [(c.user.login, c.body) for c in pr.get_issue_comments()] == [
        (BOT, "Reply from email"), ("alice", "Looks good")]
    later = pr.created_at.timestamp() + 60
    since = pr.as_issue().get_comments(since=datetime.fromtimestamp(later, tz=timezone.utc))
    assert [c.body for c in since] == ["Looks good"]
    assert pr.as_issue().get_comment(ours.id).body == "Reply from email"
    assert [c["body"] for c in emu.comments(REPO, 1)] == ["Reply from email", "Looks good"]
    with pytest.raises(UnknownObjectException):
        pr.as_issue().get_comment(1)
    with pytest.raises(UnknownObjectException):
        repo.get_pull(99).create_issue_comment("nope")


def test_concurrent_comments_are_all_kept(emu, repo, token):
    repo.create_pull(title="t", head="feature", base="main")
    url = f"{emu.url}/repos/{REPO}/issues/1/comments"
    statuses: list[int] = []

    def post(i: int) -> None:
        with requests.Session() as s:
            for j in range(5):
                statuses.append(s.post(url, json={"body": f"{i}.{j}"}, timeout=10,
                                       headers={"Authorization": f"token {token}"}).status_code)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [201] * 40
    comments = emu.comments(REPO, 1)
    assert len({c["id"] for c in comments}) == 40


# -- merging -----------------------------------------------------------------------------------

@pytest.mark.parametrize("method, parents", [("squash", 1), ("merge", 2), ("rebase", 1)])
def test_merge_methods(emu, repo, method, parents):
    pr = repo.create_pull(title="Add feature", head="feature", base="main")
    status = pr.merge(merge_method=method, sha=pr.head.sha)
    assert status.merged and status.message == "Pull Request successfully merged"
    assert emu.branch_sha(REPO, "main") == status.sha
    merged = repo.get_pull(pr.number)
    assert merged.merged and merged.state == "closed" and merged.merged_by.login == BOT
    assert merged.merge_commit_sha == status.sha and pr.is_merged()
    commit = repo.get_branch("main").commit
    assert len(commit.parents) == parents
    out = subprocess.run(["git", "--git-dir", str(emu.repo_path(REPO)), "show",
                          f"{status.sha}:feature.txt"], capture_output=True, text=True)
    assert out.stdout == "new feature\n"


def test_merge_refusals(emu, repo):
    pr = repo.create_pull(title="t", head="feature", base="main")
    stale = pr.head.sha
    emu.commit(REPO, "feature", {"more.txt": "more"})
    with pytest.raises(GithubException) as moved:
        pr.merge(sha=stale)
    assert moved.value.status == 409
    assert moved.value.data["message"] == \
        "Head branch was modified. Review and try the merge again."
    pr.merge(merge_method="squash")
    with pytest.raises(GithubException) as again:
        pr.merge()
    assert again.value.status == 405 and again.value.data["message"] == \
        "Pull Request is not mergeable"


def test_conflicting_pull_is_not_mergeable(emu, repo):
    emu.create_branch(REPO, "left", files={"README.md": "left\n"})
    emu.commit(REPO, "main", {"README.md": "right\n"})
    pr = repo.create_pull(title="t", head="left", base="main")
    assert repo.get_pull(pr.number).mergeable is False
    with pytest.raises(GithubException) as err:
        pr.merge()
    assert err.value.status == 405


# -- the HTTP surface ----------------------------------------------------------------------------

def test_headers_and_unknown_routes(emu, token):
    resp = requests.get(f"{emu.url}/repos/{REPO}", timeout=5,
                        headers={"Authorization": f"token {token}"})
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                 "X-GitHub-Request-Id"):
        assert name in resp.headers
    assert resp.headers["Content-Type"].startswith("application/json")
    missing = requests.get(f"{emu.url}/nope/nope/nope", timeout=5)
    assert missing.status_code == 404 and missing.json()["message"] == "Not Found"
    assert "X-RateLimit-Remaining" in missing.headers
    assert ("GET", "/nope/nope/nope", 404) in emu.requests_log


def test_primary_rate_limit_is_enforced(app_key):
    with GitHubEmulator(APP_ID, app_key[1], rate_limit=2) as emu:
        emu.add_repo(REPO)
        emu.add_installation(INSTALLATION, "octo-org", [REPO])
        repo = client(emu, emu.issue_token(INSTALLATION), lazy=True).get_repo(REPO)
        repo.get_branch("main")
        repo.get_branch("main")
        with pytest.raises(RateLimitExceededException) as err:
            repo.get_branch("main")
        assert err.value.headers["x-ratelimit-remaining"] == "0"


# -- faults ------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [502, 503])
def test_fault_5xx_once(emu, token, status):
    fault = emu.faults.inject("5xx", path_regex=r"/pulls$", method="POST", status=status)
    repo = client(emu, token).get_repo(REPO)
    with pytest.raises(GithubException) as err:
        repo.create_pull(title="t", head="feature", base="main")
    assert err.value.status == status and fault.hits == 1
    assert repo.create_pull(title="t", head="feature", base="main").number == 1
    assert ("POST", f"/repos/{REPO}/pulls", status) in emu.requests_log


def test_fault_primary_rate_limit(emu, token):
    emu.faults.inject("rate_limit_primary", path_regex=r"/repos/", reset_in=30)
    with pytest.raises(RateLimitExceededException) as err:
        client(emu, token).get_repo(REPO)
    assert err.value.status == 403
    assert err.value.headers["x-ratelimit-remaining"] == "0"
    assert int(err.value.headers["x-ratelimit-reset"]) >= int(time.time()) + 25
    assert err.value.data["message"] == \
        f"API rate limit exceeded for installation ID {INSTALLATION}."


@pytest.mark.parametrize("status", [403, 429])
def test_fault_secondary_rate_limit(emu, token, status):
    emu.faults.inject("rate_limit_secondary", retry_after=7, status=status)
    with pytest.raises(GithubException) as err:
        client(emu, token).get_repo(REPO)
    assert err.value.status == status
    assert err.value.headers["retry-after"] == "7"
    assert err.value.data["message"].startswith("You have exceeded a secondary rate limit")
    if status == 403:
        assert isinstance(err.value, RateLimitExceededException)


def test_fault_latency(emu, token):
    emu.faults.inject("latency", seconds=0.3, times=None, path_regex=r"^/repos/")
    started = time.monotonic()
    assert client(emu, token).get_repo(REPO).full_name == REPO
    assert time.monotonic() - started >= 0.25


def test_fault_expire_token_mid_flow(emu, app_key):
    gi = integration(emu, app_key[0])
    token = gi.get_access_token(INSTALLATION).token
    repo = client(emu, token).get_repo(REPO)
    emu.faults.inject("expire_token", path_regex=r"/pulls$")
    with pytest.raises(BadCredentialsException):
        repo.create_pull(title="t", head="feature", base="main")
    fresh = client(emu, gi.get_access_token(INSTALLATION).token).get_repo(REPO)
    assert fresh.create_pull(title="t", head="feature", base="main").number == 1


def test_fault_kind_is_checked(emu):
    with pytest.raises(ValueError):
        emu.faults.inject("meteor")


# -- git smart HTTP ----------------------------------------------------------------------------

@pytest.fixture
def workdir(tmp_path, emu):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
               GIT_TERMINAL_PROMPT="0", GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="dev@example.com",
               GIT_COMMITTER_NAME="Dev", GIT_COMMITTER_EMAIL="dev@example.com")
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", f"{emu.url}/{REPO}.git", str(work)], env=env,
                   check=True, capture_output=True, timeout=30)
    askpass = tmp_path / "askpass.sh"
    askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$EMU_TOKEN"\n')
    askpass.chmod(0o700)
    return work, env, askpass


def git(work: Path, env: dict, *args: str, **extra_env) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", "credential.helper=", *args], cwd=work,
                          env={**env, **extra_env}, capture_output=True, text=True, timeout=30)


def commit_branch(work: Path, env: dict, branch: str, size: int = 100) -> None:
    git(work, env, "checkout", "-q", "-b", branch)
    (work / f"{branch}.bin").write_bytes(os.urandom(size))
    git(work, env, "add", ".")
    git(work, env, "commit", "-q", "-m", f"add {branch}")


def test_git_push_with_token_via_askpass(emu, workdir, token):
    work, env, askpass = workdir
    commit_branch(work, env, "pushed", size=2_000_000)   # > http.postBuffer: chunked upload
    result = git(work, env, "-c", "credential.username=x-access-token", "push", "origin",
                 "pushed", GIT_ASKPASS=str(askpass), EMU_TOKEN=token)
    assert result.returncode == 0, result.stderr
    repo = client(emu, token).get_repo(REPO)
    local = git(work, env, "rev-parse", "HEAD").stdout.strip()
    assert repo.get_branch("pushed").commit.sha == local
    assert repo.create_pull(title="pushed", head="pushed", base="main").head.sha == local


def test_git_push_with_extra_header_from_env(emu, workdir, token):
    work, env, _ = workdir
    commit_branch(work, env, "viaheader")
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    result = git(work, env, "push", "origin", "viaheader", GIT_CONFIG_COUNT="1",
                 GIT_CONFIG_KEY_0="http.extraHeader",
                 GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}")
    assert result.returncode == 0, result.stderr
    assert emu.branch_sha(REPO, "viaheader") == git(work, env, "rev-parse", "HEAD").stdout.strip()


def test_git_push_refused_without_valid_token(emu, workdir, token):
    work, env, askpass = workdir
    commit_branch(work, env, "refused")
    anonymous = git(work, env, "push", "origin", "refused")
    assert anonymous.returncode != 0
    assert ("GET", f"/{REPO}.git/info/refs", 401) in emu.requests_log
    emu.expire_token(token)
    expired = git(work, env, "-c", "credential.username=x-access-token", "push", "origin",
                  "refused", GIT_ASKPASS=str(askpass), EMU_TOKEN=token)
    assert expired.returncode != 0
    read_only = emu.issue_token(INSTALLATION, permissions={"contents": "read"})
    denied = git(work, env, "-c", "credential.username=x-access-token", "push", "origin",
                 "refused", GIT_ASKPASS=str(askpass), EMU_TOKEN=read_only)
    assert denied.returncode != 0 and "denied" in denied.stderr
    assert emu.branch_sha(REPO, "refused") is None


def test_git_private_repo_needs_token_to_fetch(emu, tmp_path, workdir):
    _, env, askpass = workdir
    emu.add_repo("octo-org/private", private=True)
    emu.add_installation(9, "octo-org", ["octo-org/private"])
    url = f"{emu.url}/octo-org/private.git"
    refused = git(tmp_path, env, "clone", "-q", url, str(tmp_path / "p1"))
    assert refused.returncode != 0
    cloned = git(tmp_path, env, "-c", "credential.username=x-access-token", "clone", "-q", url,
                 str(tmp_path / "p2"), GIT_ASKPASS=str(askpass), EMU_TOKEN=emu.issue_token(9))
    assert cloned.returncode == 0, cloned.stderr
    assert (tmp_path / "p2" / "README.md").read_text() == "# private\n"


def test_git_gzip_request_body(emu):
    sha = emu.branch_sha(REPO, "main")
    pkt = lambda s: f"{len(s) + 4:04x}{s}".encode()  # noqa: E731
    body = pkt(f"want {sha} ofs-delta\n") + b"0000" + pkt("done\n")
    resp = requests.post(f"{emu.url}/{REPO}.git/git-upload-pack", data=gzip.compress(body),
                         headers={"Content-Type": "application/x-git-upload-pack-request",
                                  "Content-Encoding": "gzip"}, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/x-git-upload-pack-result"
    assert b"PACK" in resp.content


# -- lifecycle ---------------------------------------------------------------------------------

def test_stop_frees_port_and_data_dir(app_key):
    emu = GitHubEmulator(APP_ID, app_key[1])
    url = emu.start()
    emu.add_repo(REPO)
    assert requests.get(f"{url}/repos/{REPO}", timeout=5).status_code == 200
    port, data_dir = emu.port, emu.data_dir
    emu.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert not data_dir.exists()


def test_standalone_main(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "github_emulator", "--app-id", "3",
                             "--data-dir", str(tmp_path), "--repo", "acme/app"],
                            stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        info = json.loads(proc.stdout.readline())
        private_key = Path(info["private_key_file"]).read_text()
        emu_like = type("E", (), {"url": info["url"]})
        gi = integration(emu_like, private_key, app_id=3)
        assert gi.get_repo_installation("acme", "app").id == info["installation_id"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_pull_from_a_branch_with_unrelated_history_is_refused_like_github(tmp_path):
    """GitHub answers 422 "no history in common", never a 500."""
    import requests
    from github_emulator import GitHubEmulator

    with GitHubEmulator(app_id=1, app_public_key_pem=b"unused") as emu:
        emu.add_repo("o/r")
        token = emu.issue_token(emu.add_installation(1, "o", ["o/r"])["id"])
        orphan = tmp_path / "orphan"
        subprocess.run(["git", "init", "-q", "-b", "main", str(orphan)], check=True)
        (orphan / "x").write_text("x\n")
        subprocess.run(["git", "-C", str(orphan), "add", "."], check=True)
        subprocess.run(["git", "-C", str(orphan), "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "x"],
                       check=True)
        subprocess.run(["git", "-C", str(orphan), "push", "-q", str(emu.repo_path("o/r")), "main:orphan"], check=True)
        response = requests.post(f"{emu.url}/repos/o/r/pulls", headers={"Authorization": f"token {token}"},
                                 json={"title": "t", "head": "orphan", "base": "main"}, timeout=10)
        assert response.status_code == 422
        assert response.json()["errors"][0]["message"] == "The orphan branch has no history in common with main"
