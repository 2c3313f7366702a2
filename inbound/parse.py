"""Turn the raw bytes of one inbound message into a ParsedMessage.

Sole purpose: read MIME.  Given the bytes an SMTP client sent, say who sent
them, which thread they continue (Message-ID, In-Reply-To, References), what
the text/plain and text/html bodies say, which attachments came along, and
which headers were present, all decoded to ``str``.

Not for: deciding anything about the message (``inbound.rules``), finding the
new text of a reply inside the body (``inbound.reply``), or SMTP
(``inbound.handler``), or decoding text in a charset (``inbound.charsets``,
which this calls for every part and header).  It never raises: bytes that
cannot be parsed at all give a ParsedMessage with empty fields.

The MIME tree is the standard library's (``email.message_from_bytes``).  That
is exactly the tree mail-parser's ``parse_from_bytes(raw).message`` returns,
but mail-parser also computes derived outputs on every parse, which cost more
than the SMTP-time decisions can afford.  Those outputs are not used,
because each failed a test in tests/test_inbound_parse.py, which still
compares our attachments with mail-parser's:

- ``text_plain`` / ``text_html`` are lists of every text part of the message,
  including the text of an attached or forwarded message/rfc822 part, with no
  way to tell which part is the body.  We pick the body parts from the tree
  (the rules of ``EmailMessage.get_body``).
- It returns text in a 7-bit stateful charset (iso-2022-jp, sent as 7bit)
  undecoded, and it decodes charset labels literally.  We decode each part by
  the superset that mail clients really mean (windows-1252 for iso-8859-1,
  GB18030 for gb2312/gbk, cp932 for shift_jis, ...: ``inbound.charsets``).
- Its header decoding drops bytes it cannot decode and leaves an encoded word
  that splits a multi-byte character undecoded.
- It invents random file names for unnamed attachments; parsing the same bytes
  twice must give the same result, so an unnamed attachment has ``filename``
  "".
- It raises on some malformed multiparts (a missing close boundary); then the
  stdlib parser's tree is used instead.

A message with more than 100 MIME containers is read for its headers only:
both parsers recurse per level and slow down faster than the size grows.
"""

from __future__ import annotations

import email
import email.message
import email.parser
import email.utils
import logging
import re
from dataclasses import dataclass
from functools import cached_property


from inbound.charsets import decode_header_value, decode_text, raw_text, unfold

log = logging.getLogger("gateway.inbound")

# Deeper MIME nesting than this is not a mail client's work; parts below it
# are ignored rather than walked (the walk is recursive).
_MAX_DEPTH = 40
# More containers than this is an attack on the parsers (both recurse per
# level, and cost grows faster than the size): such a message is read for
# its headers only.  Real mail, forwarded chains included, has a handful.
_MAX_CONTAINERS = 100

_MSGID = re.compile(r"<([^<>\s]+)>")
_BARE_MSGID = re.compile(r"[^\s<>()\"]+@[^\s<>()\"]+")


@dataclass(frozen=True)
class Attachment:
    """One attachment or inline non-text part (e.g. an image with a Content-ID)."""

    filename: str  # "" when the part names none
    content_type: str
    size: int  # decoded bytes
    content_id: str | None = None  # bare, without <>


@dataclass(frozen=True)
class ParsedMessage:
    """A parsed message; every field is decoded text.

    Message ids (``message_id``, ``in_reply_to``, ``references``) are bare:
    ``<abc@host>`` becomes ``abc@host``.  Bodies have ``\\n`` line endings.
    """

    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    from_address: str | None  # lower-cased addr-spec
    from_name: str | None
    subject: str
    text: str | None
    html: str | None
    attachments: tuple[Attachment, ...]
    headers: tuple[tuple[str, str], ...]
    content_type: str
    report_type: str | None

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (any case), or None."""
        values = self._by_name.get(name.lower())
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        """Every header called ``name`` (any case), in message order."""
        return list(self._by_name.get(name.lower(), ()))

    @cached_property
    def _by_name(self) -> dict[str, list[str]]:
        """The rules ask for a dozen headers per message: one pass, not one per question."""
        found: dict[str, list[str]] = {}
        for key, value in self.headers:
            found.setdefault(key.lower(), []).append(value)
        return found


EMPTY = ParsedMessage(
    message_id=None,
    in_reply_to=(),
    references=(),
    from_address=None,
    from_name=None,
    subject="",
    text=None,
    html=None,
    attachments=(),
    headers=(),
    content_type="text/plain",
    report_type=None,
)


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse ``raw`` (the DATA of one SMTP transaction); never raises."""
    try:
        tree, complete = _tree(bytes(raw))
        return _parsed(tree, complete)
    except Exception:
        log.warning("unparseable message (%d bytes)", len(raw or b""), exc_info=True)
        return EMPTY


def parse_headers(raw: bytes) -> ParsedMessage:
    """Only the header section of ``raw``: what the SMTP-time decisions need; never raises.

    Sender, threading ids, Subject, Content-Type and every header, for a fraction of a full
    parse's cost; text, html and attachments are empty.
    """
    try:
        end = raw.find(b"\r\n\r\n")
        head = raw[:end + 4] if end >= 0 else raw
        return _parsed(email.parser.BytesParser().parsebytes(head, headersonly=True), False)
    except Exception:
        log.warning("unparseable message headers (%d bytes)", len(raw or b""), exc_info=True)
        return EMPTY


# -- the tree ------------------------------------------------------------------


def _tree(raw: bytes) -> tuple[email.message.Message, bool]:
    """The MIME tree, and whether it is complete (False: headers only)."""
    lowered = raw.lower()
    containers = lowered.count(b"multipart/") + lowered.count(b"message/")
    if containers > _MAX_CONTAINERS:
        log.warning("message with %d MIME containers: reading headers only", containers)
        return email.parser.BytesParser().parsebytes(raw, headersonly=True), False
    try:
        return email.message_from_bytes(raw), True
    except Exception as error:  # RecursionError on absurd nesting
        log.info("stdlib parser failed (%s); reading headers only", type(error).__name__)
    return email.parser.BytesParser().parsebytes(raw, headersonly=True), False


def _parsed(tree: email.message.Message, complete: bool) -> ParsedMessage:
    headers = tuple((str(name), decode_header_value(value)) for name, value in tree.raw_items())
    first = {}
    for name, value in headers:
        first.setdefault(name.lower(), value)
    raw_from = next((str(v) for k, v in tree.raw_items() if k.lower() == "from"), "")
    from_name, from_address = _sender(raw_from)
    message_ids = _ids(first.get("message-id", ""))
    content_type = tree.get_content_type()
    report_type = tree.get_param("report-type") if content_type == "multipart/report" else None
    if not isinstance(report_type, str):
        report_type = None
    text_parts: list[email.message.Message] = []
    html_parts: list[email.message.Message] = []
    if complete:
        _find_body(tree, "plain", text_parts, 0)
        _find_body(tree, "html", html_parts, 0)
    body_ids = {id(p) for p in text_parts + html_parts}
    return ParsedMessage(
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=_ids(" ".join(v for k, v in headers if k.lower() == "in-reply-to")),
        references=_ids(" ".join(v for k, v in headers if k.lower() == "references")),
        from_address=from_address,
        from_name=from_name,
        subject=first.get("subject", ""),
        text=_join(text_parts),
        html=_join(html_parts),
        attachments=tuple(_attachments(tree, body_ids, 0)) if complete else (),
        headers=headers,
        content_type=content_type,
        report_type=report_type.lower() if report_type else None,
    )


def _sender(raw_from: str) -> tuple[str | None, str | None]:
    """Display name and lower-cased address of the first From mailbox.

    The address structure is parsed before the display name is decoded, so
    an encoded name containing ``<`` or ``,`` cannot change the address.
    """
    if not raw_from:
        return None, None
    for name, address in email.utils.getaddresses([unfold(raw_from)]):
        if "@" in address:
            decoded = decode_header_value(name) if name else ""
            return decoded or None, raw_text(address).strip().lower()
    return None, None


def _ids(value: str) -> tuple[str, ...]:
    """Bare message ids from a header value, in order, without repeats."""
    found = _MSGID.findall(value) or _BARE_MSGID.findall(value)
    seen: dict[str, None] = {}
    for msgid in found:
        seen.setdefault(msgid, None)
    return tuple(seen)


# -- bodies --------------------------------------------------------------------


def _is_attachment(part: email.message.Message) -> bool:
    return (part.get_content_disposition() or "") == "attachment"


def _find_body(part: email.message.Message, subtype: str, found: list, depth: int) -> bool:
    """Collect the ``text/<subtype>`` body parts under ``part`` into ``found``.

    Like ``EmailMessage.get_body``: in multipart/alternative the last child
    that has one (the sender's preferred rendering); in multipart/related
    the start part; in any other
    multipart (mixed, signed, report) every inline child in order, since
    some clients split the body around an inline image.  Attachments and
    message/rfc822 parts (forwarded or bounced mail) are never the body.
    """
    if depth > _MAX_DEPTH or _is_attachment(part):
        return False
    maintype, ctype = part.get_content_maintype(), part.get_content_type()
    if ctype == f"text/{subtype}":
        found.append(part)
        return True
    if maintype != "multipart":
        return False
    if not part.is_multipart():
        # The boundary never appears, so the stdlib kept the whole body as
        # one string: that string is all the text there is.
        if subtype == "plain":
            found.append(part)
            return True
        return False
    children = [c for c in part.get_payload() if isinstance(c, email.message.Message)]
    if ctype == "multipart/alternative":
        # The last alternative is the sender's preference; for one subtype
        # there is normally exactly one.
        for child in reversed(children):
            if _find_body(child, subtype, found, depth + 1):
                return True
        return False
    if ctype == "multipart/related":
        start = part.get_param("start")
        ordered = children
        if isinstance(start, str):
            ordered = [c for c in children if c.get("content-id", "").strip() == start.strip()] or children
        return bool(ordered) and _find_body(ordered[0], subtype, found, depth + 1)
    hit = False
    for child in children:
        hit = _find_body(child, subtype, found, depth + 1) or hit
    return hit


def _join(parts: list[email.message.Message]) -> str | None:
    if not parts:
        return None
    return "\n".join(_part_text(p) for p in parts)


def _part_text(part: email.message.Message) -> str:
    try:
        data = part.get_payload(decode=True) or b""
    except Exception:
        data = b""
    if not isinstance(data, bytes):
        data = str(data).encode("utf-8", "surrogateescape")
    text = decode_text(data, part.get_content_charset())
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -- attachments -----------------------------------------------------------------


def _attachments(part: email.message.Message, body_ids: set[int], depth: int):
    """Every non-body leaf that is an attachment or inline non-text content."""
    if depth > _MAX_DEPTH:
        return
    if id(part) in body_ids:
        return
    ctype = part.get_content_type()
    disposition = part.get_content_disposition()
    filename = _filename(part)
    content_id = _ids(str(part.get("content-id", "")))
    if part.get_content_maintype() == "multipart":
        if part.is_multipart():
            for child in part.get_payload():
                if isinstance(child, email.message.Message):
                    yield from _attachments(child, body_ids, depth + 1)
        return
    if ctype == "message/rfc822" or part.is_multipart():
        # An attached message is one attachment; its own parts are its business.
        yield Attachment(filename, ctype, len(_flatten(part)), content_id[0] if content_id else None)
        return
    # A text/plain or text/html part that is not the body and has no name is
    # an unchosen rendering (say, of a nested alternative), not a file.
    if disposition == "attachment" or filename or ctype not in ("text/plain", "text/html"):
        size = len(_payload_bytes(part))
        yield Attachment(filename, ctype, size, content_id[0] if content_id else None)


def _filename(part: email.message.Message) -> str:
    try:
        name = part.get_filename()
    except Exception:
        return ""
    return decode_header_value(name) if name else ""


def _payload_bytes(part: email.message.Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        return b""
    if isinstance(data, bytes):
        return data
    return str(data or "").encode("utf-8", "surrogateescape")


def _flatten(part: email.message.Message) -> bytes:
    try:
        inner = part.get_payload()
        if isinstance(inner, list) and inner:
            return inner[0].as_bytes()
        return part.as_bytes()
    except Exception:
        return b""

