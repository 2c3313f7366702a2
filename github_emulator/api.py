"""The REST surface: GitHub's paths, mapped to state operations and rendered as GitHub does.

Its sole purpose: match a request to a route, authenticate it (JWT routes vs token routes),
count it against the caller's rate limit and, for content-creating calls, its secondary limit,
check repository access and permissions, call the rule in :mod:`pulls` and render with
:mod:`shapes`. Sockets, fault injection, the concurrency limit and git smart HTTP are not here
(see :mod:`handler` and :mod:`git_http`).
"""
from __future__ import annotations

import json
import re
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from . import auth
from .errors import ApiError, not_found, validation_failed
from .faults import RATE_DOCS, SECONDARY_MESSAGE
from .limits import SecondaryLimits
from .state import State

PER_PAGE_DEFAULT, PER_PAGE_MAX = 30, 100
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any               # case-insensitive mapping (http.client.HTTPMessage)
    body: bytes
    web: str                   # the emulator's base URL
    request_id: str = field(default_factory=lambda: f"{secrets.token_hex(2).upper()}:"
                                                    f"{secrets.token_hex(4).upper()}")

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> dict:
        if not self.body:
            return {}
        try:
            data = json.loads(self.body)
        except ValueError:
            raise ApiError(400, "Problems parsing JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "Problems parsing JSON")
        return data


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern
    handler: Callable
    app_only: bool
    creates_content: bool


class RateLimiter:
    """GitHub's primary limit: a budget per installation / App / anonymous caller per hour."""

    def __init__(self, state: State, limit: int, anonymous_limit: int = 60) -> None:
        self.state, self.limit, self.anonymous_limit = state, limit, anonymous_limit
        self._buckets: dict[str, list[float]] = {}   # key -> [reset_epoch, used]
        self._lock = threading.Lock()

    def take(self, who: auth.Principal, count: bool = True) -> tuple[dict, bool]:
        """Spend one request of ``who``'s budget; (rate headers, whether it was allowed)."""
        anonymous = who.kind == "anonymous"
        key = (f"installation:{who.installation_id}" if who.kind == "installation"
               else "app" if who.kind == "app" else "anonymous")
        limit = self.anonymous_limit if anonymous else self.limit
        now = self.state.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or bucket[0] <= now:
                bucket = self._buckets[key] = [int(now) + 3600, 0]
            allowed = bucket[1] < limit
            if allowed and count:
                bucket[1] += 1
            used = int(bucket[1])
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(limit - used),
                   "X-RateLimit-Reset": str(int(bucket[0])), "X-RateLimit-Used": str(used),
                   "X-RateLimit-Resource": "core"}
        return headers, allowed


def paginate(req: Request, items: list) -> tuple[list, dict]:
    """Slice by ``per_page``/``page`` and build GitHub's ``Link`` header."""
    try:
        per_page = max(1, min(PER_PAGE_MAX, int(req.arg("per_page", PER_PAGE_DEFAULT))))
        page = max(1, int(req.arg("page", "1")))
    except ValueError:
        raise validation_failed() from None
    last = max(1, -(-len(items) // per_page))

    def link(n: int) -> str:
        query = {k: v[-1] for k, v in req.query.items()}
        query.update(per_page=str(per_page), page=str(n))
        return f"<{req.web}{req.path}?{urllib.parse.urlencode(query)}>"

    rels = []
    if page < last:
        rels += [f'{link(page + 1)}; rel="next"', f'{link(last)}; rel="last"']
    if page > 1:
        rels += [f'{link(1)}; rel="first"', f'{link(min(page - 1, last))}; rel="prev"']
    headers = {"Link": ", ".join(rels)} if rels else {}
    return items[(page - 1) * per_page: page * per_page], headers


def parse_since(value: str | None) -> float | None:
    """GitHub's ``since``: an ISO 8601 timestamp (UTC when it carries no offset)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise validation_failed({"resource": "Issue", "field": "since", "code": "invalid"}) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


class Router:
    """Route table plus the authentication and rate-limit steps every REST call takes."""

    def __init__(self, state: State, public_key_pem: str | bytes, limiter: RateLimiter,
                 secondary: SecondaryLimits | None = None) -> None:
        self.state, self.public_key_pem, self.limiter = state, public_key_pem, limiter
        self.secondary = secondary
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Callable, app_only: bool = False,
            creates_content: bool | None = None) -> None:
        """``creates_content`` (default: a write method on a non-App route) puts the route under
        the content-creation secondary limit."""
        regex = re.sub(r"\{(\w+)\+\}", r"(?P<\1>.+)", template)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        if creates_content is None:
            creates_content = method in WRITE_METHODS and not app_only
        self.routes.append(Route(method, re.compile(f"^{regex}$"), handler, app_only,
                                 creates_content))

    def match(self, method: str, path: str) -> tuple[Route, dict] | None:
        for route in self.routes:
            m = route.pattern.match(path)
            if m and route.method == method:
                return route, {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
        return None

    def dispatch(self, req: Request) -> Response:
        rate_headers: dict = {}
        try:
            found = self.match(req.method, req.path)
            who = auth.principal_from_header(self.state, req.headers.get("Authorization"),
                                             self.public_key_pem,
                                             app_only=bool(found and found[0].app_only))
            rate_headers, allowed = self.limiter.take(who)
            if not allowed:
                raise ApiError(403, f"API rate limit exceeded for installation ID "
                                    f"{who.installation_id}." if who.kind == "installation"
                               else "API rate limit exceeded.")
            if found is None:
                raise not_found()
            route, params = found
            retry_after = None
            if (route.creates_content and who.kind == "installation"
                    and self.secondary is not None):
                retry_after = self.secondary.admit_write(who.installation_id)
            response = (secondary_limited(req, retry_after) if retry_after is not None
                        else route.handler(req, who, **params))
        except ApiError as exc:
            response = Response(exc.status, exc.body(), exc.headers)
        response.headers = {**rate_headers, **response.headers}
        return response


def secondary_limited(req: Request, retry_after: int) -> Response:
    """GitHub's answer to a request over a secondary limit (nothing was done)."""
    return Response(403, {"message": SECONDARY_MESSAGE.format(request_id=req.request_id),
                          "documentation_url": RATE_DOCS},
                    {"Retry-After": str(retry_after)})
