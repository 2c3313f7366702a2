"""Sandbox and development delivery: every mail lands in one Maildir.

Sole purpose: ``MaildirRelay``, a relay with the same ``send`` / ``check`` as
``outbound.delivery.SmtpRelay`` that stores each mail (envelope recorded as
Return-Path / Delivered-To) where a person or a test can read it back
(``messages``).  Write failures are classified like relay failures:
``PermanentError`` when the Maildir is not writable, ``TransientError`` otherwise.

Not for: real delivery over SMTP (``outbound.delivery``, which re-exports
``MaildirRelay``), queueing or retries (the worker), or composing mail.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import re
from email.message import EmailMessage
from pathlib import Path

from gateway.errors import PermanentError, TransientError
from outbound.envelope import check_envelope

_MAILDIR_KEY = re.compile(r"(\d+)\.M(\d+)P\d+Q(\d+)")


class MaildirRelay:
    """Sandbox/dev delivery: every mail lands in one Maildir that a person or a test can read."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"MaildirRelay({str(self.path)!r})"

    def send(self, message: EmailMessage | bytes, *, envelope_from: str,
             recipients: list[str]) -> None:
        """Store the message with the envelope recorded as Return-Path / Delivered-To."""
        check_envelope(envelope_from, recipients)
        raw = message.as_bytes() if isinstance(message, EmailMessage) else bytes(message)
        envelope = f"Return-Path: <{envelope_from}>\n" + "".join(
            f"Delivered-To: {rcpt}\n" for rcpt in recipients)
        try:
            self._box().add(envelope.encode() + raw.replace(b"\r\n", b"\n"))
        except PermissionError as exc:
            raise PermanentError(f"Maildir {self.path} is not writable: {exc.strerror}") from exc
        except OSError as exc:
            raise TransientError(f"Maildir {self.path} write failed: {exc.strerror or exc}") from exc

    def check(self) -> None:
        try:
            self._box()
        except OSError as exc:
            raise PermanentError(f"Maildir {self.path} cannot be created: {exc.strerror or exc}") from exc
        if not os.access(self.path / "tmp", os.W_OK) or not os.access(self.path / "new", os.W_OK):
            raise PermanentError(f"Maildir {self.path} is not writable")

    def messages(self) -> list[EmailMessage]:
        """All stored mails, oldest first."""
        box = self._box()

        def order(key: str):
            match = _MAILDIR_KEY.match(key)
            return tuple(map(int, match.groups())) if match else (0, 0, 0)

        return [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
                for key in sorted(box.keys(), key=order)]

    def _box(self) -> mailbox.Maildir:
        return mailbox.Maildir(self.path, factory=None, create=True)
