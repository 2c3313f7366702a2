"""GitHub webhook deliveries, shaped as GitHub sends them, and a helper that POSTs them.

The builders return the payloads of the events the gateway subscribes to
(`issue_comment`, `pull_request_review_comment`, `pull_request_review`,
`pull_request`, `installation`, `ping`) with the fields GitHub documents for them:
`action`, the event's object (`comment`, `review`, `pull_request`, `issue`,
`installation`), `repository`, `installation {id}` and `sender`. Values that
GitHub derives (ids, node ids, URLs) are derived the same way, so a test only
names what matters to it: the PR number, who acted, what they wrote.

`deliver()` sends one the way GitHub's hookshot does: JSON body, the
`X-GitHub-*` headers and an HMAC-SHA256 `X-Hub-Signature-256` computed here
(not by the gateway's own `sign`, so a bug there cannot hide in the test).
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import uuid

import requests

from tests.support.harness import APP_ID, BOT, INSTALLATION_ID, REPO, WEBHOOK_SECRET

WEB = "https://github.com"
API = "https://api.github.com"
STAMP = "2026-11-21T10:30:00Z"
APP_SLUG = BOT[: -len("[bot]")]
_ids = itertools.count(880001)


def _next_id() -> int:
    return next(_ids)


def _stable_id(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:7], 16)


# -- the objects every payload shares -----------------------------------------------------------

def user(login: str, *, type: str | None = None) -> dict:
    """A `sender` / `user` object; logins ending in [bot] are Bots, as on GitHub."""
    kind = type or ("Bot" if login.endswith("[bot]") else "User")
    uid = _stable_id(login)
    return {"login": login, "id": uid, "node_id": f"U_kgDO{uid:08d}", "avatar_url": f"{WEB}/avatars/u/{uid}",
            "gravatar_id": "", "url": f"{API}/users/{login}", "html_url": f"{WEB}/{login}", "type": kind,
            "site_admin": False}


def repository(full_name: str = REPO) -> dict:
    owner, name = full_name.split("/", 1)
    rid = _stable_id(full_name)
    return {"id": rid, "node_id": f"R_kgDO{rid:08d}", "name": name, "full_name": full_name, "private": False,
            "owner": user(owner, type="Organization"), "html_url": f"{WEB}/{full_name}",
            "url": f"{API}/repos/{full_name}", "fork": False, "default_branch": "main",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": STAMP, "pushed_at": STAMP}


def app(app_id: int = APP_ID, slug: str = APP_SLUG) -> dict:
    """A `performed_via_github_app` object."""
    return {"id": app_id, "slug": slug, "node_id": f"A_kwDO{app_id:08d}", "name": slug,
            "owner": user("octo-org", type="Organization"), "external_url": "https://gateway.test",
            "html_url": f"{WEB}/apps/{slug}", "created_at": "2026-01-01T00:00:00Z", "updated_at": STAMP,
            "permissions": {"contents": "write", "issues": "write", "metadata": "read", "pull_requests": "write"},
            "events": ["issue_comment", "pull_request", "pull_request_review", "pull_request_review_comment"]}


def pull_request_object(number: int, *, repo: str = REPO, title: str = "Fix the typo in the README",
                        author: str = BOT, state: str = "open", merged: bool = False,
                        merged_by: str | None = None, head: str = "fix-typo", base: str = "main",
                        head_sha: str = "1" * 40) -> dict:
    """The `pull_request` object of pull_request* events (GitHub's full pull request)."""
    pid = _stable_id(f"{repo}#{number}")
    api, html = f"{API}/repos/{repo}", f"{WEB}/{repo}/pull/{number}"
    return {"url": f"{api}/pulls/{number}", "id": pid, "node_id": f"PR_kwDO{pid:08d}", "html_url": html,
            "diff_url": f"{html}.diff", "patch_url": f"{html}.patch", "issue_url": f"{api}/issues/{number}",
            "number": number, "state": state, "locked": False, "title": title, "user": user(author),
            "body": "Agent-made fix.", "created_at": "2026-11-21T10:00:00Z", "updated_at": STAMP,
            "closed_at": STAMP if state == "closed" else None, "merged_at": STAMP if merged else None,
            "merge_commit_sha": "2" * 40 if merged else None, "draft": False,
            "head": {"label": f"{repo.split('/')[0]}:{head}", "ref": head, "sha": head_sha, "repo": repository(repo)},
            "base": {"label": f"{repo.split('/')[0]}:{base}", "ref": base, "sha": "3" * 40, "repo": repository(repo)},
            "author_association": "NONE", "merged": merged, "mergeable": None, "mergeable_state": "unknown",
            "merged_by": user(merged_by) if merged_by else None, "comments": 0, "review_comments": 0,
            "commits": 1, "additions": 1, "deletions": 1, "changed_files": 1}


def _issue_object(number: int, *, repo: str, title: str, on_pull_request: bool) -> dict:
    api, html = f"{API}/repos/{repo}", f"{WEB}/{repo}/{'pull' if on_pull_request else 'issues'}/{number}"
    issue = {"url": f"{api}/issues/{number}", "id": _stable_id(f"issue {repo}#{number}"), "number": number,
             "html_url": html, "title": title, "state": "open", "locked": False, "user": user(BOT),
             "labels": [], "comments": 1, "created_at": "2026-11-21T10:00:00Z", "updated_at": STAMP,
             "author_association": "NONE", "body": "Agent-made fix."}
    if on_pull_request:
        issue["pull_request"] = {"url": f"{api}/pulls/{number}", "html_url": html, "diff_url": f"{html}.diff",
                                 "patch_url": f"{html}.patch", "merged_at": None}
    return issue


def _envelope(action: str, sender: str | dict, repo: str, installation_id: int, **objects) -> dict:
    return {"action": action, **objects, "repository": repository(repo),
            "sender": sender if isinstance(sender, dict) else user(sender),
            "installation": {"id": installation_id, "node_id": f"MDIz{installation_id:08d}"}}


# -- the events ---------------------------------------------------------------------------------

def issue_comment(number: int, body: str, *, login: str = "maria-maintainer", action: str = "created",
                  comment_id: int | None = None, via_app: dict | None = None, sender: str | None = None,
                  repo: str = REPO, on_pull_request: bool = True, title: str = "Fix the typo in the README",
                  installation_id: int = INSTALLATION_ID) -> dict:
    """A conversation comment on a PR (GitHub calls PRs issues here: `issue.pull_request` says so)."""
    cid = comment_id or _next_id()
    issue = _issue_object(number, repo=repo, title=title, on_pull_request=on_pull_request)
    comment = {"url": f"{API}/repos/{repo}/issues/comments/{cid}",
               "html_url": f"{issue['html_url']}#issuecomment-{cid}", "issue_url": issue["url"],
               "id": cid, "node_id": f"IC_kwDO{cid:08d}", "user": user(login), "created_at": STAMP,
               "updated_at": STAMP, "author_association": "MEMBER", "body": body,
               "reactions": {"total_count": 0}, "performed_via_github_app": via_app}
    return _envelope(action, sender or login, repo, installation_id, issue=issue, comment=comment)


def issue_comment_from(emulator_comment: dict, number: int, *, repo: str = REPO, action: str = "created") -> dict:
    """The issue_comment event GitHub sends for a comment that exists (as the emulator returned it)."""
    payload = issue_comment(number, emulator_comment["body"], login=emulator_comment["user"]["login"],
                            action=action, comment_id=emulator_comment["id"], repo=repo,
                            via_app=emulator_comment.get("performed_via_github_app"))
    payload["comment"].update(html_url=emulator_comment["html_url"], user=emulator_comment["user"])
    return payload


def pull_request_review_comment(number: int, body: str, *, login: str = "maria-maintainer",
                                action: str = "created", path: str = "README.md", line: int = 1,
                                via_app: dict | None = None, repo: str = REPO,
                                installation_id: int = INSTALLATION_ID) -> dict:
    """A comment on a line of the diff."""
    cid, review_id = _next_id(), _next_id()
    pull = pull_request_object(number, repo=repo)
    comment = {"url": f"{API}/repos/{repo}/pulls/comments/{cid}", "pull_request_review_id": review_id, "id": cid,
               "node_id": f"PRRC_kwDO{cid:08d}", "diff_hunk": "@@ -1 +1 @@\n-# widgets\n+# widgets, fixed",
               "path": path, "position": line, "original_position": line, "line": line, "original_line": line,
               "side": "RIGHT", "commit_id": pull["head"]["sha"], "original_commit_id": pull["head"]["sha"],
               "user": user(login), "body": body, "created_at": STAMP, "updated_at": STAMP,
               "html_url": f"{pull['html_url']}#discussion_r{cid}", "pull_request_url": pull["url"],
               "author_association": "MEMBER", "performed_via_github_app": via_app,
               "_links": {"html": {"href": f"{pull['html_url']}#discussion_r{cid}"}}}
    return _envelope(action, login, repo, installation_id, comment=comment, pull_request=pull)


def pull_request_review(number: int, state: str, body: str | None, *, login: str = "maria-maintainer",
                        action: str = "submitted", repo: str = REPO,
                        installation_id: int = INSTALLATION_ID) -> dict:
    """A submitted review; `state` as webhooks spell it: approved, changes_requested, commented."""
    rid = _next_id()
    pull = pull_request_object(number, repo=repo)
    review = {"id": rid, "node_id": f"PRR_kwDO{rid:08d}", "user": user(login), "body": body,
              "commit_id": pull["head"]["sha"], "submitted_at": STAMP, "state": state,
              "html_url": f"{pull['html_url']}#pullrequestreview-{rid}", "pull_request_url": pull["url"],
              "author_association": "MEMBER",
              "_links": {"html": {"href": f"{pull['html_url']}#pullrequestreview-{rid}"}}}
    return _envelope(action, login, repo, installation_id, review=review, pull_request=pull)


def pull_request(action: str, number: int, *, sender: str = "maria-maintainer", merged: bool = False,
                 merged_by: str | None = None, repo: str = REPO, installation_id: int = INSTALLATION_ID) -> dict:
    """closed (merged or not), reopened, ...: `pull_request.merged` tells a merge from a close."""
    state = "closed" if action == "closed" else "open"
    pull = pull_request_object(number, repo=repo, state=state, merged=merged,
                               merged_by=(merged_by or sender) if merged else None)
    return _envelope(action, sender, repo, installation_id, number=number, pull_request=pull)


def installation(action: str, *, installation_id: int = INSTALLATION_ID, sender: str = "octo-admin",
                 account: str = "octo-org") -> dict:
    """created, deleted, suspend, unsuspend, new_permissions_accepted (no `repository` key)."""
    suspended = action == "suspend"
    inst = {"id": installation_id, "node_id": f"MDIz{installation_id:08d}",
            "account": user(account, type="Organization"), "repository_selection": "selected",
            "access_tokens_url": f"{API}/app/installations/{installation_id}/access_tokens",
            "repositories_url": f"{API}/installation/repositories",
            "html_url": f"{WEB}/organizations/{account}/settings/installations/{installation_id}",
            "app_id": APP_ID, "app_slug": APP_SLUG, "target_id": _stable_id(account), "target_type": "Organization",
            "permissions": {"contents": "write", "issues": "write", "metadata": "read", "pull_requests": "write"},
            "events": ["issue_comment", "pull_request", "pull_request_review", "pull_request_review_comment"],
            "created_at": "2026-01-01T00:00:00Z", "updated_at": STAMP, "single_file_name": None,
            "suspended_by": user(sender) if suspended else None, "suspended_at": STAMP if suspended else None}
    payload = {"action": action, "installation": inst, "sender": user(sender)}
    if action in ("created", "deleted"):
        payload["repositories"] = [{"id": _stable_id(REPO), "name": REPO.split("/")[1], "full_name": REPO,
                                    "private": False}]
    return payload


def ping(hook_id: int = 4242) -> dict:
    return {"zen": "Keep it logically awesome.", "hook_id": hook_id,
            "hook": {"type": "App", "id": hook_id, "name": "web", "active": True, "events": ["*"],
                     "config": {"content_type": "json", "insecure_ssl": "0",
                                "url": "https://gateway.test/webhooks/github"},
                     "app_id": APP_ID}}


# -- sending ------------------------------------------------------------------------------------

def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(gateway, event: str, payload: dict, delivery_id: str | None = None,
            secret: str | None = WEBHOOK_SECRET, *, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> requests.Response:
    """POST like GitHub: `secret=None` sends no signature; `body` overrides the serialised payload."""
    raw = body if body is not None else json.dumps(payload).encode()
    sent = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/5f3c1a2",
            "X-GitHub-Event": event, "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "4242", "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-GitHub-Hook-Installation-Target-ID": str(APP_ID)}
    if secret is not None:
        sent["X-Hub-Signature"] = "sha1=" + hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()
        sent["X-Hub-Signature-256"] = signature(secret, raw)
    for name, value in (headers or {}).items():
        if value is None:  # leave the header out
            sent.pop(name, None)
        else:
            sent[name] = value
    return gateway.api("POST", "/webhooks/github", token=None, data=raw, headers=sent)
