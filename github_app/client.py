"""The product's GitHub verbs, spoken as the App's installation.

Its sole purpose is the handful of repository calls the gateway makes: find the default branch
and a branch head, open (or reuse) a pull request, read it, comment on it idempotently, merge it.
Each call runs with a fresh PyGithub client on the installation's token, with PyGithub's own
retries and sleeps switched off (the job queue retries), a single re-try after a 401 with a new
token, and GitHub's errors translated into TransientError / PermanentError. Content-creating
calls take a slot from the WritePacer first. Tokens come from :mod:`github_app.auth`; branch
pushes are :mod:`github_app.mirror`. Records returned are frozen dataclasses, never PyGithub objects.
"""
from __future__ import annotations

import threading

from dataclasses import dataclass
from typing import Callable, TypeVar

from github import Auth, Github
from github.GithubException import GithubException

from gateway.errors import PermanentError, TransientError

from .auth import InstallationTokens, pygithub_timeout
from .errors import FRESH_TOKEN_REFUSED, field_errors, github_message, translate
from .pacing import WritePacer

T = TypeVar("T")
MERGE_METHODS = ("merge", "squash", "rebase")
PR_WRITE = "Pull requests: write"
PR_READ = "Pull requests: read"
CONTENTS_WRITE = "Contents: write"
CONTENTS_READ = "Contents: read"


@dataclass(frozen=True)
class PullRequestInfo:
    number: int
    url: str          # html_url
    head_sha: str
    state: str        # "open" or "closed"
    merged: bool
    title: str


@dataclass(frozen=True)
class CommentInfo:
    id: int
    url: str          # html_url
    body: str
    author: str


@dataclass(frozen=True)
class MergeResult:
    merged: bool
    sha: str | None
    message: str
    already_merged: bool = False  # merged before this call (a retry, or someone on GitHub)


class MergeRefused(PermanentError):
    """GitHub would not merge (not mergeable, head moved, checks failing); ``reason`` is its word."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class GitHubApp:
    """The App acting on repositories of its installations."""

    def __init__(self, tokens: InstallationTokens, *, api_url: str, web_url: str,
                 pacer: WritePacer | None = None, timeout: float = 15):
        self.tokens = tokens
        self.api_url = api_url.rstrip("/")
        self.web_url = web_url.rstrip("/")
        self.pacer = pacer
        self.timeout = timeout
        self._clients = threading.local()

    # -- reads ----------------------------------------------------------------------------------
    def default_branch(self, installation_id: int, repo: str) -> str:
        return self._call(installation_id, repo, lambda gh: gh.get_repo(repo).default_branch,
                          permission="Metadata: read")

    def branch_sha(self, installation_id: int, repo: str, branch: str) -> str:
        return self._call(installation_id, repo,
                          lambda gh: gh.get_repo(repo).get_branch(branch).commit.sha,
                          permission=CONTENTS_READ,
                          not_found=f"Branch '{branch}' not found in {repo}")

    def get_pull_request(self, installation_id: int, repo: str, number: int) -> PullRequestInfo:
        return self._call(installation_id, repo,
                          lambda gh: _pull_info(gh.get_repo(repo).get_pull(number)),
                          permission=PR_READ,
                          not_found=f"Pull request #{number} not found in {repo}")

    # -- writes ---------------------------------------------------------------------------------
    def open_or_reuse_pull_request(self, installation_id: int, repo: str, *, head: str, base: str,
                                   title: str, body: str) -> tuple[PullRequestInfo, bool]:
        """The open PR for ``head`` -> ``base`` (created=False), else a new one (created=True)."""
        owner = repo.split("/", 1)[0]
        head_filter = head if ":" in head else f"{owner}:{head}"
        head_branch = head.split(":", 1)[-1]
        pace = self._pace_once(installation_id)

        def find(gh: Github) -> PullRequestInfo | None:
            for pull in gh.get_repo(repo).get_pulls(state="open", head=head_filter, base=base):
                return _pull_info(pull)
            return None

        def open_pull(gh: Github) -> tuple[PullRequestInfo, bool]:
            existing = find(gh)
            if existing is not None:
                return existing, False
            pace()
            try:
                pull = gh.get_repo(repo).create_pull(base=base, head=head, title=title, body=body)
            except GithubException as exc:
                if exc.status != 422:
                    raise
                if "already exists" in github_message(exc).lower():
                    existing = find(gh)   # another worker won the race
                    if existing is not None:
                        return existing, False
                invalid = {e.get("field") for e in field_errors(exc) if e.get("code") == "invalid"}
                if "head" in invalid:
                    raise PermanentError(f"Branch '{head_branch}' not found in {repo}") from None
                if "base" in invalid:
                    raise PermanentError(f"Branch '{base}' not found in {repo}") from None
                raise PermanentError(f"GitHub would not open a pull request from '{head_branch}' "
                                     f"into '{base}' on {repo}: {github_message(exc)}") from None
            return _pull_info(pull), True

        return self._call(installation_id, repo, open_pull, permission=PR_WRITE)

    def post_comment(self, installation_id: int, repo: str, number: int, body: str,
                     marker: str, *, may_exist: bool = True) -> CommentInfo:
        """Comment on the PR once per ``marker``: a retry finds the earlier comment instead.

        The marker (say ``<!-- gateway:reply:42 -->``) is appended to the body if absent.
        ``may_exist=False`` (a first attempt, which cannot have posted) skips the search,
        which pages through every comment on the PR and costs rate limit.
        """
        if not marker:
            raise ValueError("post_comment needs a non-empty marker")
        text = body if marker in body else f"{body}\n\n{marker}"
        pace = self._pace_once(installation_id)

        def comment(gh: Github) -> CommentInfo:
            issue = gh.get_repo(repo).get_issue(number)
            for earlier in issue.get_comments() if may_exist else ():
                if marker in (earlier.body or ""):
                    return _comment_info(earlier)
            pace()
            return _comment_info(issue.create_comment(text))

        return self._call(installation_id, repo, comment, permission=PR_WRITE,
                          not_found=f"Pull request #{number} not found in {repo}")

    def merge(self, installation_id: int, repo: str, number: int, *, method: str = "squash",
              expected_head_sha: str | None = None) -> MergeResult:
        """Merge the PR; already merged counts as success (a retry after a crash)."""
        if method not in MERGE_METHODS:
            raise ValueError(f"merge method must be one of {MERGE_METHODS}, not {method!r}")
        pace = self._pace_once(installation_id)

        def merge(gh: Github) -> MergeResult:
            pull = gh.get_repo(repo).get_pull(number)
            if pull.merged:
                return MergeResult(True, pull.merge_commit_sha, "Pull request was already merged",
                                   already_merged=True)
            pace()
            options = {"merge_method": method}
            if expected_head_sha:
                options["sha"] = expected_head_sha
            try:
                status = pull.merge(**options)
            except GithubException as exc:
                if exc.status in (405, 409, 422):
                    reason = github_message(exc)
                    raise MergeRefused(f"GitHub refused to merge {repo}#{number}: {reason}",
                                       reason) from None
                raise
            return MergeResult(bool(status.merged), status.sha, status.message or "")

        return self._call(installation_id, repo, merge, permission=CONTENTS_WRITE,
                          not_found=f"Pull request #{number} not found in {repo}")

    # -- plumbing -------------------------------------------------------------------------------
    def _call(self, installation_id: int, repo: str, operation: Callable[[Github], T], *,
              permission: str, not_found: str | None = None) -> T:
        """Run ``operation`` with the installation's token; one fresh-token retry on a 401.

        Wrong App credentials fail when the token is fetched (PermanentError there).
        """
        for attempt in (1, 2):
            gh = self._client(self.tokens.get(installation_id))
            try:
                return operation(gh)
            except GithubException as exc:
                if exc.status == 401:
                    self.tokens.invalidate(installation_id)
                    if attempt == 1:
                        continue
                    # GitHub just issued this token (so the App's credentials are good) and refused
                    # it: it expired again or has not reached every GitHub server yet. Retry later;
                    # a job that keeps meeting this is dead-lettered with this reason.
                    raise TransientError(FRESH_TOKEN_REFUSED) from None
                raise translate(exc, repo=repo, permission=permission,
                                not_found=not_found) from None
            except Exception as exc:  # network trouble, or our own Permanent/TransientError
                if not isinstance(exc, (PermanentError, TransientError)):
                    self._drop_client()  # its connection may be half-used: start the next call afresh
                translated = translate(exc, repo=repo, permission=permission, not_found=not_found)
                if translated is exc:
                    raise
                raise translated from None
        raise AssertionError("unreachable")

    def _client(self, token: str) -> Github:
        """This thread's PyGithub client for ``token``, kept so its HTTP connection is reused.

        One per thread (PyGithub is not thread-safe) and per token: a refreshed token gets a new
        client and the old one is closed.
        """
        mine = self._clients
        if getattr(mine, "token", None) == token:
            return mine.client
        self._drop_client()
        mine.client = Github(auth=Auth.Token(token), base_url=self.api_url, timeout=pygithub_timeout(self.timeout),
                             retry=None, seconds_between_requests=None, seconds_between_writes=None, lazy=True)
        mine.token = token
        return mine.client

    def _drop_client(self) -> None:
        client = getattr(self._clients, "client", None)
        self._clients.client = self._clients.token = None
        if client is not None:
            client.close()

    def _pace_once(self, installation_id: int) -> Callable[[], None]:
        """A pacing step that reserves at most one slot, even if the call is retried after a 401."""
        reserved = False

        def pace() -> None:
            nonlocal reserved
            if self.pacer is not None and not reserved:
                self.pacer.reserve(installation_id)
                reserved = True

        return pace


def _pull_info(pull) -> PullRequestInfo:
    return PullRequestInfo(number=pull.number, url=pull.html_url, head_sha=pull.head.sha,
                           state=pull.state, merged=bool(pull.merged), title=pull.title)


def _comment_info(comment) -> CommentInfo:
    return CommentInfo(id=comment.id, url=comment.html_url, body=comment.body or "",
                       author=comment.user.login if comment.user else "")
