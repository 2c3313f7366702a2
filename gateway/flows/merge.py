"""Flow 5, merge: only a person, through the authenticated API, merges a PR.

No mail, webhook or job calls this module; the reply flow can only comment.
GitHub's refusals (not mergeable, checks failing, head moved) come back as a
reason the caller can act on, and so does an installation we have paused
(suspended or uninstalled: its tokens were purged and GitHub would refuse too).
"""
from __future__ import annotations

from dataclasses import dataclass

from gateway.flows.context import FlowContext
from gateway.flows.github_events import Activity, mail_activity
from gateway.store import Installation, PullRequestRequest, Thread
from github_app.client import MergeRefused, MergeResult


class MergeNotPossible(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class MergeOutcome:
    number: int
    url: str
    sha: str | None
    message: str


def merge_pull_request(ctx: FlowContext, request_id: str, *, method: str, expected_head_sha: str | None) -> MergeOutcome:
    with ctx.db.session() as session:
        request = session.get(PullRequestRequest, request_id)
        if request is None:
            raise MergeNotPossible(404, f"no pull request request with id {request_id!r}")
        if request.pr_number is None:
            raise MergeNotPossible(409, f"the pull request is not open yet (status: {request.status})")
        installation_id, repo, number, url = request.installation_id, request.repo, request.pr_number, request.pr_url
        thread_id = request.thread_id
        installation = session.get(Installation, installation_id)
        if installation is not None and installation.suspended_at is not None:
            raise MergeNotPossible(409, f"the GitHub App installation is paused: {installation.suspended_reason}")
    try:
        result: MergeResult = ctx.github.merge(installation_id, repo, number, method=method,
                                               expected_head_sha=expected_head_sha)
    except MergeRefused as exc:
        raise MergeNotPossible(409, exc.reason) from None
    # GitHub's own "merged" event names our bot, which the webhook flow never relays
    # (no echo), so the people on the thread hear of this merge from here.
    with ctx.db.session() as session:
        thread = session.get(Thread, thread_id) if thread_id else None
        if thread is not None and thread.revoked_at is None and not result.already_merged:
            mail_activity(session, ctx, thread, Activity("merged", "A maintainer", None, url))
    return MergeOutcome(number=number, url=url, sha=result.sha, message=result.message)
