"""JSON shapes of GitHub's REST resources, as PyGithub expects to read them.

Its sole purpose is to render state records into GitHub's response bodies (users, the App,
installations, repositories, branches, refs, pull requests, issues, issue comments), with
``url``s pointing back at the emulator so that PyGithub follows them there. ``web`` is the
emulator's base URL: it serves both as the API root and as the web (html/clone) root.
No rules and no I/O here except reading branch heads from git.
"""
from __future__ import annotations

from . import gitrepo
from .pulls import base_sha, head_sha, mergeable, stats
from .state import Comment, Installation, Pull, Repo, State, User, iso, node_id

EPOCH = 1700000000.0


def user_json(u: User, web: str) -> dict:
    return {"login": u.login, "id": u.id, "node_id": node_id("U" if u.type == "User" else "O", u.id),
            "type": u.type, "site_admin": False, "url": f"{web}/users/{u.login}",
            "html_url": f"{web}/{u.login}",
            "avatar_url": f"{web}/avatars/u/{u.id}?v=4", "gravatar_id": "",
            "repos_url": f"{web}/users/{u.login}/repos"}


def app_json(state: State, web: str) -> dict:
    with state.lock:
        owner = next(iter(state.installations.values()), None)
        count = len(state.installations)
    owner = owner.account if owner else None
    return {"id": state.app_id, "slug": state.app_slug, "node_id": node_id("A", state.app_id),
            "name": state.app_slug, "description": "GitHub emulator App",
            "owner": user_json(owner, web) if owner else None,
            "external_url": web, "html_url": f"{web}/apps/{state.app_slug}",
            "created_at": iso(EPOCH), "updated_at": iso(EPOCH),
            "permissions": {"metadata": "read", "contents": "write", "pull_requests": "write",
                            "issues": "write"},
            "events": ["issue_comment", "pull_request", "pull_request_review",
                       "pull_request_review_comment"],
            "installations_count": count}


def installation_json(state: State, inst: Installation, web: str) -> dict:
    return {"id": inst.id, "account": user_json(inst.account, web),
            "app_id": state.app_id, "app_slug": state.app_slug, "client_id": f"Iv1.{state.app_id}",
            "target_id": inst.account.id, "target_type": inst.account.type,
            "repository_selection": "selected", "permissions": dict(inst.permissions),
            "events": ["issue_comment", "pull_request", "pull_request_review"],
            "access_tokens_url": f"{web}/app/installations/{inst.id}/access_tokens",
            "repositories_url": f"{web}/installation/repositories",
            "html_url": f"{web}/organizations/{inst.account.login}/settings/installations/{inst.id}",
            "created_at": iso(inst.created_at), "updated_at": iso(inst.created_at),
            "single_file_name": None, "has_multiple_single_files": False,
            "single_file_paths": [], "suspended_at": None, "suspended_by": None}


def repo_json(repo: Repo, web: str, push: bool = False) -> dict:
    api = f"{web}/repos/{repo.full_name}"
    return {"id": repo.id, "node_id": node_id("R", repo.id), "name": repo.name,
            "full_name": repo.full_name, "owner": user_json(repo.owner, web),
            "private": repo.private, "visibility": "private" if repo.private else "public",
            "html_url": f"{web}/{repo.full_name}", "description": None, "fork": False,
            "url": api, "clone_url": f"{web}/{repo.full_name}.git",
            "git_url": f"{web}/{repo.full_name}.git".replace("http", "git", 1),
            "ssh_url": f"git@localhost:{repo.full_name}.git", "svn_url": f"{web}/{repo.full_name}",
            "pulls_url": f"{api}/pulls{{/number}}", "issues_url": f"{api}/issues{{/number}}",
            "branches_url": f"{api}/branches{{/branch}}",
            "default_branch": repo.default_branch, "archived": False, "disabled": False,
            "has_issues": True, "has_projects": False, "has_wiki": False,
            "allow_merge_commit": True, "allow_squash_merge": True, "allow_rebase_merge": True,
            "delete_branch_on_merge": False,
            "created_at": iso(repo.created_at), "updated_at": iso(repo.created_at),
            "pushed_at": iso(repo.created_at),
            "permissions": {"admin": False, "maintain": False, "push": push, "triage": push,
                            "pull": True}}


def commit_json(repo: Repo, sha: str, web: str) -> dict:
    info = gitrepo.commit_info(repo.path, sha)
    api = f"{web}/repos/{repo.full_name}"
    return {"sha": sha, "node_id": node_id("C", int(sha[:8], 16)),
            "url": f"{api}/commits/{sha}", "html_url": f"{web}/{repo.full_name}/commit/{sha}",
            "commit": {"message": info["message"], "author": info["author"],
                       "committer": info["committer"],
                       "tree": {"sha": info["tree"], "url": f"{api}/git/trees/{info['tree']}"},
                       "url": f"{api}/git/commits/{sha}"},
            "parents": [{"sha": p, "url": f"{api}/commits/{p}"} for p in info["parents"]]}


def branch_json(repo: Repo, name: str, sha: str, web: str) -> dict:
    api = f"{web}/repos/{repo.full_name}"
    return {"name": name, "commit": commit_json(repo, sha, web), "protected": False,
            "_links": {"self": f"{api}/branches/{name}",
                       "html": f"{web}/{repo.full_name}/tree/{name}"}}


def ref_json(repo: Repo, name: str, sha: str, web: str) -> dict:
    api = f"{web}/repos/{repo.full_name}"
    return {"ref": f"refs/heads/{name}", "node_id": node_id("REF", repo.id),
            "url": f"{api}/git/refs/heads/{name}",
            "object": {"sha": sha, "type": "commit", "url": f"{api}/git/commits/{sha}"}}


def _association(repo: Repo, user: User) -> str:
    if user.login.lower() == repo.owner.login.lower():
        return "OWNER"
    return "NONE" if user.type == "Bot" else "CONTRIBUTOR"


def pull_json(state: State, repo: Repo, pull: Pull, web: str, full: bool = True) -> dict:
    api = f"{web}/repos/{repo.full_name}"
    head, base = head_sha(repo, pull), base_sha(repo, pull)
    owner = user_json(repo.owner, web)
    rjson = repo_json(repo, web)
    out = {
        "url": f"{api}/pulls/{pull.number}", "id": pull.id, "node_id": node_id("PR", pull.id),
        "html_url": f"{web}/{repo.full_name}/pull/{pull.number}",
        "diff_url": f"{web}/{repo.full_name}/pull/{pull.number}.diff",
        "patch_url": f"{web}/{repo.full_name}/pull/{pull.number}.patch",
        "issue_url": f"{api}/issues/{pull.number}",
        "commits_url": f"{api}/pulls/{pull.number}/commits",
        "review_comments_url": f"{api}/pulls/{pull.number}/comments",
        "review_comment_url": f"{api}/pulls/comments{{/number}}",
        "comments_url": f"{api}/issues/{pull.number}/comments",
        "statuses_url": f"{api}/statuses/{head}",
        "number": pull.number, "state": pull.state, "locked": False, "title": pull.title,
        "user": user_json(pull.user, web), "body": pull.body, "labels": [], "milestone": None,
        "active_lock_reason": None, "created_at": iso(pull.created_at),
        "updated_at": iso(pull.updated_at), "closed_at": iso(pull.closed_at),
        "merged_at": iso(pull.merged_at), "merge_commit_sha": pull.merge_commit_sha,
        "assignee": None, "assignees": [], "requested_reviewers": [], "requested_teams": [],
        "head": {"label": f"{repo.owner.login}:{pull.head_ref}", "ref": pull.head_ref,
                 "sha": head, "user": owner, "repo": rjson},
        "base": {"label": f"{repo.owner.login}:{pull.base_ref}", "ref": pull.base_ref,
                 "sha": base, "user": owner, "repo": rjson},
        "_links": {"self": {"href": f"{api}/pulls/{pull.number}"},
                   "html": {"href": f"{web}/{repo.full_name}/pull/{pull.number}"},
                   "issue": {"href": f"{api}/issues/{pull.number}"},
                   "comments": {"href": f"{api}/issues/{pull.number}/comments"}},
        "author_association": _association(repo, pull.user), "auto_merge": None,
        "draft": pull.draft,
    }
    if not full:
        return out
    can_merge = mergeable(repo, pull)
    commits, adds, dels, files = stats(repo, pull)
    with state.lock:
        n_comments = sum(1 for c in state.comments.values()
                         if c.repo_key == repo.key and c.number == pull.number)
    out.update({
        "merged": pull.merged_at is not None, "mergeable": can_merge, "rebaseable": can_merge,
        "mergeable_state": ("clean" if can_merge else "dirty") if pull.state == "open" else "unknown",
        "merged_by": user_json(pull.merged_by, web) if pull.merged_by else None,
        "comments": n_comments, "review_comments": 0,
        "maintainer_can_modify": pull.maintainer_can_modify, "commits": commits,
        "additions": adds, "deletions": dels, "changed_files": files})
    return out


def issue_json(state: State, repo: Repo, pull: Pull, web: str) -> dict:
    api = f"{web}/repos/{repo.full_name}"
    with state.lock:
        n_comments = sum(1 for c in state.comments.values()
                         if c.repo_key == repo.key and c.number == pull.number)
    return {"url": f"{api}/issues/{pull.number}", "id": pull.id + 1,
            "node_id": node_id("I", pull.id), "number": pull.number,
            "html_url": f"{web}/{repo.full_name}/pull/{pull.number}",
            "repository_url": api, "comments_url": f"{api}/issues/{pull.number}/comments",
            "title": pull.title, "body": pull.body, "state": pull.state,
            "state_reason": None, "locked": False, "user": user_json(pull.user, web),
            "labels": [], "assignee": None, "assignees": [], "milestone": None,
            "comments": n_comments, "created_at": iso(pull.created_at),
            "updated_at": iso(pull.updated_at), "closed_at": iso(pull.closed_at),
            "author_association": _association(repo, pull.user),
            "pull_request": {"url": f"{api}/pulls/{pull.number}",
                             "html_url": f"{web}/{repo.full_name}/pull/{pull.number}",
                             "merged_at": iso(pull.merged_at)}}


def comment_json(state: State, repo: Repo, c: Comment, web: str) -> dict:
    api = f"{web}/repos/{repo.full_name}"
    return {"id": c.id, "node_id": node_id("IC", c.id), "url": f"{api}/issues/comments/{c.id}",
            "html_url": f"{web}/{repo.full_name}/pull/{c.number}#issuecomment-{c.id}",
            "issue_url": f"{api}/issues/{c.number}", "body": c.body,
            "user": user_json(c.user, web), "created_at": iso(c.created_at),
            "updated_at": iso(c.updated_at), "author_association": _association(repo, c.user),
            "performed_via_github_app": app_json(state, web) if c.via_app else None,
            "reactions": {"url": f"{api}/issues/comments/{c.id}/reactions", "total_count": 0}}
