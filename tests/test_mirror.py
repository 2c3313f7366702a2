"""Branch mirroring with real git: a local source repo pushed into the emulator over HTTP."""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.errors import PermanentError, TransientError
from gateway.store import DatabaseTokenCache
from github_app.auth import InstallationTokens
from github_app.client import GitHubApp
from github_app.mirror import mirror_branch
from tests.support.github import (APP_ID, INSTALLATION_ID, REPO, SECRETS, SettableClock,
                                  app_key_pair, seeded_emulator)

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent",
           "GIT_AUTHOR_NAME": "Agent", "GIT_AUTHOR_EMAIL": "agent@example.org",
           "GIT_COMMITTER_NAME": "Agent", "GIT_COMMITTER_EMAIL": "agent@example.org",
           "PATH": "/usr/bin:/bin"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def emu():
    with seeded_emulator() as emu:
        yield emu


@pytest.fixture
def source(tmp_path, emu) -> Path:
    """The upstream agent's clone of REPO, with branch ``agent/fix`` one commit ahead of main."""
    path = tmp_path / "source"
    subprocess.run(["git", "clone", "--quiet", str(emu.repo_path(REPO)), str(path)], env=GIT_ENV,
                   check=True, capture_output=True)
    git(path, "checkout", "--quiet", "-b", "agent/fix")
    (path / "fix.txt").write_text("fixed\n")
    git(path, "add", "fix.txt")
    git(path, "commit", "--quiet", "-m", "Fix it")
    return path


@pytest.fixture
def app(db, emu):
    tokens = InstallationTokens(DatabaseTokenCache(db, SECRETS), app_id=APP_ID,
                                private_key=app_key_pair()[0], api_url=emu.url, clock=SettableClock().now)
    return GitHubApp(tokens, api_url=emu.url, web_url=emu.url)


@pytest.fixture
def workdir(tmp_path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def mirror(emu, source, token, workdir, **overrides) -> str:
    options = dict(source_url=str(source), source_ref="agent/fix", target_repo=REPO,
                   target_branch="gateway/fix", token=token, web_url=emu.url, workdir=workdir)
    options.update(overrides)
    return mirror_branch(**options)


def test_mirror_pushes_branch_to_github(emu, app, source, workdir):
    token = app.tokens.get(INSTALLATION_ID)
    sha = mirror(emu, source, token, workdir)
    assert sha == git(source, "rev-parse", "agent/fix")
    assert app.branch_sha(INSTALLATION_ID, REPO, "gateway/fix") == sha
    assert list(workdir.iterdir()) == []          # the temp repo is gone
    pr, created = app.open_or_reuse_pull_request(INSTALLATION_ID, REPO, head="gateway/fix",
                                                 base="main", title="Fix", body="")
    assert created and pr.head_sha == sha


def test_mirror_replaces_a_rebased_branch(emu, app, source, workdir):
    token = app.tokens.get(INSTALLATION_ID)
    mirror(emu, source, token, workdir)
    git(source, "commit", "--quiet", "--amend", "-m", "second, reworded")
    sha = mirror(emu, source, token, workdir)
    assert app.branch_sha(INSTALLATION_ID, REPO, "gateway/fix") == sha
    git(source, "commit", "--quiet", "--amend", "-m", "third wording")
    with pytest.raises(PermanentError, match="has commits the source lacks"):
        mirror(emu, source, token, workdir, force=False)


def test_token_never_in_argv_trace_or_files(emu, app, source, workdir, tmp_path, monkeypatch):
    """Wrap git: log every argv (GIT_TRACE shows sub-commands too) and snapshot the temp repo."""
    token = app.tokens.get(INSTALLATION_ID)
    real_git = shutil.which("git")
    bin_dir, trace, argv_log, snapshot = (tmp_path / "bin", tmp_path / "trace.log",
                                          tmp_path / "argv.log", tmp_path / "snapshot")
    bin_dir.mkdir()
    snapshot.mkdir()
    wrapper = bin_dir / "git"
    wrapper.write_text(f"""#!/bin/sh
printf '%s\\n' "$*" >> '{argv_log}'
GIT_TRACE='{trace}' '{real_git}' "$@"
status=$?
cp -r '{workdir}/.' '{snapshot}/' 2>/dev/null
exit $status
""")
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    mirror(emu, source, token, workdir)
    secrets = (token, base64.b64encode(f"x-access-token:{token}".encode()).decode())
    assert "push" in argv_log.read_text() and "run_command" in trace.read_text()
    for text in (argv_log.read_text(), trace.read_text()):
        assert not any(s in text for s in secrets)
    files = [p for p in snapshot.rglob("*") if p.is_file()]
    assert any(p.name == "config" for p in files)
    for path in files:
        data = path.read_bytes()
        assert not any(s.encode() in data for s in secrets), path


def test_missing_source_ref_is_permanent(emu, app, source, workdir):
    with pytest.raises(PermanentError) as raised:
        mirror(emu, source, app.tokens.get(INSTALLATION_ID), workdir, source_ref="nope")
    assert str(raised.value) == f"Branch or ref 'nope' not found at {source}"
    assert list(workdir.iterdir()) == []


def test_push_with_bad_token_fails_without_leaking_it(emu, source, workdir):
    bad = "ghs_" + "x" * 36
    with pytest.raises(TransientError) as raised:
        mirror(emu, source, bad, workdir)
    assert bad not in str(raised.value) and "x-access-token" not in str(raised.value)
    assert "refused the installation token" in str(raised.value)
    assert emu.branch_sha(REPO, "gateway/fix") is None
    assert list(workdir.iterdir()) == []


def test_push_with_expired_token_is_transient(emu, app, source, workdir):
    token = app.tokens.get(INSTALLATION_ID)
    emu.expire_all_tokens()
    with pytest.raises(TransientError):
        mirror(emu, source, token, workdir)


def test_push_without_contents_write_is_permission_denied(source, workdir):
    with seeded_emulator(permissions={"metadata": "read", "contents": "read",
                                      "pull_requests": "write"}) as emu:
        token = emu.issue_token(INSTALLATION_ID)
        with pytest.raises(PermanentError, match="Permission denied") as raised:
            mirror(emu, source, token, workdir)
    assert token not in str(raised.value)


def test_push_to_unknown_repo_is_permanent(emu, app, source, workdir):
    with pytest.raises(PermanentError, match="octo/nothing not found"):
        mirror(emu, source, app.tokens.get(INSTALLATION_ID), workdir, target_repo="octo/nothing")


def test_unreachable_source_is_transient_and_hides_credentials(emu, workdir):
    with seeded_emulator() as gone:
        url = gone.url
    with pytest.raises(TransientError) as raised:
        mirror(emu, None, "ghs_unused", workdir,
               source_url=url.replace("http://", "http://agent:hunter2@") + "/o/r.git")
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("source_url", [
    "ext::sh -c touch% /tmp/pwned", "fd::17", "-uhelp", "--upload-pack=touch /tmp/pwned",
    "ftp://example.org/repo.git", "http://example.org/\nrepo"])
def test_refuses_dangerous_sources(emu, workdir, source_url):
    with pytest.raises(PermanentError, match="Refusing source URL"):
        mirror(emu, None, "ghs_unused", workdir, source_url=source_url)
    assert not Path("/tmp/pwned").exists()


@pytest.mark.parametrize("ref", ["-x", "a:b", "main^", "x..y", "", "refs/heads/a b"])
def test_refuses_odd_refs(emu, source, workdir, ref):
    with pytest.raises(PermanentError, match="Not a valid"):
        mirror(emu, source, "ghs_unused", workdir, source_ref=ref)
    with pytest.raises(PermanentError, match="Not a valid"):
        mirror(emu, source, "ghs_unused", workdir, target_branch=ref or ".")
