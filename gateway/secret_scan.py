"""Finds credentials in text a person or agent asked us to publish.

PR titles and bodies are refused when they carry one; replies have them redacted
before they become a public comment. Names of kinds are safe to show; the
matched text never leaves this module except to be replaced.
"""
from __future__ import annotations

import re

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("GitHub personal access token", re.compile(r"\bghp_[A-Za-z0-9]{20,}")),
    ("GitHub OAuth token", re.compile(r"\bgho_[A-Za-z0-9]{20,}")),
    ("GitHub user-to-server token", re.compile(r"\bghu_[A-Za-z0-9]{20,}")),
    ("GitHub server-to-server token", re.compile(r"\bghs_[A-Za-z0-9]{20,}")),
    ("GitHub refresh token", re.compile(r"\bghr_[A-Za-z0-9]{20,}")),
    ("GitHub fine-grained token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}")),
    ("private key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----"
                               r"(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|.*)", re.S)),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b")),
    ("AWS secret access key", re.compile(
        r"(?i)aws_?secret_?access_?key[\"'\s:=]+[A-Za-z0-9/+=]{40}")),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}")),
)


def find_secrets(text: str) -> list[str]:
    """Kinds of credential found, in a stable order, without the values."""
    return [name for name, pattern in _PATTERNS if pattern.search(text or "")]


def redact_secrets(text: str) -> tuple[str, list[str]]:
    found = []
    for name, pattern in _PATTERNS:
        text, count = pattern.subn(f"[redacted {name}]", text)
        if count:
            found.append(name)
    return text, found
