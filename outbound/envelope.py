"""The SMTP envelope a relay is handed, checked the same way by every relay.

Sole purpose: refuse an envelope no relay should accept (no recipients, or an
address carrying spaces or control characters that could smuggle SMTP commands
or headers), before anything is sent or stored.  Both ``outbound.delivery``
(SMTP) and ``outbound.maildir`` (sandbox) call ``check_envelope``.

Not for: validating addresses any further (syntax, domains) or delivering.
"""

from __future__ import annotations

import unicodedata


def check_envelope(envelope_from: str, recipients: list[str]) -> None:
    """Raise ValueError unless there is a recipient and no address has spaces or control characters."""
    if not recipients:
        raise ValueError("a mail needs at least one recipient")
    for address in [envelope_from, *recipients]:
        if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch.isspace() for ch in address):
            raise ValueError("envelope addresses must not contain spaces or control characters")
