"""Reply extraction, step one: say what kind of line each line of a plain-text reply is.

Sole purpose: turn the lines of a reply body into a *pattern*, one letter per line
(the constants below: empty, text, quote, weak quote, attribution, header block,
signature, delimiter, rule, sig dash).  An attribution wrapped over several lines is
joined and marks all of them; a run of embedded headers (From/Sent/To/Subject...)
becomes a header block; lines inside ``` fences and indented code stay text.
``is_attribution`` says whether one (possibly joined) line is an "On ... wrote:"-like
line or a forward marker.

Not for: deciding from the pattern where the new text ends and what is cut
(``inbound.reply``), or the per-language vocabulary (``inbound.reply_patterns``,
which this applies line by line).
"""
from __future__ import annotations

import re

from inbound import reply_patterns as P

__all__ = ["classify", "is_attribution"]

# One letter per kind of line.  HEADER is provisional: a header line outside a
# header block is TEXT in the finished pattern.
EMPTY, TEXT, QUOTE, WEAK_QUOTE = "e", "t", "q", "w"
ATTRIBUTION, HEADER, HEADER_BLOCK = "b", "h", "H"
SIGNATURE, DELIMITER, RULE, SIG_DASH = "s", "d", "r", "D"

_DIGIT = re.compile(r"[0-9]").search
_ATTRIBUTION_LAST = frozenset(":：>)-<*_")
_GATE_LAST = _ATTRIBUTION_LAST | {"("}
_MAX_JOINED_LINES = 6
_SIGNATURE_DELIMITER_MIN = 5


def classify(lines: list[str], fences: bool = True) -> str:
    """The pattern of ``lines``: one kind letter per line, header blocks marked."""
    kinds, roles = _classify(lines, fences)
    if roles:
        _mark_header_blocks(kinds, roles)
    return "".join(kinds)


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

