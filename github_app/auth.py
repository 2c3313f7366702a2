"""The App's identity: its JWT, and installation tokens kept in a cache the caller provides.

Its sole purpose is to turn the App's private key into installation access tokens and keep them
in a ``TokenCache`` (the gateway's shares them between processes and encrypts them at rest),
refreshed some minutes before GitHub expires them, dropped on a 401 or when an installation goes
away. It also answers the few questions only the App JWT can ask (which installation covers a
repository, is the App configured right, what is its slug). It does not call repository
endpoints: that is :mod:`github_app.client`.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol

import jwt
from github import Auth, GithubIntegration
from github.GithubException import GithubException

from gateway.domain import utcnow
from gateway.errors import PermanentError

from .errors import CREDENTIALS_REFUSED, github_message, translate

JWT_BACKDATE = timedelta(seconds=60)   # GitHub's advice against clock drift
JWT_LIFETIME = timedelta(minutes=9)    # GitHub allows at most 10


class TokenCache(Protocol):
    """Where installation tokens outlive one process: plaintext in, plaintext out.

    How the tokens are kept (and protected) is the cache's business. ``put`` replaces any token
    the installation had, and must not fail when another process stores one at the same moment.
    """

    def get(self, installation_id: int) -> tuple[str, datetime] | None:
        """The cached token and when GitHub expires it, or None if there is none it can read."""

    def put(self, installation_id: int, token: str, expires_at: datetime) -> None: ...

    def drop(self, installation_id: int) -> None: ...


def app_jwt(app_id: str, private_key_pem: str, now: datetime) -> str:
    """An RS256 JWT that authenticates as the App for about nine minutes."""
    issued = int((now - JWT_BACKDATE).timestamp())
    expires = int((now + JWT_LIFETIME).timestamp())
    return jwt.encode({"iat": issued, "exp": expires, "iss": str(app_id)}, private_key_pem,
                      algorithm="RS256")


class InstallationTokens:
    """Installation tokens kept in ``cache``, refreshed at least ``refresh_margin`` before expiry."""

    def __init__(self, cache: TokenCache, *, app_id: str, private_key: str, api_url: str,
                 clock: Callable[[], datetime] = utcnow,
                 refresh_margin: timedelta = timedelta(minutes=5), timeout: float = 15):
        self._cache = cache
        self._app_id = str(app_id)
        self._private_key = private_key
        self.api_url = api_url.rstrip("/")
        self._clock = clock
        self._margin = refresh_margin
        self.timeout = timeout
        self._slug: str | None = None

    def __repr__(self) -> str:  # never show the key
        return f"InstallationTokens(app_id={self._app_id!r}, api_url={self.api_url!r})"

    # -- installation tokens --------------------------------------------------------------------
    def get(self, installation_id: int) -> str:
        """A token for the installation valid for at least the refresh margin."""
        cached = self._cache.get(installation_id)
        if cached is not None and cached[1] - self._margin > self._clock():
            return cached[0]
        token, expires_at = self._fetch(installation_id)
        self._cache.put(installation_id, token, expires_at)
        return token

    def invalidate(self, installation_id: int) -> None:
        """Forget the cached token (after a 401, or when the installation is deleted/suspended)."""
        self._cache.drop(installation_id)

    def _fetch(self, installation_id: int) -> tuple[str, datetime]:
        try:
            with self._integration() as integration:
                grant = integration.get_access_token(installation_id)
                token, expires_at = grant.token, grant.expires_at
        except GithubException as exc:
            if exc.status == 404:
                raise PermanentError(
                    f"GitHub App installation {installation_id} not found; the App may have been "
                    "uninstalled or the installation_id is wrong") from None
            if exc.status == 403 and "suspended" in github_message(exc).lower():
                raise PermanentError(f"GitHub App installation {installation_id} is suspended; "
                                     "an owner must unsuspend it") from None
            raise translate(exc, not_found=None) from None
        except Exception as exc:  # network trouble
            raise translate(exc) from None
        if expires_at is None:
            expires_at = self._clock() + timedelta(hours=1)
        elif expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=timezone.utc)
        return token, expires_at

    # -- questions only the App itself can ask ----------------------------------------------------
    def installation_for_repo(self, repo: str) -> int:
        """The id of the installation that covers ``owner/name``."""
        owner, _, name = repo.partition("/")
        try:
            with self._integration() as integration:
                return integration.get_repo_installation(owner, name).id
        except GithubException as exc:
            if exc.status == 404:
                raise PermanentError(f"The GitHub App is not installed on {repo}; install it or "
                                     "pass installation_id") from None
            raise translate(exc, repo=repo) from None
        except Exception as exc:
            raise translate(exc, repo=repo) from None

    def check(self) -> None:
        """Raise TransientError/PermanentError unless GitHub accepts the App's JWT (health check)."""
        self.app_slug(refresh=True)

    def app_slug(self, *, refresh: bool = False) -> str:
        """The App's slug (GET /app); its bot's login is ``f"{slug}[bot]"``."""
        if self._slug is None or refresh:
            try:
                with self._integration() as integration:
                    self._slug = integration.get_app().slug
            except GithubException as exc:
                if exc.status in (401, 404):
                    raise PermanentError(CREDENTIALS_REFUSED) from None
                raise translate(exc) from None
            except Exception as exc:
                raise translate(exc) from None
        return self._slug

    def _integration(self) -> GithubIntegration:
        # PyGithub signs with our sign_func, so every JWT sent is exactly app_jwt()'s.
        auth = Auth.AppAuth(self._app_id, sign_func=lambda _payload: app_jwt(
            self._app_id, self._private_key, self._clock()))
        return GithubIntegration(auth=auth, base_url=self.api_url,
                                 timeout=pygithub_timeout(self.timeout), retry=None, seconds_between_requests=None,
                                 seconds_between_writes=None)


def pygithub_timeout(timeout: float) -> int:
    """PyGithub insists on whole seconds."""
    return max(1, math.ceil(timeout))
