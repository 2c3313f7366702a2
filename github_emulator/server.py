"""GitHubEmulator: a local, real-HTTP stand-in for github.com and api.github.com.

Its sole purpose is to be started and stopped from Python (tests, benchmarks, the sandbox demo)
and seeded and inspected there: installations, repos, branches, "a user commented", armed
faults, the secondary rate limits it enforces (GitHub's values by default) and their books.
``emu.url`` is both PyGithub's ``base_url`` and the git remote root
(``{url}/{owner}/{repo}.git``). It is not a GitHub clone: only the REST endpoints and git
transport the gateway uses exist, and webhooks are not delivered (``sign_webhook`` helps tests
build their own). It shares no code with the product: nothing from ``github_app``, ``gateway``,
``inbound`` or ``outbound``.
"""
from __future__ import annotations

import hashlib
import hmac
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

from . import gitrepo, pulls
from .api import RateLimiter, Router
from .auth import basic_password
from .faults import Fault, FaultInjector
from .handler import EmulatorHTTPServer
from .limits import CONTENT_LIMITS, MAX_CONCURRENT, SecondaryLimits
from .routes_app import AppRoutes
from .routes_repo import RepoRoutes
from .shapes import comment_json, installation_json, pull_json, repo_json
from .state import State


class GitHubEmulator:
    """A GitHub App's view of GitHub, served on 127.0.0.1.

    ``emu.start()`` returns the URL; ``emu.stop()`` closes the port, cuts open connections
    and removes the data directory if the emulator created it.

    ``content_limits`` (``((count, seconds), ...)``; None or ``()``: off) and ``max_concurrent``
    (None: off) are GitHub's secondary limits per installation token; ``seed`` seeds the RNG of
    faults injected with a ``probability``.
    """

    def __init__(self, app_id: int, app_public_key_pem: str | bytes,
                 webhook_secret: str | None = None, bot_login: str = "gateway-sandbox[bot]",
                 data_dir: Path | str | None = None, *,
                 host: str = "127.0.0.1", port: int = 0, token_ttl: float = 3600,
                 rate_limit: int = 5000, clock: Callable[[], float] = time.time,
                 content_limits: Iterable[tuple[int, float]] | None = CONTENT_LIMITS,
                 max_concurrent: int | None = MAX_CONCURRENT, seed: int | None = None) -> None:
        slug = bot_login[:-len("[bot]")] if bot_login.endswith("[bot]") else bot_login
        self.state = State(app_id=int(app_id), app_slug=slug, bot_login=bot_login, clock=clock)
        self.app_public_key_pem = app_public_key_pem
        self.webhook_secret = webhook_secret
        self.host, self.port, self.token_ttl = host, port, token_ttl
        self._own_data_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="gh-emu-"))
        self.faults = FaultInjector(seed)
        # (method, path, status) per answered request; status 0: a ``drop`` fault, no answer.
        self.requests_log: list[tuple[str, str, int]] = []
        self._log_lock = threading.Lock()
        self.limiter = RateLimiter(self.state, rate_limit)
        self.limits = SecondaryLimits(self.state.clock, content_limits, max_concurrent)
        self.router = Router(self.state, app_public_key_pem, self.limiter, self.limits)
        AppRoutes(self.state, token_ttl, self.limiter).register(self.router)
        RepoRoutes(self.state).register(self.router)
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        if self._server is not None:
            return self.url
        self._server = EmulatorHTTPServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"github-emulator:{self.port}", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
            self._thread.join(timeout=5)
        if self._own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "GitHubEmulator":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- seeding -----------------------------------------------------------------------------
    def add_installation(self, installation_id: int, account: str, repositories=(),
                         permissions: dict[str, str] | None = None,
                         account_type: str = "Organization") -> dict:
        """Install the App on ``account`` for ``repositories`` ("owner/name").

        Default permissions: contents, pull_requests and issues write; metadata read.
        """
        inst = self.state.add_installation(int(installation_id), account, list(repositories),
                                           permissions, account_type)
        return installation_json(self.state, inst, self.url)

    def add_repo(self, full_name: str, default_branch: str = "main", private: bool = False,
                 files: dict[str, str] | None = None) -> dict:
        """Create a bare repo with one commit on ``default_branch``."""
        owner, name = full_name.split("/", 1)
        if self.state.repo(full_name) is not None:
            raise ValueError(f"repo exists: {full_name}")
        path = self.data_dir / owner / f"{name}.git"
        gitrepo.init_bare(path, default_branch)
        sha = gitrepo.commit_files(path, None, files or {"README.md": f"# {name}\n"},
                                   "Initial commit")
        gitrepo.update_ref(path, f"refs/heads/{default_branch}", sha)
        repo = self.state.add_repo(full_name, private, default_branch, path)
        return repo_json(repo, self.url)

    def _repo(self, full_name: str):
        repo = self.state.repo(full_name)
        if repo is None:
            raise KeyError(f"no such repo: {full_name}")
        return repo

    def create_branch(self, repo: str, name: str, from_ref: str = "main",
                      files: dict[str, str | None] | None = None, message: str | None = None
                      ) -> str:
        """Make branch ``name`` from ``from_ref``, with one commit of ``files`` if given."""
        r = self._repo(repo)
        parent = gitrepo.rev_parse(r.path, from_ref)
        if parent is None:
            raise KeyError(f"no such ref in {repo}: {from_ref}")
        sha = (gitrepo.commit_files(r.path, parent, files, message or f"Update {name}")
               if files else parent)
        gitrepo.update_ref(r.path, f"refs/heads/{name}", sha)
        return sha

    def commit(self, repo: str, branch: str, files: dict[str, str | None],
               message: str = "Update") -> str:
        """Add a commit to an existing branch (e.g. to move a PR's head); returns its sha."""
        r = self._repo(repo)
        parent = gitrepo.rev_parse(r.path, f"refs/heads/{branch}")
        sha = gitrepo.commit_files(r.path, parent, files, message)
        gitrepo.update_ref(r.path, f"refs/heads/{branch}", sha, parent)
        return sha

    def branch_sha(self, repo: str, branch: str) -> str | None:
        return gitrepo.rev_parse(self._repo(repo).path, f"refs/heads/{branch}")

    def repo_path(self, repo: str) -> Path:
        return self._repo(repo).path

    # -- acting as people --------------------------------------------------------------------
    def add_pull_as(self, repo: str, login: str, head: str, base: str, title: str,
                    body: str | None = None) -> dict:
        r = self._repo(repo)
        pull = pulls.create_pull(self.state, r, self.state.user(login), title=title, head=head,
                                 base=base, body=body)
        return pull_json(self.state, r, pull, self.url)

    def add_comment_as(self, repo: str, number: int, login: str, body: str) -> dict:
        r = self._repo(repo)
        comment = pulls.add_comment(self.state, r, number, self.state.user(login), body)
        return comment_json(self.state, r, comment, self.url)

    def merge_pull_as(self, repo: str, number: int, login: str, merge_method: str = "merge"
                      ) -> dict:
        return pulls.merge_pull(self.state, self._repo(repo), number, self.state.user(login),
                                method=merge_method)

    def close_pull(self, repo: str, number: int) -> dict:
        r = self._repo(repo)
        return pull_json(self.state, r, pulls.update_pull(self.state, r, number,
                                                          new_state="closed"), self.url)

    # -- inspection ----------------------------------------------------------------------------
    def pulls(self, repo: str) -> list[dict]:
        r = self._repo(repo)
        found = pulls.list_pulls(self.state, r, state_filter="all", direction="asc")
        return [pull_json(self.state, r, p, self.url) for p in found]

    def pull(self, repo: str, number: int) -> dict:
        r = self._repo(repo)
        return pull_json(self.state, r, pulls.get_pull(self.state, r, number), self.url)

    def comments(self, repo: str, number: int) -> list[dict]:
        r = self._repo(repo)
        return [comment_json(self.state, r, c, self.url)
                for c in pulls.list_comments(self.state, r, number)]

    def record(self, method: str, path: str, status: int) -> None:
        with self._log_lock:
            self.requests_log.append((method, path, status))

    # -- secondary rate limits ---------------------------------------------------------------
    @property
    def content_limits(self) -> tuple[tuple[int, float], ...]:
        return self.limits.content_limits

    @content_limits.setter
    def content_limits(self, limits: Iterable[tuple[int, float]] | None) -> None:
        self.limits.set_content_limits(limits)

    def set_content_limits(self, limits: Iterable[tuple[int, float]] | None) -> None:
        """E.g. ``((3, 1.0),)`` to scale GitHub's windows down in a test; None or ``()``: off.

        Applies to the next request of a running emulator; accepted writes still count."""
        self.limits.set_content_limits(limits)

    @property
    def max_concurrent(self) -> int | None:
        return self.limits.max_concurrent

    @max_concurrent.setter
    def max_concurrent(self, value: int | None) -> None:
        self.limits.set_max_concurrent(value)

    def set_max_concurrent(self, value: int | None) -> None:
        """Requests in flight per installation before 403 + ``Retry-After: 1``; None: off."""
        self.limits.set_max_concurrent(value)

    @property
    def limit_hits(self) -> int:
        """Requests refused by a secondary limit (content or concurrency), all installations."""
        return self.limits.hits()

    def limit_hits_for(self, installation_id: int, kind: str | None = None) -> int:
        """Refusals of one installation; ``kind``: "content" or "concurrency" (None: both)."""
        return self.limits.hits(installation_id, kind)

    def content_writes(self, installation_id: int) -> list[float]:
        """When each accepted content-creating request of the installation arrived, oldest
        first, since start or ``reset_limits()``: the emulator's clock (epoch seconds by default),
        so a benchmark can compare a burst with the windows."""
        return self.limits.content_writes(installation_id)

    def in_flight(self, installation_id: int) -> int:
        return self.limits.in_flight(installation_id)

    def reset_limits(self) -> None:
        """Empty the content windows (and ``content_writes``) and the refusal counters."""
        self.limits.reset()

    # -- tokens ----------------------------------------------------------------------------
    def issue_token(self, installation_id: int, permissions: dict[str, str] | None = None,
                    repositories: list[str] | None = None, ttl: float | None = None) -> str:
        """An installation token without going through the API (for git-only tests)."""
        inst = self.state.installations[int(installation_id)]
        return self.state.issue_token(inst.id, self.token_ttl if ttl is None else ttl,
                                      permissions or inst.permissions, repositories).value

    def expire_token(self, token: str) -> None:
        self.state.expire_tokens(value=token)

    def expire_all_tokens(self) -> None:
        self.state.expire_tokens()

    def revoke_token(self, token: str) -> None:
        with self.state.lock:
            if token in self.state.tokens:
                self.state.tokens[token].revoked = True

    def installation_hint(self, headers) -> int | None:
        """The installation a request's token belongs to (valid or not), for error bodies."""
        value = _presented_token(headers)
        with self.state.lock:
            token = self.state.tokens.get(value) if value else None
        return token.installation_id if token else None

    def apply_expiry(self, fault: Fault, headers) -> None:
        if fault.token is not None or fault.installation_id is not None:
            self.state.expire_tokens(value=fault.token, installation_id=fault.installation_id)
        elif (value := _presented_token(headers)) is not None:
            self.state.expire_tokens(value=value)

    # -- webhooks ------------------------------------------------------------------------------
    def sign_webhook(self, body: bytes) -> str:
        """``X-Hub-Signature-256`` value for ``body`` under the webhook secret."""
        if not self.webhook_secret:
            raise ValueError("the emulator has no webhook_secret")
        digest = hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        return f"sha256={digest}"


def _presented_token(headers) -> str | None:
    header = headers.get("Authorization") or ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip().startswith("ghs_"):
        return value.strip()
    return basic_password(header)
