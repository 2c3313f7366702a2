"""Compose the mails of a gateway thread: the PR notification, receipts, activity.

This module turns already-decided facts (repo, title, links, signed values)
into an `email.message.EmailMessage` that mail clients thread together and
that replies can be routed back from. It is not where tokens are signed
(the caller passes the signed strings in), where mail is sent (see
`outbound.delivery`), or where anything is looked up: every input is an
argument, so the same input always gives the same mail.

`compose` is the one builder of headers and MIME structure; the
`*_content` functions only produce `(subject, text, html)` for it.
"""

from __future__ import annotations

import html as _html
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from email import policy as _policy
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import urlsplit

SUBJECT_LIMIT = 200
# Titles are cut before the subject is built, so "Re: " never moves the cut
# and every mail of a thread keeps the same base subject.
_TITLE_LIMIT = 150
_REPO_LIMIT = 60
_NOTIFY_EXCERPT = (20, 2000)  # lines, characters of the PR body
_QUOTE_EXCERPT = (200, 10000)  # of a relayed comment or review

_REPLY_HINT = "Reply to this email to comment on the pull request."
_ANSWER_HINT = "Reply to this email to answer on the pull request."
_FOOTER = ("You are receiving this because you reported the issue. "
           "Merging is done by a maintainer on GitHub.")


@dataclass(frozen=True)
class ThreadHeaders:
    """What makes a mail part of a gateway thread; every value is computed by the caller."""

    message_id: str  # full "<...@domain>"
    reply_to: str  # signed reply address "reply+...@domain"
    signed: dict[str, str]  # X-Gateway-Thread, X-Gateway-Sig, X-Gateway-Sig-Ts ...
    list_id: str  # the whole List-Id value, e.g. "o/r PR #7 <pr-7.r.o.reply.example.com>"
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    unsubscribe_url: str | None = None  # http(s) link for RFC 8058 one-click
    unsubscribe_mailto: str | None = None  # "addr@domain" or "mailto:addr@domain"


# --- headers --------------------------------------------------------------

class _VerbatimHeader(UnstructuredHeader):
    """A header written exactly as given, folded only at spaces.

    Python's default folding RFC 2047-encodes any word longer than a line,
    which turns a long List-Unsubscribe URL, a signature or a foreign
    Message-ID in References into something no machine reads back.
    """

    max_count = 1

    @classmethod
    def parse(cls, value, kwds):
        kwds["parse_tree"] = cls.value_parser(value)
        kwds["decoded"] = value  # never decode "=?...?=" look-alikes

    def fold(self, *, policy):
        limit = policy.max_line_length or 998
        head = f"{self.name}:"
        lines = [head]
        for word in str(self).split():
            if lines[-1] != head and len(lines[-1]) + 1 + len(word) > limit:
                lines.append("")
            lines[-1] += " " + word
        return policy.linesep.join(lines) + policy.linesep


_VERBATIM = {"list-id", "list-unsubscribe", "in-reply-to", "references"}


class _Registry(HeaderRegistry):
    def __getitem__(self, name):
        key = name.lower()
        if key in _VERBATIM or key.startswith("x-gateway-"):
            return type("_VerbatimHeader", (_VerbatimHeader, self.base_class), {})
        return super().__getitem__(name)


# 7bit: non-ASCII bodies go out quoted-printable/base64, so no relay on the
# way needs 8BITMIME and a later DKIM signature survives.
POLICY = _policy.SMTP.clone(cte_type="7bit", header_factory=_Registry())

_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")  # reorder shown text
_MSG_ID = re.compile(r"<[^<>@\s]+@[^<>@\s]+>")
_SIGNED_NAME = re.compile(r"X-Gateway-[A-Za-z0-9-]+", re.IGNORECASE)
_TOKEN = re.compile(r"[!-~]+")  # printable ASCII, no spaces
_URL_BAD = re.compile(r"[\s<>\",]")


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI


def one_line(value: str, limit: int = SUBJECT_LIMIT) -> str:
    """Collapse control characters and whitespace runs to single spaces, trim, cut.

    User text (titles, logins) goes into headers through this, so a CR/LF in
    a PR title cannot start a new header.
    """
    text = " ".join("".join(" " if _is_control(ch) else ch for ch in value).split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _msg_id(value: str) -> str:
    value = value.strip()
    if not _MSG_ID.fullmatch(value) or not value.isascii():
        raise ValueError("a message id must look like <local@domain>")
    return value


def _set_address(msg: EmailMessage, name: str, value: str) -> None:
    """Addresses are set as given (display names allowed) but must be exactly one."""
    if any(map(_is_control, value)):
        raise ValueError(f"{name} must not contain control characters")
    msg[name] = value
    addresses = msg[name].addresses
    if len(addresses) != 1 or "@" not in addresses[0].addr_spec:
        raise ValueError(f"{name} must be exactly one mail address")


def _http_url(url: str) -> str:
    """Only http(s) links go into a mail: no javascript:, data:, file:."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or _URL_BAD.search(url) \
            or not url.isascii() or not url.isprintable():
        raise ValueError("a link must be an absolute http(s) URL without spaces or <>\",")
    return url


def _mailto(value: str) -> str:
    value = value if value.lower().startswith("mailto:") else "mailto:" + value
    if "@" not in value or _URL_BAD.search(value) or not value.isascii() or not value.isprintable():
        raise ValueError("an unsubscribe mailto must be one address without spaces or <>\",")
    return value


def compose(*, sender: str, to: str, subject: str, text: str, html: str,
            thread: ThreadHeaders, date: datetime | None = None) -> EmailMessage:
    """Build one thread mail: threading, routing and auto-reply headers, text + HTML."""
    msg = EmailMessage(policy=POLICY)
    _set_address(msg, "From", sender)
    _set_address(msg, "To", to)
    msg["Subject"] = one_line(subject)
    when = date or datetime.now(timezone.utc)
    if when.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = _msg_id(thread.message_id)
    _set_address(msg, "Reply-To", thread.reply_to)
    if thread.in_reply_to:
        msg["In-Reply-To"] = _msg_id(thread.in_reply_to)
    if thread.references:
        msg["References"] = " ".join(_msg_id(ref) for ref in thread.references)
    for name, value in thread.signed.items():
        if not _SIGNED_NAME.fullmatch(name) or not _TOKEN.fullmatch(value):
            raise ValueError("signed headers are X-Gateway-* with printable ASCII values")
        msg[name] = value
    # Stops vacation responders and Exchange auto-replies from answering us.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    list_id = thread.list_id.strip()
    if not list_id.isascii() or not list_id.isprintable() or not re.search(r"<[^<>\s]+>$", list_id):
        raise ValueError("list_id must be printable ASCII ending in <list-id>")
    msg["List-Id"] = list_id
    targets = []
    if thread.unsubscribe_url:
        targets.append(f"<{_http_url(thread.unsubscribe_url)}>")
    if thread.unsubscribe_mailto:
        targets.append(f"<{_mailto(thread.unsubscribe_mailto)}>")
    if targets:
        msg["List-Unsubscribe"] = ", ".join(targets)
    if thread.unsubscribe_url:
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text, subtype="plain", charset="utf-8")  # also writes MIME-Version
    msg.add_alternative(html, subtype="html", charset="utf-8")
    for part in msg.iter_parts():
        del part["MIME-Version"]  # add_alternative copies it into the part; it belongs on top only
    return msg


# --- content --------------------------------------------------------------
# A mail body is a list of blocks rendered twice, so the text and the HTML
# part always say the same thing:
#   ("p", text)  ("link", label, url)  ("quote", text)  ("footer", text)

def _render_text(blocks: list[tuple]) -> str:
    out = []
    for kind, *args in blocks:
        if kind == "p":
            out.append(args[0])
        elif kind == "link":
            label, url = args
            out.append(f"{label} {url}" if label else url)
        elif kind == "quote":
            out.append("\n".join(("> " + line).rstrip() for line in args[0].splitlines()))
        elif kind == "footer":
            out.append("-- \n" + args[0])
    return "\n\n".join(out) + "\n"


def _render_html(blocks: list[tuple]) -> str:
    esc = _html.escape
    out = ['<!DOCTYPE html>', '<html><head><meta charset="utf-8"></head>',
           '<body style="font-family: sans-serif;">']
    for kind, *args in blocks:
        if kind == "p":
            out.append(f"<p>{esc(args[0])}</p>")
        elif kind == "link":
            label, url = args
            anchor = f'<a href="{esc(url)}">{esc(url)}</a>'
            out.append(f"<p>{esc(label)} {anchor}</p>" if label else f"<p>{anchor}</p>")
        elif kind == "quote":
            out.append('<blockquote style="margin: 0 0 0 0.8ex; border-left: 2px solid #ccc; '
                       'padding-left: 1ex;"><div style="white-space: pre-wrap;">'
                       f"{esc(args[0])}</div></blockquote>")
        elif kind == "footer":
            out.append(f'<p style="color: #666; font-size: small;">{esc(args[0])}</p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _render(subject: str, blocks: list[tuple]) -> tuple[str, str, str]:
    return subject, _render_text(blocks), _render_html(blocks)


def _excerpt(text: str, limits: tuple[int, int]) -> str:
    max_lines, max_chars = limits
    lines = text.strip().splitlines()
    full = "\n".join(lines)
    cut = "\n".join(lines[:max_lines])[:max_chars].rstrip()
    return cut if cut == full else cut + "\n[…]"


def _base_subject(repo: str, title: str) -> str:
    name = one_line(repo.rstrip("/").rsplit("/", 1)[-1], _REPO_LIMIT)
    return f"[{name}] PR ready: {one_line(title, _TITLE_LIMIT)}"


def notification_content(*, repo: str, title: str, pr_url: str, pr_number: int,
                         body: str | None) -> tuple[str, str, str]:
    """The first mail of a thread: the PR is open, here is the link, reply to comment."""
    blocks: list[tuple] = [
        ("p", "A pull request is ready for the issue you reported."),
        ("p", f"Pull request #{pr_number}: {one_line(title, _TITLE_LIMIT)}"),
        ("link", "", _http_url(pr_url)),
    ]
    if body and body.strip():
        blocks.append(("quote", _excerpt(body, _NOTIFY_EXCERPT)))
    blocks += [("p", _REPLY_HINT), ("footer", _FOOTER)]
    return _render(_base_subject(repo, title), blocks)


def receipt_content(*, repo: str, title: str, comment_url: str | None,
                    attachments_note: str | None) -> tuple[str, str, str]:
    """Tell the reporter what became of their reply, so a silent failure is impossible."""
    if comment_url:
        blocks: list[tuple] = [("link", "Your reply was posted as a comment:", _http_url(comment_url))]
    else:
        blocks = [("p", "Your reply had no new text (only quoted text), so nothing was posted.")]
    if attachments_note:
        blocks.append(("p", attachments_note.strip()))
    blocks += [("p", _REPLY_HINT), ("footer", _FOOTER)]
    return _render("Re: " + _base_subject(repo, title), blocks)


_REVIEW_WORDS = {
    "approved": "approved these changes",
    "changes_requested": "requested changes",
    "commented": "reviewed",
}
_ACTIVITY_WORDS = {
    "comment": "commented",
    "review_comment": "commented on the changes",
    "merged": "merged the pull request",
    "closed": "closed the pull request without merging",
    "reopened": "reopened the pull request",
}


def activity_content(*, repo: str, title: str, kind: str, actor: str, text: str | None,
                     url: str | None, review_state: str | None) -> tuple[str, str, str]:
    """Relay one GitHub event on the PR into the reporter's mail thread."""
    if kind == "review":
        verb = _REVIEW_WORDS.get((review_state or "").lower(), "reviewed")
    elif kind in _ACTIVITY_WORDS:
        verb = _ACTIVITY_WORDS[kind]
    else:
        raise ValueError(f"unknown activity kind {kind!r}")
    blocks: list[tuple] = [("p", f"{one_line(actor, 100)} {verb}.")]
    if text and text.strip():
        blocks.append(("quote", _excerpt(text, _QUOTE_EXCERPT)))
    if url:
        blocks.append(("link", "View it on GitHub:", _http_url(url)))
    blocks += [("p", _ANSWER_HINT), ("footer", _FOOTER)]
    return _render("Re: " + _base_subject(repo, title), blocks)
