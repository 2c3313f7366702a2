"""What our own mail server recorded about a message: Authentication-Results (RFC 8601).

Sole purpose: read the ``Authentication-Results`` header that the trusted
receiving server (``trusted_authserv_id``) prepended, and answer two questions
from it: the DMARC result (``dmarc_result``) and whether a DKIM signature
aligned with the From domain passed (``dkim_pass_for_from_domain``).

Not for: checking signatures or DNS ourselves (the receiving MTA has done that),
deciding what to do with a failing message (the reply flow in ``gateway.flows``),
or classifying automated mail (``inbound.rules``).
"""

from __future__ import annotations

import re

from inbound.parse import ParsedMessage

__all__ = ["authentication_results", "dkim_pass_for_from_domain", "dmarc_result"]


def authentication_results(msg: ParsedMessage, trusted_authserv_id: str) -> list[tuple[str, str, dict[str, str]]] | None:
    """The results our own server recorded: ``[(method, result, properties)]``.

    Only the topmost ``Authentication-Results`` header whose authserv-id equals
    ``trusted_authserv_id`` (case-insensitively) counts.  Anyone can write
    such a header into a message; RFC 8601 §5 has the receiving MTA delete
    ones claiming its own id, and it prepends its own above whatever the
    sender wrote, so the topmost one is ours and lower ones are not trusted.
    None when there is no such header.
    """
    wanted = (trusted_authserv_id or "").strip().lower()
    if not wanted:
        return None
    for value in msg.header_all("Authentication-Results"):
        parsed = _parse_auth_results(value)
        if parsed is not None and parsed[0] == wanted:
            return parsed[1]
    return None


def dmarc_result(msg: ParsedMessage, trusted_authserv_id: str) -> str | None:
    """``pass`` / ``fail`` / ``none`` / ``temperror`` / ... from our server, or None."""
    for method, result, _props in authentication_results(msg, trusted_authserv_id) or []:
        if method == "dmarc":
            return result
    return None


def dkim_pass_for_from_domain(msg: ParsedMessage, trusted_authserv_id: str) -> bool:
    """Our server saw a passing DKIM signature aligned (relaxed) with the From domain.

    Relaxed alignment by suffix is safe here: only whoever controls ``d=``'s
    DNS can make a ``d=`` signature pass.
    """
    from_domain = (msg.from_address or "").rpartition("@")[2].lower()
    if not from_domain:
        return False
    for method, result, props in authentication_results(msg, trusted_authserv_id) or []:
        if method != "dkim" or result != "pass":
            continue
        d = props.get("header.d", "").lower().strip(".")
        if d and (from_domain == d or from_domain.endswith("." + d)):
            return True
    return False


_RESINFO = re.compile(r"([a-z0-9_-]+)(?:\s*/\s*[0-9]+)?\s*=\s*([a-z0-9_-]+)(.*)", re.I | re.S)
_PROP = re.compile(r"([a-z0-9_-]+\.[a-z0-9_.-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)", re.I)


def _parse_auth_results(value: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]] | None:
    """RFC 8601: ``authserv-id [version] *(";" resinfo)`` or ``authserv-id; none``."""
    pieces = _split_semicolons(_strip_comments(value))
    if not pieces:
        return None
    head = pieces[0].split()
    if not head:
        return None
    authserv_id = head[0].strip('"').lower()
    results = []
    for piece in pieces[1:]:
        match = _RESINFO.match(piece.strip())
        if not match:
            continue
        props = {k.lower(): v.strip('"') for k, v in _PROP.findall(match.group(3))}
        results.append((match.group(1).lower(), match.group(2).lower(), props))
    return authserv_id, results


def _strip_comments(value: str) -> str:
    """Drop RFC 5322 comments (nested, with quoted pairs); keep quoted strings."""
    out = []
    depth = 0
    quoted = False
    escaped = False
    for ch in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                out.append(ch)
            continue
        if quoted:
            out.append(ch)
            if ch == '"':
                quoted = False
            continue
        if ch == "(":
            depth += 1
            continue
        if ch == ")" and depth:
            depth -= 1
            if depth == 0:
                out.append(" ")
            continue
        if depth:
            continue
        if ch == '"':
            quoted = True
        out.append(ch)
    return "".join(out)


def _split_semicolons(value: str) -> list[str]:
    pieces, current, quoted = [], [], False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            pieces.append("".join(current))
            current = []
        else:
            current.append(ch)
    pieces.append("".join(current))
    return [p for p in (p.strip() for p in pieces) if p]
