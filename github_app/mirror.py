"""Copying a branch from wherever the upstream system keeps it onto GitHub, with git.

Its sole purpose: fetch one ref from an untrusted source (a URL or a local path) into a throw-away
bare repository and push it as a branch of the target repository, authenticated with an
installation token. The source is treated as hostile: only plain transports are allowed (no
``ext::``/``fd::`` helpers, no option-looking arguments), git runs with no system or user
configuration, and never prompts. The token travels only in the environment of the push (an
``http.<web_url>/.extraHeader`` set through ``GIT_CONFIG_*``): never in argv, a URL, a config
file, a log line or an exception message. It does not open pull requests or fetch tokens.
"""
from __future__ import annotations

import base64
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from gateway.errors import PermanentError, TransientError

from .errors import scrub

ALLOWED_PROTOCOLS = ("file", "https", "http", "git", "ssh")
_PASSED_ENV = ("PATH", "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "GIT_EXEC_PATH",
               "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./@+-]*")
_NETWORK = ("could not resolve host", "failed to connect", "connection refused", "timed out",
            "connection reset", "connection timed out", "operation timed out", "early eof",
            "the remote end hung up unexpectedly", "returned error: 5", "http/2 stream",
            "ssl_", "gnutls", "recv failure", "send failure", "empty reply from server")
_AUTH_REFUSED = ("returned error: 401", "authentication failed", "could not read username",
                 "could not read password", "terminal prompts disabled", "invalid username or")


def mirror_branch(*, source_url: str, source_ref: str, target_repo: str, target_branch: str,
                  token: str, web_url: str, workdir: Path | None = None, timeout: float = 300,
                  force: bool = True) -> str:
    """Make ``target_branch`` of ``target_repo`` point at ``source_ref`` of ``source_url``.

    Returns the pushed commit sha. ``force`` (the default, mirror semantics) lets a rebased
    source replace the branch; callers must never aim this at a branch people work on.
    """
    _check_source(source_url)
    if "://" not in source_url and Path(source_url).exists():
        source_url = str(Path(source_url).resolve())   # git runs with -C in the temp repo
    _check_ref("source ref", source_ref)
    _check_ref("target branch", target_branch)
    if not _REPO.fullmatch(target_repo):
        raise PermanentError(f"Not a GitHub repository name: {target_repo!r} (expected owner/name)")
    web_url = web_url.rstrip("/")
    shown_source = display_url(source_url)
    deadline = time.monotonic() + timeout
    target_ref = f"refs/heads/{target_branch}"

    with tempfile.TemporaryDirectory(prefix="gateway-mirror-", dir=workdir) as tmp:
        home, repo_dir = Path(tmp) / "home", Path(tmp) / "repo.git"
        home.mkdir()
        env = _base_env(home)
        run = _Runner(env, deadline, secrets=(token, _basic(token)))

        run(["check-ref-format", target_ref],
            fail=lambda _: PermanentError(f"Not a valid branch name: {target_branch!r}"))
        run(["-c", "init.defaultBranch=main", "init", "--bare", "--quiet", str(repo_dir)])
        run(["-c", "gc.auto=0", "-c", "maintenance.auto=false", "-C", str(repo_dir),
             "fetch", "--no-tags", "--no-recurse-submodules", "--quiet",
             "--", source_url, f"+{source_ref}:{target_ref}"],
            fail=lambda stderr: _fetch_error(stderr, source_ref, shown_source))
        sha = run(["-C", str(repo_dir), "rev-parse", "--verify", "--quiet",
                   f"{target_ref}^{{commit}}"],
                  fail=lambda _: PermanentError(
                      f"Branch or ref '{source_ref}' at {shown_source} is not a commit")).strip()

        push_env = dict(env, GIT_CONFIG_COUNT="1",
                        GIT_CONFIG_KEY_0=f"http.{web_url}/.extraHeader",
                        GIT_CONFIG_VALUE_0=f"Authorization: Basic {_basic(token)}")
        refspec = ("+" if force else "") + f"{target_ref}:{target_ref}"
        run(["-c", "http.followRedirects=false", "-C", str(repo_dir), "push", "--quiet",
             "--no-verify", "--", f"{web_url}/{target_repo}.git", refspec],
            env=push_env, fail=lambda stderr: _push_error(stderr, target_repo, target_branch))
        return sha


def display_url(url: str) -> str:
    """``url`` without any user:password part, for messages."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


def _basic(token: str) -> str:
    return base64.b64encode(f"x-access-token:{token}".encode()).decode()


def _check_source(url: str) -> None:
    if not url or url.startswith("-") or any(c in url for c in "\r\n\0"):
        raise PermanentError("Refusing source URL: it must be a repository URL or path")
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if "::" in url.split("/", 1)[0] or (scheme and scheme not in ALLOWED_PROTOCOLS):
        raise PermanentError(f"Refusing source URL {display_url(url)}: only "
                             f"{', '.join(ALLOWED_PROTOCOLS)} and local paths are allowed")


def _check_ref(what: str, ref: str) -> None:
    if not ref or not _REF.fullmatch(ref) or ".." in ref or ref.endswith((".", "/", ".lock")):
        raise PermanentError(f"Not a valid {what}: {ref!r}")


def _base_env(home: Path) -> dict[str, str]:
    """A clean environment: no inherited GIT_* settings, no user or system config, no prompts."""
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home), LC_ALL="C", LANG="C",
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
               GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="", SSH_ASKPASS="",
               GIT_SSH_COMMAND="ssh -o BatchMode=yes",
               GIT_ALLOW_PROTOCOL=":".join(ALLOWED_PROTOCOLS))
    return env


class _Runner:
    """Runs git under one deadline; on failure raises what ``fail`` makes of scrubbed stderr."""

    def __init__(self, env: dict[str, str], deadline: float, secrets: tuple[str, ...]):
        self.env, self.deadline, self.secrets = env, deadline, secrets

    def __call__(self, args: list[str], *, env: dict[str, str] | None = None, fail=None) -> str:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TransientError("Mirroring the branch took too long; will retry")
        try:
            done = subprocess.run(["git", *args], env=env or self.env, capture_output=True,
                                  stdin=subprocess.DEVNULL, timeout=remaining)
        except subprocess.TimeoutExpired:
            raise TransientError("Mirroring the branch took too long; will retry") from None
        except FileNotFoundError:
            raise PermanentError("git is not installed on this machine") from None
        if done.returncode != 0:
            stderr = scrub(done.stderr.decode(errors="replace"), *self.secrets).strip()
            if fail is None:
                raise PermanentError(f"git {args[-1] if args else ''} failed: {stderr[-500:]}")
            raise fail(stderr)
        return done.stdout.decode(errors="replace")


def _fetch_error(stderr: str, ref: str, source: str) -> Exception:
    lower = stderr.lower()
    if "couldn't find remote ref" in lower or "invalid refspec" in lower:
        return PermanentError(f"Branch or ref '{ref}' not found at {source}")
    if "not allowed" in lower or "unsupported protocol" in lower:
        return PermanentError(f"Refusing source URL {source}: transport not allowed")
    if any(s in lower for s in _NETWORK):
        return TransientError(f"Could not fetch from {source}: {_last_line(stderr)}")
    if any(s in lower for s in _AUTH_REFUSED):
        return PermanentError(f"The source {source} asks for credentials; the gateway can only "
                              "fetch public or local repositories")
    return PermanentError(f"Could not fetch '{ref}' from {source}: {_last_line(stderr)}")


def _push_error(stderr: str, repo: str, branch: str) -> Exception:
    lower = stderr.lower()
    if "returned error: 403" in lower or ("permission to" in lower and "denied" in lower):
        return PermanentError(f"Permission denied: the App needs 'Contents: write' on {repo} "
                              f"to push branch '{branch}'")
    if any(s in lower for s in _AUTH_REFUSED):
        return TransientError(f"GitHub refused the installation token when pushing to {repo}; "
                              "it may have just expired, will retry with a new one")
    if "returned error: 404" in lower or "repository not found" in lower:
        return PermanentError(f"Repository {repo} not found, or the GitHub App is not installed "
                              "on it")
    if any(s in lower for s in _NETWORK):
        return TransientError(f"Could not push to {repo}: {_last_line(stderr)}")
    if "non-fast-forward" in lower or "fetch first" in lower:
        return PermanentError(f"Branch '{branch}' on {repo} has commits the source lacks; "
                              "not overwriting it")
    return PermanentError(f"Pushing branch '{branch}' to {repo} failed: {_last_line(stderr)}")


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return (lines[-1] if lines else "git failed")[:300]
