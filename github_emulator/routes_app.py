"""Routes authenticated as the App (JWT) or about the installation itself.

``/app``, ``/app/installations[/{id}]``, ``/app/installations/{id}/access_tokens``,
``/repos|orgs|users/.../installation``, ``/installation/repositories``,
``DELETE /installation/token`` and ``/rate_limit``. Repository content routes are in
:mod:`routes_repo`.
"""
from __future__ import annotations

from .api import RateLimiter, Request, Response, Router, paginate
from .auth import Principal
from .errors import ApiError, not_found, validation_failed
from .shapes import app_json, installation_json, repo_json
from .state import LEVELS, State, iso


class AppRoutes:
    def __init__(self, state: State, token_ttl: float, limiter: RateLimiter) -> None:
        self.state, self.token_ttl, self.limiter = state, token_ttl, limiter

    def register(self, router: Router) -> None:
        router.add("GET", "/app", self.get_app, app_only=True)
        router.add("GET", "/app/installations", self.list_installations, app_only=True)
        router.add("GET", "/app/installations/{iid}", self.get_installation, app_only=True)
        router.add("POST", "/app/installations/{iid}/access_tokens", self.create_token,
                   app_only=True)
        router.add("GET", "/repos/{owner}/{name}/installation", self.repo_installation,
                   app_only=True)
        router.add("GET", "/orgs/{owner}/installation", self.account_installation, app_only=True)
        router.add("GET", "/users/{owner}/installation", self.account_installation, app_only=True)
        router.add("GET", "/installation/repositories", self.installation_repositories)
        router.add("DELETE", "/installation/token", self.revoke_token, creates_content=False)
        router.add("GET", "/rate_limit", self.rate_limit)

    def _installation(self, iid: str):
        inst = self.state.installations.get(int(iid)) if iid.isdigit() else None
        if inst is None:
            raise not_found()
        return inst

    def get_app(self, req: Request, who: Principal) -> Response:
        return Response(200, app_json(self.state, req.web))

    def list_installations(self, req: Request, who: Principal) -> Response:
        with self.state.lock:
            items = [installation_json(self.state, i, req.web)
                     for i in sorted(self.state.installations.values(), key=lambda i: i.id)]
        page, headers = paginate(req, items)
        return Response(200, page, headers)

    def get_installation(self, req: Request, who: Principal, iid: str) -> Response:
        return Response(200, installation_json(self.state, self._installation(iid), req.web))

    def create_token(self, req: Request, who: Principal, iid: str) -> Response:
        inst = self._installation(iid)
        data = req.json()
        wanted = data.get("permissions") or {}
        if not isinstance(wanted, dict):
            raise validation_failed({"resource": "Permissions", "code": "invalid"})
        for name, level in wanted.items():
            if LEVELS.get(inst.permissions.get(name, ""), 0) < LEVELS.get(level, 99):
                raise ApiError(422, "The permissions requested are not granted to this "
                                    "installation.")
        permissions = dict(wanted) if wanted else dict(inst.permissions)
        permissions.setdefault("metadata", "read")
        repositories = self._requested_repos(inst, data)
        token = self.state.issue_token(inst.id, self.token_ttl, permissions, repositories)
        body = {"token": token.value, "expires_at": iso(token.expires_at),
                "permissions": permissions, "repository_selection": "selected"}
        if repositories is not None:
            body["repositories"] = [repo_json(self.state.repos[r], req.web, True)
                                    for r in repositories]
        return Response(201, body)

    def _requested_repos(self, inst, data: dict) -> list[str] | None:
        names, ids = data.get("repositories"), data.get("repository_ids")
        if not names and not ids:
            return None
        chosen = []
        with self.state.lock:
            for key in inst.repositories:
                repo = self.state.repos.get(key)
                if repo and (repo.name in (names or []) or repo.full_name in (names or [])
                             or repo.id in (ids or [])):
                    chosen.append(key)
        if len(chosen) != len(names or []) + len(ids or []):
            raise ApiError(422, "There is at least one repository that does not exist or is "
                                "not accessible to the parent installation.")
        return chosen

    def repo_installation(self, req: Request, who: Principal, owner: str, name: str) -> Response:
        inst = self.state.installation_for_repo(f"{owner}/{name}")
        if inst is None or self.state.repo(f"{owner}/{name}") is None:
            raise not_found()
        return Response(200, installation_json(self.state, inst, req.web))

    def account_installation(self, req: Request, who: Principal, owner: str) -> Response:
        with self.state.lock:
            found = [i for i in self.state.installations.values()
                     if i.account.login.lower() == owner.lower()]
        if not found:
            raise not_found()
        return Response(200, installation_json(self.state, found[0], req.web))

    def installation_repositories(self, req: Request, who: Principal) -> Response:
        if who.kind != "installation":
            raise ApiError(403, "This endpoint can only be accessed with an installation token")
        with self.state.lock:
            repos = [self.state.repos[k] for k in self.state.token_repos(who.token)
                     if k in self.state.repos]
            push = who.token.permissions.get("contents") == "write"
            items = [repo_json(r, req.web, push) for r in sorted(repos, key=lambda r: r.id)]
        page, headers = paginate(req, items)
        return Response(200, {"total_count": len(items), "repository_selection": "selected",
                              "repositories": page}, headers)

    def revoke_token(self, req: Request, who: Principal) -> Response:
        if who.kind != "installation":
            raise ApiError(401, "Bad credentials")
        with self.state.lock:
            who.token.revoked = True
        return Response(204)

    def rate_limit(self, req: Request, who: Principal) -> Response:
        headers, _ = self.limiter.take(who, count=False)
        core = {"limit": int(headers["X-RateLimit-Limit"]),
                "remaining": int(headers["X-RateLimit-Remaining"]),
                "reset": int(headers["X-RateLimit-Reset"]),
                "used": int(headers["X-RateLimit-Used"]), "resource": "core"}
        return Response(200, {"resources": {"core": core}, "rate": core})
