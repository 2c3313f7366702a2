"""The emulator's in-memory world: users, the App, installations, tokens, repos, PRs, comments.

Its sole purpose is to hold records and hand out ids under one lock. Git content (branches,
commits) is not stored here: it lives in the bare repositories and is read live through
:mod:`gitrepo`. Pull-request and comment rules are in :mod:`pulls`; JSON shapes in :mod:`shapes`.
"""
from __future__ import annotations

import base64
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

DEFAULT_PERMISSIONS = {"metadata": "read", "contents": "write", "pull_requests": "write",
                       "issues": "write"}
LEVELS = {"read": 1, "write": 2, "admin": 3}


def node_id(prefix: str, number: int) -> str:
    return f"{prefix}_kwDO{base64.b64encode(str(number).encode()).decode().rstrip('=')}"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class User:
    login: str
    id: int
    type: str = "User"   # "User", "Bot" or "Organization"


@dataclass
class Installation:
    id: int
    account: User
    repositories: list[str]          # lower-cased full names
    permissions: dict[str, str]
    created_at: float


@dataclass
class Token:
    value: str
    installation_id: int
    expires_at: float
    permissions: dict[str, str]
    repositories: list[str] | None   # None: all of the installation's repositories
    revoked: bool = False


@dataclass
class Repo:
    id: int
    owner: User
    name: str
    private: bool
    default_branch: str
    path: Path
    created_at: float
    next_number: int = 1

    @property
    def full_name(self) -> str:
        return f"{self.owner.login}/{self.name}"

    @property
    def key(self) -> str:
        return self.full_name.lower()


@dataclass
class Pull:
    id: int
    number: int
    repo_key: str
    title: str
    body: str | None
    user: User
    head_ref: str
    base_ref: str
    draft: bool
    maintainer_can_modify: bool
    created_at: float
    updated_at: float
    via_app: bool
    state: str = "open"
    closed_at: float | None = None
    merged_at: float | None = None
    merged_by: User | None = None
    merge_commit_sha: str | None = None
    frozen_head_sha: str | None = None     # head sha once closed (the branch may move or go)
    frozen_base_sha: str | None = None
    frozen_stats: tuple[int, int, int, int] | None = None   # commits, additions, deletions, files


@dataclass
class Comment:
    id: int
    repo_key: str
    number: int
    body: str
    user: User
    created_at: float
    updated_at: float
    via_app: bool


@dataclass
class State:
    """Everything the emulator knows, guarded by ``lock``."""

    app_id: int
    app_slug: str
    bot_login: str
    clock: Callable[[], float] = time.time
    lock: threading.RLock = field(default_factory=threading.RLock)
    users: dict[str, User] = field(default_factory=dict)
    installations: dict[int, Installation] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    repos: dict[str, Repo] = field(default_factory=dict)
    pulls: dict[tuple[str, int], Pull] = field(default_factory=dict)
    comments: dict[int, Comment] = field(default_factory=dict)
    _ids: dict[str, int] = field(default_factory=lambda: {
        "user": 1000, "repo": 500000, "pull": 2000000000, "comment": 3000000000})
    bot: User = field(init=False)

    def __post_init__(self) -> None:
        self.bot = self.user(self.bot_login, "Bot")

    def next_id(self, kind: str) -> int:
        with self.lock:
            self._ids[kind] += 1
            return self._ids[kind]

    # -- users -----------------------------------------------------------------------------
    def user(self, login: str, type: str = "User") -> User:
        with self.lock:
            found = self.users.get(login.lower())
            if found is None:
                found = User(login, self.next_id("user"), type)
                self.users[login.lower()] = found
            return found

    # -- installations and tokens ------------------------------------------------------------
    def add_installation(self, installation_id: int, account: str, repositories: list[str],
                         permissions: dict[str, str] | None, account_type: str) -> Installation:
        with self.lock:
            inst = Installation(installation_id, self.user(account, account_type),
                                [r.lower() for r in repositories],
                                dict(permissions or DEFAULT_PERMISSIONS), self.clock())
            inst.permissions.setdefault("metadata", "read")
            self.installations[installation_id] = inst
            return inst

    def installation_for_repo(self, repo_key: str) -> Installation | None:
        with self.lock:
            for inst in self.installations.values():
                if repo_key.lower() in inst.repositories:
                    return inst
            return None

    def issue_token(self, installation_id: int, ttl: float, permissions: dict[str, str],
                    repositories: list[str] | None) -> Token:
        alphabet = string.ascii_letters + string.digits
        value = "ghs_" + "".join(secrets.choice(alphabet) for _ in range(36))
        token = Token(value, installation_id, self.clock() + ttl, dict(permissions),
                      [r.lower() for r in repositories] if repositories is not None else None)
        with self.lock:
            self.tokens[value] = token
        return token

    def live_token(self, value: str) -> Token | None:
        """The token if it exists, is not revoked, has not expired and its installation exists."""
        with self.lock:
            token = self.tokens.get(value)
            if (token is None or token.revoked or token.expires_at <= self.clock()
                    or token.installation_id not in self.installations):
                return None
            return token

    def token_repos(self, token: Token) -> list[str]:
        with self.lock:
            inst = self.installations.get(token.installation_id)
            allowed = inst.repositories if inst else []
            if token.repositories is None:
                return list(allowed)
            return [r for r in token.repositories if r in allowed]

    def expire_tokens(self, *, value: str | None = None, installation_id: int | None = None) -> int:
        """Make matching tokens (all when no filter is given) expire now; return how many."""
        with self.lock:
            hit = 0
            for token in self.tokens.values():
                if value is not None and token.value != value:
                    continue
                if installation_id is not None and token.installation_id != installation_id:
                    continue
                token.expires_at = min(token.expires_at, self.clock() - 1)
                hit += 1
            return hit

    # -- repos ----------------------------------------------------------------------------
    def add_repo(self, full_name: str, private: bool, default_branch: str, path: Path) -> Repo:
        owner, name = full_name.split("/", 1)
        with self.lock:
            repo = Repo(self.next_id("repo"), self.user(owner, "Organization"), name, private,
                        default_branch, path, self.clock())
            self.repos[repo.key] = repo
            return repo

    def repo(self, full_name: str) -> Repo | None:
        with self.lock:
            return self.repos.get(full_name.lower())


def grants(permissions: dict[str, str], name: str, level: str) -> bool:
    return LEVELS.get(permissions.get(name, ""), 0) >= LEVELS[level]
