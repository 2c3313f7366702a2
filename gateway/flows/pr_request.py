"""What a valid "open a pull request" request is; every bad field is named.

Kept apart from the flow so the flow reads as effects only. Errors are
collected (not raised on the first) so a caller fixes everything in one go.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from email.utils import parseaddr
from typing import Any

from gateway.secret_scan import find_secrets

_REPO_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_EMAIL_RE = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*$")
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_REMOTE_RE = re.compile(r"^(https?|ssh|git)://[^\s]+$|^[\w.-]+@[\w.-]+:[^\s]+$")
_FIELDS = {"repo", "head", "base", "title", "body", "reporter_email", "reporter_name", "installation_id", "source"}
MAX_BODY = 65536  # GitHub's limit for a PR body


class InvalidRequest(Exception):
    def __init__(self, fields: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


@dataclass(frozen=True)
class PullRequestSpec:
    repo: str
    head: str
    base: str | None
    title: str
    body: str
    reporter_email: str
    reporter_name: str | None
    installation_id: int | None
    source_url: str | None
    source_ref: str | None

    def fingerprint(self) -> str:
        """Identifies the request's content, to tell a retry from a reused idempotency key."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def ref_problem(ref: str) -> str | None:
    """git check-ref-format's rules, in the words a caller needs."""
    if not ref:
        return "must not be empty"
    if len(ref) > 255:
        return "is longer than 255 characters"
    if _BAD_REF_CHARS.search(ref):
        return "contains a space, control character or one of ~^:?*[\\"
    if ref.startswith(("-", "/", ".")) or ref.endswith(("/", ".", ".lock")) or ".." in ref or "//" in ref \
            or "@{" in ref or ref == "@" or "/." in ref:
        return "is not a valid git branch name"
    return None


def parse_pull_request_request(data: Any, *, allow_local_sources: bool = False) -> PullRequestSpec:
    if not isinstance(data, dict):
        raise InvalidRequest({"body": "expected a JSON object"})
    errors: dict[str, str] = {}
    for name in sorted(set(data) - _FIELDS):
        errors[name] = "unknown field"

    def text(name: str, *, required: bool, limit: int) -> str | None:
        value = data.get(name)
        if value is None:
            if required:
                errors[name] = "is required"
            return None
        if not isinstance(value, str):
            errors[name] = "must be a string"
            return None
        if required and not value.strip():
            errors[name] = "must not be empty"
        elif len(value) > limit:
            errors[name] = f"is longer than {limit} characters"
        return value

    repo = text("repo", required=True, limit=200)
    if repo and "repo" not in errors and (not _REPO_RE.match(repo) or repo.split("/")[1] in (".", "..")):
        errors["repo"] = 'must be "owner/name"'
    head = text("head", required=True, limit=255)
    if head is not None and "head" not in errors and (problem := ref_problem(head)):
        errors["head"] = problem
    base = text("base", required=False, limit=255)
    if base is not None and "base" not in errors and (problem := ref_problem(base)):
        errors["base"] = problem
    title = text("title", required=True, limit=256)
    if title and ("\n" in title or "\r" in title):
        errors["title"] = "must be one line"
    body = text("body", required=False, limit=MAX_BODY) or ""
    reporter_name = text("reporter_name", required=False, limit=200)

    reporter = text("reporter_email", required=True, limit=320)
    email = None
    if reporter and "reporter_email" not in errors:
        name, email = parseaddr(reporter)
        if not _EMAIL_RE.match(email or ""):
            errors["reporter_email"] = "is not an email address"
        reporter_name = reporter_name or name or None

    installation_id = data.get("installation_id")
    if installation_id is not None and (isinstance(installation_id, bool) or not isinstance(installation_id, int)
                                        or installation_id <= 0):
        errors["installation_id"] = "must be a positive integer"

    source_url = source_ref = None
    source = data.get("source")
    if source is not None:
        if not isinstance(source, dict) or set(source) - {"url", "ref"}:
            errors["source"] = 'must be an object {"url", "ref"}'
        else:
            source_url, source_ref = source.get("url"), source.get("ref") or head
            if not isinstance(source_url, str) or not source_url:
                errors["source.url"] = "is required"
            elif not (_REMOTE_RE.match(source_url) or (allow_local_sources and (
                    source_url.startswith("/") or source_url.startswith("file://")))):
                errors["source.url"] = ("must be an https://, ssh:// or git:// remote"
                                        + ("" if allow_local_sources else " (local paths are not allowed)"))
            if not isinstance(source_ref, str) or (problem := ref_problem(source_ref)):
                errors["source.ref"] = "is not a valid git ref"

    for name, value in (("title", title), ("body", body)):
        if value and (kinds := find_secrets(value)):
            errors[name] = f"contains what looks like a {', '.join(kinds)}; remove it (nothing was stored)"

    if errors:
        raise InvalidRequest(errors)
    return PullRequestSpec(repo=repo, head=head, base=base, title=title.strip(), body=body,
                           reporter_email=email.lower(), reporter_name=reporter_name,
                           installation_id=installation_id, source_url=source_url, source_ref=source_ref)
