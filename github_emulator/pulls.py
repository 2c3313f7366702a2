"""Pull-request and issue-comment rules, as GitHub applies them.

Its sole purpose: open, list, update and merge pull requests and post comments on them, raising
the same validation errors GitHub raises (duplicate PR, missing branch, no commits, stale head
sha, not mergeable). Branch heads come live from the bare repos, so pushes over git are seen at
once. It does not authenticate or check permissions (that is :mod:`api`), nor render JSON.
"""
from __future__ import annotations

from . import gitrepo
from .errors import ApiError, not_found, validation_failed
from .state import Comment, Pull, Repo, State, User


def identity(user: User) -> gitrepo.Identity:
    return gitrepo.Identity(user.login, f"{user.id}+{user.login}@users.noreply.github.com")


def head_sha(repo: Repo, pull: Pull) -> str | None:
    if pull.frozen_head_sha:
        return pull.frozen_head_sha
    return gitrepo.rev_parse(repo.path, f"refs/heads/{pull.head_ref}")


def base_sha(repo: Repo, pull: Pull) -> str | None:
    if pull.frozen_base_sha:
        return pull.frozen_base_sha
    return gitrepo.rev_parse(repo.path, f"refs/heads/{pull.base_ref}")


def _split_head(repo: Repo, head: str) -> tuple[str, str]:
    if ":" in head:
        owner, ref = head.split(":", 1)
        return owner, ref
    return repo.owner.login, head


def create_pull(state: State, repo: Repo, user: User, *, title: str | None, head: str | None,
                base: str | None, body: str | None = None, draft: bool = False,
                maintainer_can_modify: bool = True, via_app: bool = False) -> Pull:
    missing = [f for f, v in (("title", title), ("head", head), ("base", base)) if not v]
    if missing:
        raise validation_failed(*({"resource": "PullRequest", "field": f, "code": "missing_field"}
                                  for f in missing))
    owner, head_ref = _split_head(repo, head)
    with state.lock:
        refs = gitrepo.branches(repo.path)
        if owner.lower() != repo.owner.login.lower() or head_ref not in refs:
            raise validation_failed({"resource": "PullRequest", "field": "head", "code": "invalid"})
        if base not in refs:
            raise validation_failed({"resource": "PullRequest", "field": "base", "code": "invalid"})
        for other in state.pulls.values():
            if (other.repo_key == repo.key and other.state == "open"
                    and other.head_ref == head_ref and other.base_ref == base):
                raise validation_failed({
                    "resource": "PullRequest", "code": "custom",
                    "message": f"A pull request already exists for {repo.owner.login}:{head_ref}."})
        if not gitrepo.have_common_history(repo.path, refs[base], refs[head_ref]):
            raise validation_failed({"resource": "PullRequest", "code": "custom",
                                     "message": f"The {head_ref} branch has no history in common with {base}"})
        if gitrepo.count_commits(repo.path, refs[base], refs[head_ref]) == 0:
            raise validation_failed({"resource": "PullRequest", "code": "custom",
                                     "message": f"No commits between {base} and {head_ref}"})
        now = state.clock()
        pull = Pull(state.next_id("pull"), repo.next_number, repo.key, title, body, user,
                    head_ref, base, bool(draft), bool(maintainer_can_modify), now, now, via_app)
        repo.next_number += 1
        state.pulls[(repo.key, pull.number)] = pull
        return pull


def get_pull(state: State, repo: Repo, number: int) -> Pull:
    with state.lock:
        pull = state.pulls.get((repo.key, number))
    if pull is None:
        raise not_found()
    return pull


def list_pulls(state: State, repo: Repo, *, state_filter: str = "open", head: str | None = None,
               base: str | None = None, sort: str = "created",
               direction: str | None = None) -> list[Pull]:
    with state.lock:
        found = [p for p in state.pulls.values() if p.repo_key == repo.key]
    if state_filter in ("open", "closed"):
        found = [p for p in found if p.state == state_filter]
    # GitHub ignores a head filter that lacks the "owner:" prefix; so do we.
    if head and ":" in head:
        owner, ref = head.split(":", 1)
        found = [p for p in found
                 if owner.lower() == repo.owner.login.lower() and p.head_ref == ref]
    if base:
        found = [p for p in found if p.base_ref == base]
    key = {"updated": lambda p: (p.updated_at, p.id)}.get(sort, lambda p: (p.created_at, p.id))
    # GitHub: newest first when sorting by creation, oldest first otherwise.
    descending = (direction or ("desc" if sort == "created" else "asc")) == "desc"
    return sorted(found, key=key, reverse=descending)


def stats(repo: Repo, pull: Pull) -> tuple[int, int, int, int]:
    """(commits, additions, deletions, changed_files); frozen once the PR is closed."""
    if pull.frozen_stats:
        return pull.frozen_stats
    head, base = head_sha(repo, pull), base_sha(repo, pull)
    if not head or not base:
        return 0, 0, 0, 0
    return (gitrepo.count_commits(repo.path, base, head), *gitrepo.diff_stats(repo.path, base, head))


def _close(repo: Repo, pull: Pull, now: float) -> None:
    pull.frozen_stats = stats(repo, pull)
    pull.frozen_head_sha = head_sha(repo, pull)
    pull.frozen_base_sha = base_sha(repo, pull)
    pull.state = "closed"
    pull.closed_at = pull.updated_at = now


def update_pull(state: State, repo: Repo, number: int, *, title: str | None = None,
                body: str | None = None, new_state: str | None = None,
                base: str | None = None) -> Pull:
    with state.lock:
        pull = get_pull(state, repo, number)
        if new_state not in (None, "open", "closed"):
            raise validation_failed({"resource": "PullRequest", "field": "state", "code": "invalid"})
        if base is not None:
            if base not in gitrepo.branches(repo.path):
                raise validation_failed({"resource": "PullRequest", "field": "base",
                                         "code": "invalid"})
            pull.base_ref = base
        if title is not None:
            pull.title = title
        if body is not None:
            pull.body = body
        now = state.clock()
        if new_state == "closed" and pull.state == "open":
            _close(repo, pull, now)
        elif new_state == "open" and pull.state == "closed" and not pull.merged_at:
            pull.state, pull.closed_at = "open", None
            pull.frozen_head_sha = pull.frozen_base_sha = pull.frozen_stats = None
        pull.updated_at = now
        return pull


def mergeable(repo: Repo, pull: Pull) -> bool | None:
    if pull.state != "open":
        return None
    head, base = head_sha(repo, pull), base_sha(repo, pull)
    if head is None or base is None:
        return False
    if not gitrepo.have_common_history(repo.path, base, head):
        return False
    return gitrepo.merge_tree(repo.path, base, head) is not None


def merge_pull(state: State, repo: Repo, number: int, actor: User, *, method: str = "merge",
               sha: str | None = None, commit_title: str | None = None,
               commit_message: str | None = None) -> dict:
    if method not in ("merge", "squash", "rebase"):
        raise validation_failed({"resource": "PullRequest", "field": "merge_method",
                                 "code": "invalid"})
    with state.lock:
        pull = get_pull(state, repo, number)
        if pull.state != "open":
            raise ApiError(405, "Pull Request is not mergeable")
        if pull.draft:
            raise ApiError(405, "Pull Request is still a draft")
        head = head_sha(repo, pull)
        if head is None:
            raise ApiError(405, "Pull Request is not mergeable")
        if sha and sha != head:
            raise ApiError(409, "Head branch was modified. Review and try the merge again.")
        if method == "merge":
            title = commit_title or (f"Merge pull request #{pull.number} from "
                                     f"{repo.owner.login}/{pull.head_ref}")
            message = commit_message if commit_message is not None else pull.title
        else:
            title = commit_title or f"{pull.title} (#{pull.number})"
            message = commit_message if commit_message is not None else (pull.body or "")
        frozen = stats(repo, pull)
        new = gitrepo.merge(repo.path, pull.base_ref, head, method, title, message,
                            identity(actor))
        if new is None:
            raise ApiError(405, "Pull Request is not mergeable")
        now = state.clock()
        pull.frozen_head_sha, pull.frozen_base_sha, pull.frozen_stats = head, new, frozen
        pull.state = "closed"
        pull.closed_at = pull.merged_at = pull.updated_at = now
        pull.merged_by = actor
        pull.merge_commit_sha = new
        return {"sha": new, "merged": True, "message": "Pull Request successfully merged"}


def add_comment(state: State, repo: Repo, number: int, user: User, body: str | None,
                via_app: bool = False) -> Comment:
    if not body:
        raise validation_failed({"resource": "IssueComment", "field": "body",
                                 "code": "missing_field"})
    with state.lock:
        pull = get_pull(state, repo, number)
        now = state.clock()
        comment = Comment(state.next_id("comment"), repo.key, number, body, user, now, now,
                          via_app)
        state.comments[comment.id] = comment
        pull.updated_at = now
        return comment


def list_comments(state: State, repo: Repo, number: int, since: float | None = None
                  ) -> list[Comment]:
    get_pull(state, repo, number)
    with state.lock:
        found = [c for c in state.comments.values()
                 if c.repo_key == repo.key and c.number == number]
    if since is not None:
        found = [c for c in found if c.updated_at >= since]
    return sorted(found, key=lambda c: c.id)


def get_comment(state: State, repo: Repo, comment_id: int) -> Comment:
    with state.lock:
        comment = state.comments.get(comment_id)
    if comment is None or comment.repo_key != repo.key:
        raise not_found()
    return comment


def update_comment(state: State, repo: Repo, comment_id: int, body: str | None) -> Comment:
    if not body:
        raise validation_failed({"resource": "IssueComment", "field": "body",
                                 "code": "missing_field"})
    with state.lock:
        comment = get_comment(state, repo, comment_id)
        comment.body, comment.updated_at = body, state.clock()
        return comment


def delete_comment(state: State, repo: Repo, comment_id: int) -> None:
    with state.lock:
        get_comment(state, repo, comment_id)
        del state.comments[comment_id]
