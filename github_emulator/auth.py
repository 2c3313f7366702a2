"""Who is calling, and may they: App JWTs, installation tokens, repository access.

Its sole purpose is to turn an ``Authorization`` header into a :class:`Principal` the way GitHub
does (RS256 JWT checked against the App's public key and GitHub's claim rules; ``ghs_`` tokens
that expire, can be revoked and only reach their installation's repositories) and to answer
access questions with GitHub's errors. It does not route requests or touch git.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

import jwt

from .errors import DOCS, ApiError, bad_credentials, forbidden_integration, not_found
from .state import Repo, State, Token, grants

JWT_SKEW = 60          # seconds of clock drift tolerated on iat
JWT_MAX_LIFETIME = 600  # GitHub's ten minutes
JWT_DOCS = f"{DOCS}/apps/apps#authenticating-as-a-github-app"


@dataclass
class Principal:
    kind: str                      # "app", "installation" or "anonymous"
    token: Token | None = None

    @property
    def installation_id(self) -> int | None:
        return self.token.installation_id if self.token else None


def _jwt_error(message: str) -> ApiError:
    return ApiError(401, message, documentation_url=JWT_DOCS)


def verify_app_jwt(token: str, public_key_pem: str | bytes, app_id: int, now: float) -> None:
    """Raise a GitHub-worded 401 unless ``token`` is a valid JWT for this App."""
    try:
        claims = jwt.decode(token, public_key_pem, algorithms=["RS256"],
                            options={"verify_exp": False, "verify_iat": False,
                                     "verify_nbf": False, "verify_aud": False,
                                     "verify_iss": False})
    except jwt.PyJWTError:
        raise _jwt_error("A JSON web token could not be decoded") from None
    iat, exp, iss = claims.get("iat"), claims.get("exp"), claims.get("iss")
    if not isinstance(iat, (int, float)) or iat > now + JWT_SKEW:
        raise _jwt_error("'Issued at' claim ('iat') must be an Integer representing the time "
                         "that the assertion was issued")
    if not isinstance(exp, (int, float)) or exp <= now:
        raise _jwt_error("'Expiration time' claim ('exp') must be a numeric value representing "
                         "the future time at which the assertion expires")
    if exp - iat > JWT_MAX_LIFETIME + JWT_SKEW or exp > now + JWT_MAX_LIFETIME + JWT_SKEW:
        raise _jwt_error("'Expiration time' claim ('exp') is too far in the future")
    if iss is None or str(iss) != str(app_id):
        raise _jwt_error("'Issuer' claim ('iss') must be an Integer")


def _looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and not value.startswith(("ghs_", "ghp_", "gho_", "ghu_"))


def principal_from_header(state: State, header: str | None, public_key_pem: str | bytes,
                          *, app_only: bool) -> Principal:
    """Resolve the caller. ``app_only`` routes accept a JWT and nothing else."""
    if not header:
        if app_only:
            raise _jwt_error("A JSON web token could not be decoded")
        return Principal("anonymous")
    scheme, _, value = header.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme not in ("bearer", "token") or not value:
        raise bad_credentials()
    if app_only:
        if not _looks_like_jwt(value):
            raise _jwt_error("A JSON web token could not be decoded")
        verify_app_jwt(value, public_key_pem, state.app_id, state.clock())
        return Principal("app")
    if _looks_like_jwt(value):
        verify_app_jwt(value, public_key_pem, state.app_id, state.clock())
        return Principal("app")
    token = state.live_token(value)
    if token is None:
        raise bad_credentials()
    return Principal("installation", token)


def basic_password(header: str | None) -> str | None:
    """The password of an HTTP Basic header (git sends the token there), else None."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except ValueError:
        return None
    user, sep, password = decoded.partition(":")
    return password if sep and user else None


def check_repo(state: State, who: Principal, repo: Repo | None, *,
               permission: str | tuple[str, ...] = "metadata", level: str = "read") -> Repo:
    """Return the repo if ``who`` may do ``permission:level`` on it, else raise like GitHub.

    ``permission`` may name alternatives (a tuple): any one of them suffices.

    GitHub answers 404 for repositories the caller cannot see (private, outside the
    installation) and 403 "Resource not accessible by integration" for visible ones it may not
    change. Public repositories are readable by anyone, as on GitHub.
    """
    if repo is None:
        raise not_found()
    if who.kind == "app":
        # An App JWT only reaches /app endpoints and GET /repos/{o}/{r}/installation.
        raise ApiError(403, "Resource not accessible by integration",
                       documentation_url=JWT_DOCS)
    if who.kind == "anonymous":
        if repo.private:
            raise not_found()
        if level != "read":
            raise ApiError(401, "Requires authentication")
        return repo
    covered = repo.key in state.token_repos(who.token)
    if not covered:
        if repo.private:
            raise not_found()
        if level != "read":
            raise forbidden_integration()
        return repo
    options = (permission,) if isinstance(permission, str) else permission
    if not any(grants(who.token.permissions, p, level) for p in options):
        raise forbidden_integration()
    return repo


GIT_UNAUTHORIZED = ("Invalid username or token. Password authentication is not supported "
                    "for Git operations.\n")


def git_access(state: State, token_value: str | None, repo: Repo | None, write: bool
               ) -> tuple[int, str] | None:
    """None if a git client holding ``token_value`` may fetch (push, with ``write``) ``repo``;
    else GitHub's (status, text). 401 makes git ask for credentials."""
    token = state.live_token(token_value) if token_value else None
    if token is None:
        if repo is None or write or repo.private:
            return 401, GIT_UNAUTHORIZED
        return None
    if repo is None:
        return 404, "Repository not found.\n"
    covered = repo.key in state.token_repos(token)
    if not covered and repo.private:
        return 404, "Repository not found.\n"
    if not write:
        if covered and not grants(token.permissions, "contents", "read") and repo.private:
            return 403, f"Permission to {repo.full_name}.git denied to {state.bot.login}.\n"
        return None
    if not covered or not grants(token.permissions, "contents", "write"):
        return 403, f"Permission to {repo.full_name}.git denied to {state.bot.login}.\n"
    return None
