"""GitHub webhook signatures: ``X-Hub-Signature-256: sha256=<hex>`` over the raw body.

Its sole purpose is to sign and verify, in constant time. It does not parse payloads,
de-duplicate deliveries or decide what an event means: that is the web app and the flows.
"""
from __future__ import annotations

import hashlib
import hmac
import re

_HEADER = re.compile(r"sha256=([0-9a-fA-F]{64})")


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub would send for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, signature_header: str | None) -> bool:
    """True only if the header is well-formed and matches; a missing secret never verifies."""
    if not secret or not signature_header:
        return False
    match = _HEADER.fullmatch(signature_header.strip())
    if match is None:
        return False
    return hmac.compare_digest(sign(secret, body), "sha256=" + match.group(1).lower())
