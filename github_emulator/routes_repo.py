"""Routes on a repository, authenticated with an installation token (or anonymous reads).

``/repos/{o}/{r}``, branches and refs, pulls (create, list, get, update, merge) and issue
comments. Each handler checks access with :func:`auth.check_repo`, calls a rule in
:mod:`pulls` and renders with :mod:`shapes`; the rules themselves live in :mod:`pulls`.
"""
from __future__ import annotations

from . import gitrepo, pulls
from .api import Request, Response, Router, paginate, parse_since
from .auth import Principal, check_repo
from .errors import ApiError, not_found
from .shapes import branch_json, comment_json, issue_json, pull_json, ref_json, repo_json
from .state import State, User, grants

READ_PULLS = ("pull_requests", "contents")
WRITE_COMMENTS = ("issues", "pull_requests")
READ_COMMENTS = ("issues", "pull_requests")


def _number(value: str) -> int:
    if not value.isdigit():
        raise not_found()
    return int(value)


class RepoRoutes:
    def __init__(self, state: State) -> None:
        self.state = state

    def register(self, router: Router) -> None:
        base = "/repos/{owner}/{name}"
        router.add("GET", base, self.get_repo)
        router.add("GET", f"{base}/branches", self.list_branches)
        router.add("GET", f"{base}/branches/{{branch+}}", self.get_branch)
        router.add("GET", f"{base}/git/ref/heads/{{branch+}}", self.get_ref)
        router.add("GET", f"{base}/git/refs/heads/{{branch+}}", self.get_ref)
        router.add("POST", f"{base}/git/refs", self.create_ref)
        router.add("DELETE", f"{base}/git/refs/heads/{{branch+}}", self.delete_ref)
        router.add("GET", f"{base}/pulls", self.list_pulls)
        router.add("POST", f"{base}/pulls", self.create_pull)
        router.add("GET", f"{base}/pulls/{{number}}", self.get_pull)
        router.add("PATCH", f"{base}/pulls/{{number}}", self.update_pull)
        router.add("GET", f"{base}/pulls/{{number}}/merge", self.is_merged)
        router.add("PUT", f"{base}/pulls/{{number}}/merge", self.merge_pull)
        router.add("GET", f"{base}/issues/comments/{{cid}}", self.get_comment)
        router.add("PATCH", f"{base}/issues/comments/{{cid}}", self.update_comment)
        router.add("DELETE", f"{base}/issues/comments/{{cid}}", self.delete_comment)
        router.add("GET", f"{base}/issues/{{number}}", self.get_issue)
        router.add("GET", f"{base}/issues/{{number}}/comments", self.list_comments)
        router.add("POST", f"{base}/issues/{{number}}/comments", self.create_comment)

    # -- helpers -------------------------------------------------------------------------
    def _repo(self, who: Principal, owner: str, name: str, permission="metadata", level="read"):
        return check_repo(self.state, who, self.state.repo(f"{owner}/{name}"),
                          permission=permission, level=level)

    def actor(self, who: Principal) -> User:
        """Whom a write is attributed to: the App's bot for installation tokens."""
        return self.state.bot

    # -- repository, branches, refs ---------------------------------------------------------
    def get_repo(self, req: Request, who: Principal, owner: str, name: str) -> Response:
        repo = self._repo(who, owner, name)
        push = (who.kind == "installation" and repo.key in self.state.token_repos(who.token)
                and grants(who.token.permissions, "contents", "write"))
        return Response(200, repo_json(repo, req.web, push))

    def list_branches(self, req: Request, who: Principal, owner: str, name: str) -> Response:
        repo = self._repo(who, owner, name)
        items = [{"name": b, "commit": {"sha": sha, "url": f"{req.web}/repos/{repo.full_name}"
                                                           f"/commits/{sha}"},
                  "protected": False}
                 for b, sha in sorted(gitrepo.branches(repo.path).items())]
        page, headers = paginate(req, items)
        return Response(200, page, headers)

    def get_branch(self, req: Request, who: Principal, owner: str, name: str, branch: str
                   ) -> Response:
        repo = self._repo(who, owner, name)
        sha = gitrepo.rev_parse(repo.path, f"refs/heads/{branch}")
        if sha is None:
            raise ApiError(404, "Branch not found")
        return Response(200, branch_json(repo, branch, sha, req.web))

    def get_ref(self, req: Request, who: Principal, owner: str, name: str, branch: str
                ) -> Response:
        repo = self._repo(who, owner, name, "contents")
        sha = gitrepo.rev_parse(repo.path, f"refs/heads/{branch}")
        if sha is None:
            raise not_found()
        return Response(200, ref_json(repo, branch, sha, req.web))

    def create_ref(self, req: Request, who: Principal, owner: str, name: str) -> Response:
        repo = self._repo(who, owner, name, "contents", "write")
        data = req.json()
        ref, sha = data.get("ref") or "", data.get("sha") or ""
        if not ref.startswith("refs/heads/") or ref.count("/") < 2:
            raise ApiError(422, "Reference name must start with 'refs/' and have at least two "
                                "slashes.")
        with self.state.lock:
            if gitrepo.rev_parse(repo.path, ref) is not None:
                raise ApiError(422, "Reference already exists")
            if gitrepo.rev_parse(repo.path, sha) != sha:
                raise ApiError(422, "Object does not exist")
            gitrepo.update_ref(repo.path, ref, sha)
        return Response(201, ref_json(repo, ref[len("refs/heads/"):], sha, req.web))

    def delete_ref(self, req: Request, who: Principal, owner: str, name: str, branch: str
                   ) -> Response:
        repo = self._repo(who, owner, name, "contents", "write")
        with self.state.lock:
            if gitrepo.rev_parse(repo.path, f"refs/heads/{branch}") is None:
                raise ApiError(422, "Reference does not exist")
            gitrepo.delete_ref(repo.path, f"refs/heads/{branch}")
        return Response(204)

    # -- pull requests --------------------------------------------------------------------
    def list_pulls(self, req: Request, who: Principal, owner: str, name: str) -> Response:
        repo = self._repo(who, owner, name, READ_PULLS)
        found = pulls.list_pulls(self.state, repo, state_filter=req.arg("state", "open"),
                                 head=req.arg("head"), base=req.arg("base"),
                                 sort=req.arg("sort", "created"), direction=req.arg("direction"))
        page, headers = paginate(req, found)
        return Response(200, [pull_json(self.state, repo, p, req.web, full=False) for p in page],
                        headers)

    def create_pull(self, req: Request, who: Principal, owner: str, name: str) -> Response:
        repo = self._repo(who, owner, name, "pull_requests", "write")
        data = req.json()
        pull = pulls.create_pull(self.state, repo, self.actor(who), title=data.get("title"),
                                 head=data.get("head"), base=data.get("base"),
                                 body=data.get("body"), draft=bool(data.get("draft", False)),
                                 maintainer_can_modify=bool(data.get("maintainer_can_modify",
                                                                     True)),
                                 via_app=who.kind == "installation")
        body = pull_json(self.state, repo, pull, req.web)
        return Response(201, body, {"Location": body["url"]})

    def get_pull(self, req: Request, who: Principal, owner: str, name: str, number: str
                 ) -> Response:
        repo = self._repo(who, owner, name, READ_PULLS)
        pull = pulls.get_pull(self.state, repo, _number(number))
        return Response(200, pull_json(self.state, repo, pull, req.web))

    def update_pull(self, req: Request, who: Principal, owner: str, name: str, number: str
                    ) -> Response:
        repo = self._repo(who, owner, name, "pull_requests", "write")
        data = req.json()
        pull = pulls.update_pull(self.state, repo, _number(number), title=data.get("title"),
                                 body=data.get("body"), new_state=data.get("state"),
                                 base=data.get("base"))
        return Response(200, pull_json(self.state, repo, pull, req.web))

    def is_merged(self, req: Request, who: Principal, owner: str, name: str, number: str
                  ) -> Response:
        repo = self._repo(who, owner, name, READ_PULLS)
        pull = pulls.get_pull(self.state, repo, _number(number))
        if pull.merged_at is None:
            raise not_found()
        return Response(204)

    def merge_pull(self, req: Request, who: Principal, owner: str, name: str, number: str
                   ) -> Response:
        repo = self._repo(who, owner, name, "contents", "write")
        data = req.json()
        result = pulls.merge_pull(self.state, repo, _number(number), self.actor(who),
                                  method=data.get("merge_method") or "merge",
                                  sha=data.get("sha"), commit_title=data.get("commit_title"),
                                  commit_message=data.get("commit_message"))
        return Response(200, result)

    # -- issues and comments ----------------------------------------------------------------
    def get_issue(self, req: Request, who: Principal, owner: str, name: str, number: str
                  ) -> Response:
        repo = self._repo(who, owner, name, READ_COMMENTS)
        pull = pulls.get_pull(self.state, repo, _number(number))
        return Response(200, issue_json(self.state, repo, pull, req.web))

    def list_comments(self, req: Request, who: Principal, owner: str, name: str, number: str
                      ) -> Response:
        repo = self._repo(who, owner, name, READ_COMMENTS)
        found = pulls.list_comments(self.state, repo, _number(number),
                                    parse_since(req.arg("since")))
        page, headers = paginate(req, found)
        return Response(200, [comment_json(self.state, repo, c, req.web) for c in page], headers)

    def create_comment(self, req: Request, who: Principal, owner: str, name: str, number: str
                       ) -> Response:
        repo = self._repo(who, owner, name, WRITE_COMMENTS, "write")
        comment = pulls.add_comment(self.state, repo, _number(number), self.actor(who),
                                    req.json().get("body"), via_app=who.kind == "installation")
        body = comment_json(self.state, repo, comment, req.web)
        return Response(201, body, {"Location": body["url"]})

    def get_comment(self, req: Request, who: Principal, owner: str, name: str, cid: str
                    ) -> Response:
        repo = self._repo(who, owner, name, READ_COMMENTS)
        comment = pulls.get_comment(self.state, repo, _number(cid))
        return Response(200, comment_json(self.state, repo, comment, req.web))

    def update_comment(self, req: Request, who: Principal, owner: str, name: str, cid: str
                       ) -> Response:
        repo = self._repo(who, owner, name, WRITE_COMMENTS, "write")
        comment = pulls.get_comment(self.state, repo, _number(cid))
        if comment.user.id != self.actor(who).id:
            raise ApiError(403, "Resource not accessible by integration")
        comment = pulls.update_comment(self.state, repo, comment.id, req.json().get("body"))
        return Response(200, comment_json(self.state, repo, comment, req.web))

    def delete_comment(self, req: Request, who: Principal, owner: str, name: str, cid: str
                       ) -> Response:
        repo = self._repo(who, owner, name, WRITE_COMMENTS, "write")
        comment = pulls.get_comment(self.state, repo, _number(cid))
        if comment.user.id != self.actor(who).id:
            raise ApiError(403, "Resource not accessible by integration")
        pulls.delete_comment(self.state, repo, comment.id)
        return Response(204)

