"""What counts as one person's address, read the same way at every door.

Part of the foundation (it imports nothing of ours): the SMTP receiver judges a reply's ``From:``
with it, the API judges ``reporter_email`` with it, and participants are compared by its key.

A header that is not exactly one plain mailbox is not a person we can name: two addresses, a
group, a header the RFC 5322 parser had to repair, a display name that carries an address of its
own (``pat@example.org <attacker@evil.example>``, the spam shape), control characters. Such a
header is read as no sender at all, so nothing downstream can credit it to a participant.

Addresses are compared by their ASCII lower case, and an address with any non-ASCII character is
refused rather than folded: ``\\u212aim@`` (KELVIN SIGN) lower-cases to ``kim@`` and would match
Kim otherwise. Internationalised (SMTPUTF8) mailboxes are therefore not participants; that is a
deliberate limit, not an oversight.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import HeaderRegistry

_REGISTRY = HeaderRegistry()
# RFC 5321 dot-atom local part (quoted local parts are legal but only ever seen in abuse).
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# A DNS name of at least two labels, letters-digits-hyphens, no literal addresses.
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}")
_ADDRESS_LIKE = re.compile(r"[^\s<>\"'(),;:@]+@[^\s<>\"'(),;:@]+")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
MAX_ADDRESS = 254     # RFC 5321 path limit, less the brackets
MAX_NAME = 200


@dataclass(frozen=True)
class Mailbox:
    """One person: a display name (possibly empty) and a lower-cased ASCII address."""

    name: str
    address: str

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


def address_key(address: str | None) -> str | None:
    """The form addresses are stored and compared in, or None when it is not a plain address."""
    if not address or len(address) > MAX_ADDRESS or not address.isascii():
        return None
    local, at, domain = address.strip().rpartition("@")
    if not at or len(local) > 64 or not _LOCAL.fullmatch(local) or not _DOMAIN.fullmatch(domain):
        return None
    return f"{local}@{domain}".lower()


def name_problem(name: str | None) -> str | None:
    """Why a display name cannot be shown as a person's name, or None when it can."""
    if not name:
        return None
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    if _CONTROL.search(name):
        return "must not contain control characters or line breaks"
    if _ADDRESS_LIKE.search(name):
        return "must not contain an email address"
    return None


def single_mailbox(value: str | None) -> Mailbox | None:
    """The one mailbox a ``From:``-like header names, or None when it does not name exactly one.

    ``value`` is the raw header value (encoded words allowed). The display name may repeat the
    mailbox's own address (``"bob@example.com" <bob@example.com>``, a common client habit); any
    other address in it makes the header ambiguous.
    """
    value = _FOLD.sub("", value or "")
    if not value or _CONTROL.search(value):
        return None
    try:
        header = _REGISTRY("From", value)
    except (HeaderParseError, ValueError, TypeError, IndexError):
        return None
    if header.defects or len(header.addresses) != 1 or any(g.display_name for g in header.groups):
        return None
    found = header.addresses[0]
    address = address_key(f"{found.username}@{found.domain}")
    if address is None:
        return None
    name = (found.display_name or "").strip()
    if name and name.lower() != address and name_problem(name):
        return None
    if name.lower() == address:
        name = ""
    return Mailbox(name=name, address=address)
