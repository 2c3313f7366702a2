"""Reply extraction: from a plain-text mail body, keep only what the person wrote.

Its sole purpose in life is to split a reply body into the new text (which becomes
the PR comment) and what was cut (quoted history, attribution lines, embedded
headers, signatures), so a wrong cut never loses words: the caller shows ``cut``
collapsed under the comment.  It does not parse MIME, decode charsets or read HTML
(``inbound.html_reply`` turns HTML into text first, then calls this).

How (the design of Discourse's email_reply_trimmer, in our own words): each line is
classified once (empty, text, quote, attribution, header, signature, delimiter, ...),
wrapped attributions are joined, runs of embedded headers become blocks, and then a
few rules decide where the new text ends:

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

from inbound import reply_patterns as P

__all__ = ["Extraction", "extract_reply", "extract_reply_text", "is_attribution"]


@dataclass(frozen=True)
class Extraction:
    """The new text of a reply and everything removed from around it."""

    text: str
    cut: str


EMPTY, TEXT, QUOTE, WEAK_QUOTE = "e", "t", "q", "w"
ATTRIBUTION, HEADER, HEADER_BLOCK = "b", "h", "H"
SIGNATURE, DELIMITER, RULE, SIG_DASH = "s", "d", "r", "D"

_HISTORY_START = ATTRIBUTION + HEADER_BLOCK
_HISTORY_START_RE = re.compile(f"[{_HISTORY_START}]")
_HISTORY_RUN_RE = re.compile(f"[{ATTRIBUTION}{HEADER_BLOCK}{EMPTY}{SIGNATURE}{DELIMITER}{RULE}]*")
_QUOTE_RUN_RE = re.compile(f"[{QUOTE}{EMPTY}]*")
_RULES = DELIMITER + RULE
_NEEDS_SPACING = re.compile(f"[{QUOTE}{DELIMITER}{RULE}]")
_LINE_BREAKS = re.compile(r"\r*\n|\r|[\u2028\u2029\x85\x0b\x0c]")
_ODD_BREAK = re.compile(r"[\u2028\u2029\x85\x0b\x0c]")
_DIGIT = re.compile(r"[0-9]").search
_ATTRIBUTION_LAST = frozenset(":：>)-<*_")
_GATE_LAST = _ATTRIBUTION_LAST | {"("}
_MAX_JOINED_LINES = 6
_SIGNATURE_TAIL_LINES = 6
_SIGNATURE_DELIMITER_MIN = 5


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
    kinds, roles = _classify(seen, fences="```" in body or "~~~" in body)
    if roles:
        _mark_header_blocks(kinds, roles)
    pattern = "".join(kinds)
    last, removed = _decide(pattern, soft_delimiters=True)
    if last < 0 and TEXT in pattern:
        # A delimiter rule ate every line of text: better a signature too many than a lost reply.
        last, removed = _decide(pattern, soft_delimiters=False)
    if last < 0 and not _only_history(seen, pattern):
        return Extraction(_join(lines), "")  # only quotes, and no sign they are history: keep
    return _assemble(lines, pattern, last, removed)


def is_attribution(s: str) -> bool:
    """Is this (stripped, possibly joined) line an "On ... wrote:"-like line or a forward marker?"""
    if not s or len(s) > 400 or not _may_be_attribution(s):
        return False
    last = s[-1]
    if ("--" in s or "__" in s) and P.DASHED_MARKER.match(s):
        return True
    if last in ":：" and len(s) < P.LEAD_MARKER_MAX and P.LEAD_MARKER.match(s):
        return True
    core = s.rstrip(P.ATTRIBUTION_TRAIL)
    if core[-16:].lower().endswith(P.VERB_ENDINGS) and _ends_with_verb_phrase(core):
        if "@" in s or " via " in s:
            return True
        if _opener(s):
            return bool(_DIGIT(s))
        return bool(P.DATE_START.match(s) and P.DATE_EVIDENCE.search(s))
    if last in ":：":
        if " schrieb " in s or " schreef " in s or " skrev " in s:
            m = P.VERB_IN_MIDDLE.match(s)
            if m and _DIGIT(m.group("pre")):
                return True
        if "@" in s and (P.NAME_FIRST.match(s) or P.QUOTING.match(s)):
            return True
        if s.startswith("Wiadomość") and P.POLISH_APPLE.match(s):
            return True
    if "@" in s and last in ":：>)" and P.DATE_START.match(s):
        if (P.TIME.search(s) or P.NUMERIC_DATE.match(s)) and P.ENDS_WITH_ADDRESS.search(s[-160:]):
            return True
    return s[0].isdigit() and bool(P.ISO_GMT.match(s))


def _ends_with_verb_phrase(core: str) -> bool:
    """Does the line end with a whole "wrote"-like phrase ("a écrit", not "décrit")?"""
    if core.endswith(P.CJK_VERB_ENDINGS):
        return True
    tail = " ".join(core[-48:].lower().split())
    for phrase in P.VERB_PHRASES:
        if tail.endswith(phrase):
            before = len(tail) - len(phrase) - 1
            return before < 0 or not tail[before].isalnum()
    return False


def _may_be_attribution(s: str) -> bool:
    """A cheap gate: every attribution ends in punctuation or a verb, names an address or starts with a date."""
    return (
        s[-1] in _ATTRIBUTION_LAST
        or "@" in s
        or s[0].isdigit()
        or s[-16:].lower().rstrip(P.ATTRIBUTION_TRAIL).endswith(P.VERB_ENDINGS)
    )


def _may_be_wrapped(s: str) -> bool:
    """Could this line be the first of an attribution wrapped over several lines?"""
    if s[-1] in "<(":
        return True
    if _opener(s):
        return bool(_DIGIT(s))
    if "@" in s:
        return any(verb in s for verb in P.NAME_FIRST_VERBS) and bool(P.NAME_FIRST_START.search(s))
    return bool(P.DATE_START.match(s) and P.DATE_EVIDENCE.search(s))


def _opener(s: str) -> bool:
    if s[0] in "-*":
        s = s.lstrip("-* ")
    return s.partition(" ")[0] in P.OPENER_WORDS and bool(P.OPENER.match(s))


def _classify(lines: list[str], fences: bool = True) -> tuple[list[str], dict[int, str]]:
    """One letter per line (see the constants above); header lines also get their role."""
    stripped = [line.strip() for line in lines]
    kinds = [EMPTY if not s else QUOTE if s[0] == ">" else TEXT for s in stripped]
    roles: dict[int, str] = {}
    fenced = _fenced(lines, stripped, kinds) if fences else ()
    # Hot loop: the module attributes it needs, as locals.
    delimiter_chars, delimiter, weak_quote = P.DELIMITER_CHARS, P.DELIMITER, P.WEAK_QUOTE
    opener_words, signature_words = P.OPENER_WORDS, P.MOBILE_SIGNATURE_WORDS
    signature_prefixes, gate_last = P.MOBILE_SIGNATURE_PREFIXES, _GATE_LAST
    resume = 0
    for i in [i for i, kind in enumerate(kinds) if kind == TEXT]:
        if i < resume or i in fenced:
            continue
        line = lines[i]
        if line[0] == "\t" or line.startswith("    "):
            continue  # indented code stays text, whatever it looks like
        s = stripped[i]
        first = s[0]
        if first in delimiter_chars:
            if s == "--":
                kinds[i] = SIG_DASH
                continue
            if delimiter.match(s):
                # "---" is a Markdown rule someone typed; a long line of them separates a signature.
                kinds[i] = DELIMITER if len(s) >= _SIGNATURE_DELIMITER_MIN else RULE
                continue
        if ">" in s[:18] and weak_quote.match(s):
            kinds[i] = WEAK_QUOTE
            continue
        last = s[-1]
        word = s.partition(" ")[0]
        if (
            last in gate_last
            or first.isdigit()
            or "@" in s
            or first in "-*"
            or word in opener_words
            or (last.isalpha() and _ends_with_verb(s))
        ):
            end = _attribution_end(stripped, i, s)
            if end:
                kinds[i:end] = [ATTRIBUTION] * (end - i)
                resume = end
                continue
        if (
            word.lower() in signature_words
            or s.startswith(signature_prefixes)
            or "obile" in s
            or "から送信" in s
        ) and _is_mobile_signature(s):
            kinds[i] = SIGNATURE
        elif (":" in s[:31] or "：" in s[:31]) and (role := _header_role(s)):
            kinds[i] = HEADER
            roles[i] = role
    return kinds, roles


def _ends_with_verb(s: str) -> bool:
    if s[s.rfind(" ") + 1:].lower() in P.FINAL_VERB_SET:
        return True
    return not s[-1].isascii() and s.endswith(P.CJK_VERB_ENDINGS)


def _fenced(lines: list[str], stripped: list[str], kinds: list[str]) -> set[int]:
    """Lines inside ``` fences are code: text, whatever they look like.  Unclosed fences don't count."""
    fenced: set[int] = set()
    opening = -1
    fence = ""
    for i, s in enumerate(stripped):
        if opening < 0:
            if s[:3] in ("```", "~~~") and not lines[i].startswith("    "):
                opening, fence = i, s[:3]
        elif s.startswith(fence) and not s.strip(fence[0]):
            fenced.update(range(opening, i + 1))
            opening = -1
    for i in fenced:
        kinds[i] = TEXT
    return fenced


def _attribution_end(lines: list[str], i: int, s: str) -> int:
    """If an attribution starts at stripped line i, the index after its last (wrapped) line, else 0."""
    single = is_attribution(s)
    if single and not s.endswith(("<", "(")):
        return i + 1
    if not _may_be_wrapped(s):
        return i + 1 if single else 0
    joined = s
    for j in range(i + 1, min(len(lines), i + _MAX_JOINED_LINES)):
        nxt = lines[j]
        if not nxt:
            continue
        if _opener(nxt) or len(joined) > 400:
            break
        joined = f"{joined} {nxt}"
        if is_attribution(joined):
            return j + 1
    return i + 1 if single else 0


def _is_mobile_signature(s: str) -> bool:
    if len(s) > P.MOBILE_SIGNATURE_MAX:
        return False
    if "](" in s:
        s = P.MARKDOWN_LINK.sub(r"\1", s)
    return bool(P.MOBILE_SIGNATURE.match(s))


def _header_role(s: str) -> str:
    """"From: x" -> "from"; a date header needs a digit in its value.  Dict look-up, no regex."""
    colon = s.find(":")
    wide = s.find("：")
    if colon < 0 or 0 <= wide < colon:
        colon = wide
    if colon <= 0 or colon > 30:
        return ""
    role = P.HEADER_ROLE.get(s[:colon].strip(" \t*\xa0").casefold(), "")
    value = s[colon + 1:].strip(" \t*\xa0")
    if not value or (role == "date" and not _DIGIT(value)):
        return ""
    return role


def _mark_header_blocks(kinds: list[str], roles: dict[int, str]) -> None:
    """Three or more embedded headers (From/Sent/To/Subject...) in a row are a mail's head."""
    if HEADER not in kinds:
        return
    n = len(kinds)
    i = kinds.index(HEADER)
    while i < n:
        if kinds[i] != HEADER:
            i += 1
            continue
        seen = set()
        last = k = i
        wrapped = blank = 0
        while k < n:
            kind = kinds[k]
            if kind == HEADER:
                seen.add(roles[k])
                last, wrapped, blank = k, 0, 0
            elif kind == TEXT and wrapped < 2 and not blank:
                wrapped += 1
            elif kind == EMPTY and not blank:
                blank = 1
            else:
                break
            k += 1
        before = next((kinds[x] for x in range(i - 1, -1, -1) if kinds[x] != EMPTY), "")
        if "from" in seen and (len(seen) >= 3 or (len(seen) == 2 and before in (ATTRIBUTION, DELIMITER, RULE))):
            kinds[i:last + 1] = [HEADER_BLOCK] * (last + 1 - i)
            i = last + 1
        else:
            i += 1
    for i, kind in enumerate(kinds):
        if kind == HEADER:
            kinds[i] = TEXT


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
