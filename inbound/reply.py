"""Reply extraction: from a plain-text mail body, keep only what the person wrote.

Its sole purpose in life is to split a reply body into the new text (which becomes
the PR comment) and what was cut (quoted history, attribution lines, embedded
headers, signatures), so a wrong cut never loses words: the caller shows ``cut``
collapsed under the comment.  It does not parse MIME, decode charsets or read HTML
(``inbound.html_reply`` turns HTML into text first, then calls this).

How (the design of Discourse's email_reply_trimmer, in our own words): each line is
classified once (``inbound.reply_lines``: empty, text, quote, attribution, header,
signature, delimiter, ...), wrapped attributions are joined, runs of embedded headers
become blocks, and then a few rules, here, decide where the new text ends:

- ``-- `` (the RFC 3676 sig dash) ends the reply; so does a delimiter followed by a
  few lines of signature;
- an attribution or header block after the person's text, introducing unquoted
  history or a trailing quote, ends the reply;
- an attribution followed by a quote and then more new text is an *inline* reply:
  the quotes are kept as Markdown block quotes and only the attribution is cut;
- a trailing quote block is cut; a leading attribution + quote with the answer
  below (bottom-posting) keeps only the answer.

Conservative by default: a body that is not just quotes and signature never
extracts to nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from inbound.reply_lines import (ATTRIBUTION, DELIMITER, EMPTY, HEADER_BLOCK, QUOTE, RULE, SIG_DASH, SIGNATURE,
                                 TEXT, WEAK_QUOTE, classify, is_attribution)

__all__ = ["Extraction", "extract_reply", "extract_reply_text", "is_attribution"]


@dataclass(frozen=True)
class Extraction:
    """The new text of a reply and everything removed from around it."""

    text: str
    cut: str


_HISTORY_START = ATTRIBUTION + HEADER_BLOCK
_HISTORY_START_RE = re.compile(f"[{_HISTORY_START}]")
_HISTORY_RUN_RE = re.compile(f"[{ATTRIBUTION}{HEADER_BLOCK}{EMPTY}{SIGNATURE}{DELIMITER}{RULE}]*")
_QUOTE_RUN_RE = re.compile(f"[{QUOTE}{EMPTY}]*")
_RULES = DELIMITER + RULE
_NEEDS_SPACING = re.compile(f"[{QUOTE}{DELIMITER}{RULE}]")
_LINE_BREAKS = re.compile(r"\r*\n|\r|[\u2028\u2029\x85\x0b\x0c]")
_ODD_BREAK = re.compile(r"[\u2028\u2029\x85\x0b\x0c]")
_SIGNATURE_TAIL_LINES = 6


def extract_reply_text(body: str) -> str:
    """Only the new text; see ``extract_reply``."""
    return extract_reply(body).text


def extract_reply(body: str) -> Extraction:
    """Split a plain-text reply body into the new text and what was cut."""
    if not body or body.isspace():
        return Extraction("", "")
    if "\r" in body or (not body.isascii() and _ODD_BREAK.search(body)):
        body = _LINE_BREAKS.sub("\n", body)
    lines = body.split("\n")
    # Classify on a copy where no-break spaces are spaces ("On\xa0Tue,\xa0... wrote:"); keep the original text.
    seen = body.replace("\xa0", " ").split("\n") if "\xa0" in body else lines
    pattern = classify(seen, fences="```" in body or "~~~" in body)
    last, removed = _decide(pattern, soft_delimiters=True)
    if last < 0 and TEXT in pattern:
        # A delimiter rule ate every line of text: better a signature too many than a lost reply.
        last, removed = _decide(pattern, soft_delimiters=False)
    if last < 0 and not _only_history(seen, pattern):
        return Extraction(_join(lines), "")  # only quotes, and no sign they are history: keep
    return _assemble(lines, pattern, last, removed)


def _decide(pattern: str, soft_delimiters: bool) -> tuple[int, set[int]]:
    """The last line of new text (-1 if none) and the lines before it that are not new text.

    ``pattern`` has one letter per line; str.find and anchored regexes on it keep this fast.
    """
    end = _signature_start(pattern, soft_delimiters)
    removed: set[int] = set()
    search = _HISTORY_START_RE.search
    found = search(pattern, 0, end)
    while found:
        i = found.start()
        seen_text = pattern.find(TEXT, 0, i) >= 0
        j = _HISTORY_RUN_RE.match(pattern, i, end).end()
        if j < end and pattern[j] == QUOTE:
            text_after = pattern.find(TEXT, _QUOTE_RUN_RE.match(pattern, j, end).end(), end)
            if text_after < 0:
                end = i  # a trailing quote and the attribution introducing it
                break
            if not seen_text and pattern.find(QUOTE, text_after, end) < 0:
                removed.update(range(i, text_after))  # bottom-post: the whole quoted mail, answer below
                found = search(pattern, text_after, end)
                continue
            removed.update(x for x in range(i, j) if pattern[x] in _HISTORY_START)  # inline reply
        elif seen_text:
            end = i  # unquoted history after the reply (Outlook, forwards, mobile clients)
            break
        else:
            removed.update(range(i, j))  # history before any text: a forward, or the reply at the end
        found = search(pattern, j, end)
    return pattern.rfind(TEXT, 0, end), removed


def _signature_start(pattern: str, soft_delimiters: bool) -> int:
    """Where the signature begins: the sig dash, or a delimiter with only a few lines after it."""
    end = pattern.find(SIG_DASH)
    if end < 0:
        end = len(pattern)
    i = pattern.find(DELIMITER, 0, end) if soft_delimiters else -1
    while i >= 0:
        tail = 0
        for kind in pattern[i + 1:end]:
            if kind in _HISTORY_START:
                break
            if kind == QUOTE or kind == WEAK_QUOTE:
                tail = _SIGNATURE_TAIL_LINES + 1
                break
            if kind != EMPTY and kind != DELIMITER and kind != RULE:
                tail += 1
                if tail > _SIGNATURE_TAIL_LINES:
                    break
        if tail <= _SIGNATURE_TAIL_LINES:
            return i
        i = pattern.find(DELIMITER, i + 1, end)
    return end


def _only_history(lines: list[str], pattern: str) -> bool:
    """No new text: history (an attribution somewhere, even quoted) or just a signature?"""
    if any(k in pattern for k in (ATTRIBUTION, HEADER_BLOCK, SIGNATURE, SIG_DASH, DELIMITER, RULE)):
        return True
    return any(kind == QUOTE and is_attribution(lines[i].strip().lstrip("> \t")) for i, kind in enumerate(pattern))


def _assemble(lines: list[str], pattern: str, last: int, removed: set[int]) -> Extraction:
    """Kept lines become the text; removed ones, a blank line between separate runs, the cut."""
    if not removed and not _NEEDS_SPACING.search(pattern, 0, last + 1):
        return Extraction(_join(lines[:last + 1]), _join_cut(lines[last + 1:], pattern[last + 1:]))
    kept: list[str] = []
    cut: list[str] = []
    cut_kinds: list[str] = []
    was_kept = False
    for i, line in enumerate(lines):
        if i <= last and i not in removed:
            if kept and pattern[i] == TEXT and _is_quote_with_text(kept[-1]):
                kept.append("")  # or Markdown would continue the quote lazily
            elif kept and pattern[i] in _RULES and kept[-1].strip():
                kept.append("")  # or Markdown would read "text\n---" as a heading
            kept.append(line)
            was_kept = True
        else:
            if was_kept and cut:
                cut.append("")
                cut_kinds.append(EMPTY)
            cut.append(line)
            cut_kinds.append(pattern[i])
            was_kept = False
    return Extraction(_join(kept), _join_cut(cut, "".join(cut_kinds)))


def _is_quote_with_text(line: str) -> bool:
    s = line.lstrip()
    return s.startswith(">") and bool(s.lstrip("> \t"))


def _join(lines: list[str]) -> str:
    """Join, dropping blank lines around; a first line's indentation (code) is kept."""
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    return "\n".join(lines[start:]).rstrip()


def _join_cut(lines: list[str], kinds: str) -> str:
    """Like ``_join``, with runs of blank lines squeezed to one: the cut is shown, folded, under the comment."""
    squeezed = [line for i, line in enumerate(lines) if kinds[i] != EMPTY or (i and kinds[i - 1] != EMPTY)]
    return _join(squeezed)
