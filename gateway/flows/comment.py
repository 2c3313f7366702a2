"""How an email reply reads as a PR comment.

    **Ann Example** via email:

    <the new text, secrets redacted>

    Attachments (not uploaded to GitHub): `trace.log` (12.3 KB)

    <details><summary>Quoted text (hidden)</summary> … what the extractor cut … </details>

    <!-- gateway:inbound:<thread>:<message> -->

The hidden marker lets a retry find a comment posted before a crash, and lets
the webhook flow recognise the gateway's own comments.
"""
from __future__ import annotations

import re

from gateway.secret_scan import redact_secrets

MARKER_PREFIX = "<!-- gateway:inbound:"
MAX_COMMENT = 65000  # GitHub refuses bodies over 65536 characters
_NAME_UNSAFE = re.compile(r"[*_`\[\]<>#|\\@!~\r\n\t]+")
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")


def marker(thread_id: str, inbound_id: int) -> str:
    return f"{MARKER_PREFIX}{thread_id}:{inbound_id} -->"


def has_marker(body: str | None) -> bool:
    return MARKER_PREFIX in (body or "")


def sender_line(name: str | None, address: str, *, show_address: bool) -> str:
    """Names are cleaned so a display name cannot @mention, link or format."""
    clean = _NAME_UNSAFE.sub(" ", name or "").strip()[:80] or address.split("@")[0]
    clean = _NAME_UNSAFE.sub(" ", clean).strip() or "Someone"
    suffix = f" ({address.replace('@', ' at ')})" if show_address else ""
    return f"**{clean}**{suffix} via email:"


def _size(size: int) -> str:
    for unit in ("bytes", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} MB"


def render_comment(*, sender: str, text: str, cut: str, attachments: list[tuple[str, int]],
                   marker_text: str) -> tuple[str, list[str]]:
    """The comment body, and the kinds of secret that were redacted from it."""
    text, redacted = redact_secrets(text)
    cut, redacted_cut = redact_secrets(cut)
    # Quoted history carries addresses (the reporter's, our signed reply address) that a
    # public comment must not: the person did not write them.
    cut = _ADDRESS.sub("[address hidden]", cut)
    parts = [sender, "", text.strip()]
    if attachments:
        listed = ", ".join(f"`{_NAME_UNSAFE.sub('_', name) or 'unnamed'}` ({_size(size)})" for name, size in attachments)
        parts += ["", f"Attachments (not uploaded to GitHub): {listed}"]
    if redacted or redacted_cut:
        parts += ["", "_The gateway removed what looked like a credential from this reply._"]
    quoted = ""
    if cut.strip():
        quoted = "\n".join(["", "<details><summary>Quoted text (hidden)</summary>", "",
                            "\n".join("> " + line if line else ">" for line in cut.strip().splitlines()),
                            "", "</details>"])
    body = "\n".join(parts)
    room = MAX_COMMENT - len(marker_text) - 200
    if len(body) > room:
        body, quoted = body[:room] + "\n\n_(truncated: the reply was longer than a GitHub comment allows)_", ""
    elif len(body) + len(quoted) > room:
        quoted = ""
    return f"{body}\n{quoted}\n\n{marker_text}".replace("\n\n\n", "\n\n"), sorted(set(redacted + redacted_cut))
