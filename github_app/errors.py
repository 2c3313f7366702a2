"""Turning what GitHub (through PyGithub or requests) said into TransientError / PermanentError.

Its sole purpose is the translation: rate limits become a TransientError carrying the wait GitHub
asked for, outages and network trouble a plain TransientError, and refusals that retrying cannot
fix (not installed, not found, missing permission, invalid branch) a PermanentError whose message
tells a person what to do. It makes no requests and holds no credentials. The 401 "fetch a fresh
token and retry once" rule lives in the client, which knows how to re-fetch; here a 401 is final.

Messages are built from our own words plus GitHub's ``message`` field, and every message goes
through :func:`scrub`, so a token can never reach a user, a log line or the dead-letter table.
"""
from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

import requests
from github.GithubException import GithubException, RateLimitExceededException

from gateway.errors import PermanentError, TransientError

CREDENTIALS_REFUSED = "GitHub refused the App's credentials; check GITHUB_APP_ID and the private key"
FRESH_TOKEN_REFUSED = "GitHub refused a freshly issued installation token (HTTP 401); retrying later"
# GitHub's advice for a secondary limit without Retry-After: wait at least a minute.
SECONDARY_DEFAULT_WAIT = 60.0

_SECRET_PATTERNS = [
    re.compile(r"\bgh[opsur]_[A-Za-z0-9_]{16,}"),            # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"),  # JWTs
    re.compile(r"(?i)(authorization:\s*)(basic|bearer|token)\s+\S+"),
    re.compile(r"(?i)(x-access-token:)[^@\s]+"),
    re.compile(r"(?i)(https?://)[^/@\s]+@"),                   # userinfo in URLs
]


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with the given secrets and anything that looks like a credential replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
    return text


def github_message(exc: GithubException) -> str:
    """GitHub's own explanation: ``message`` plus any per-field ``errors[].message``."""
    data = exc.data if isinstance(exc.data, dict) else {}
    parts = [str(data.get("message") or exc.message or f"HTTP {exc.status}")]
    for item in data.get("errors") or []:
        if isinstance(item, dict) and item.get("message"):
            parts.append(str(item["message"]))
        elif isinstance(item, str):
            parts.append(item)
    return scrub("; ".join(parts))


def field_errors(exc: GithubException) -> list[dict]:
    data = exc.data if isinstance(exc.data, dict) else {}
    return [e for e in data.get("errors") or [] if isinstance(e, dict)]


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def rate_limit_wait(exc: GithubException, now: float | None = None) -> float | None:
    """Seconds GitHub asked us to wait, or None if this is not a rate limit."""
    now = time.time() if now is None else now
    headers = exc.headers
    retry_after = _header(headers, "Retry-After")
    if exc.status in (403, 429) and retry_after:
        try:
            return max(1.0, float(retry_after))
        except ValueError:
            try:
                return max(1.0, parsedate_to_datetime(retry_after).timestamp() - now)
            except (TypeError, ValueError):
                pass
    if exc.status in (403, 429) and _header(headers, "X-RateLimit-Remaining") == "0":
        reset = _header(headers, "X-RateLimit-Reset")
        if reset and reset.isdigit():
            return max(1.0, int(reset) - now + 1)
    if isinstance(exc, RateLimitExceededException) or exc.status == 429:
        return SECONDARY_DEFAULT_WAIT
    return None


def translate(exc: BaseException, *, repo: str | None = None, permission: str | None = None,
              not_found: str | None = None) -> Exception:
    """The TransientError or PermanentError to raise instead of ``exc``.

    ``permission`` names what a 403 "Resource not accessible by integration" lacks (for example
    "Pull requests: write"); ``not_found`` is the message for a 404 in this call's context.
    Callers handle call-specific 422s before falling back to this.
    """
    where = f" on {repo}" if repo else ""
    if isinstance(exc, (PermanentError, TransientError)):
        return exc
    if isinstance(exc, GithubException):
        status = exc.status
        wait = rate_limit_wait(exc)
        if wait is not None:
            return TransientError(f"GitHub rate limit reached{where}; retrying in {wait:.0f} s: "
                                  f"{github_message(exc)}", retry_after=wait)
        if status == 401:
            return PermanentError(CREDENTIALS_REFUSED)
        if status >= 500:
            return TransientError(f"GitHub answered {status}{where}: {github_message(exc)}")
        if status == 404:
            return PermanentError(not_found or (
                f"Repository {repo} not found, or the GitHub App is not installed on it"
                if repo else "GitHub answered 404 Not Found"))
        if status == 403 and "not accessible by integration" in github_message(exc).lower():
            needs = f"'{permission}'" if permission else "more permissions"
            return PermanentError(f"Permission denied: the App needs {needs}{where}")
        if status == 403 and "suspended" in github_message(exc).lower():
            return PermanentError(f"The GitHub App installation is suspended{where}: "
                                  f"{github_message(exc)}")
        return PermanentError(f"GitHub refused the request{where} ({status}): {github_message(exc)}")
    if isinstance(exc, (requests.Timeout, TimeoutError)):
        return TransientError(f"GitHub did not answer in time{where}")
    if isinstance(exc, (requests.ConnectionError, ConnectionError)):
        return TransientError(f"Could not reach GitHub{where}: {type(exc).__name__}")
    if isinstance(exc, requests.RequestException):
        return TransientError(f"HTTP error talking to GitHub{where}: {type(exc).__name__}")
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))

