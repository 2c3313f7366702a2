"""Reply extraction for HTML-only mail: remove what mail clients quote, then read what is left.

Its sole purpose in life is the HTML path of reply extraction.  Mail clients mark
their quoted history structurally (Gmail's ``div.gmail_quote``, Outlook's
``#divRplyFwdMsg``, Apple Mail's ``blockquote[type=cite]``, ...), which is more
reliable than any text rule, so those containers are removed first (their text goes
to ``cut``).  The rest is turned into Markdown-ish text (``inbound.html_text``) and
handed to the plain-text extractor (``inbound.reply``), which trims what the markup
did not mark.  A quote followed by more of the person's text is an inline reply: it
is kept and rendered as ``> `` lines.

It does not render HTML as text (``inbound.html_text``; ``html_to_text`` is
re-exported here), pick the HTML part out of a MIME message nor decode charsets: it
takes a ``str``.  It never raises on odd input; broken markup gives its best reading.
"""
from __future__ import annotations

import re

from inbound import reply_patterns as P
from inbound.html_text import drop, drop_invisible, fallback_text, html_to_text, parse_html, render
from inbound.reply import Extraction, extract_reply

__all__ = ["extract_reply_from_html", "html_to_text"]

_OUTLOOK_BORDER = ("border-top:solid#e1e1e1", "border-top:solid#b5c4df")
_FROM_HEADER = re.compile(
    r"^\W*(?:" + "|".join(re.escape(k) for k, role in P.HEADER_ROLE.items() if role == "from") + r")\s*[:：]",
    re.IGNORECASE | re.MULTILINE,
)
_YAHOO_QUOTED = re.compile(r"(?:ydp[0-9a-f]*)?yahoo_quoted")
_QUOTE_CLASSES = frozenset(("gmail_quote", "gmail_quote_container", "protonmail_quote"))
_SIGNATURE_CLASSES = frozenset(("gmail_signature", "moz-signature", "protonmail_signature_block"))


def extract_reply_from_html(html: str) -> Extraction:
    """The person's new text in an HTML reply; ``cut`` holds removed containers and the plain cut."""
    root = parse_html(html)
    if root is None:
        return extract_reply(fallback_text(html))
    try:
        drop_invisible(root)
        removed = _remove_history(root)
        plain = extract_reply(render(root))
    except RecursionError:
        return extract_reply(fallback_text(html))
    cut = "\n\n".join(part for part in (plain.cut, *removed) if part)
    return Extraction(plain.text, cut)


# --- structural removal -------------------------------------------------------------------

def _classes(el) -> list[str]:
    return el.get("class", "").split()


def _remove_history(root) -> list[str]:
    """Remove client quote containers and signatures; return their text, in document order."""
    removed: list[str] = []
    start = _history_start(root)
    if start is not None:
        removed.append(_cut_from(start, root))
    for el in [el for el in root.iter() if isinstance(el.tag, str) and set(_classes(el)) & _SIGNATURE_CLASSES]:
        if _attached(el, root):
            removed.append(render(el))
            drop(el)
    containers = [el for el in root.iter() if isinstance(el.tag, str) and _is_quote_container(el)]
    containers = [el for el in containers if not any(_is_quote_container(a) for a in el.iterancestors())]
    if not containers:
        return [text for text in removed if text]
    order = {el: k for k, el in enumerate(root.iter())}
    last_text = _last_own_text(root, order)
    if any((order[_last_descendant(el)], 1) < last_text or _has_text_inside(el) for el in containers):
        # An inline reply: every quote stays, as "> " lines; the plain pass cuts the trailing one.
        return [text for text in removed if text]
    # Free the proxies before dropping: lxml otherwise walks each detached subtree once per
    # live proxy, which made a 1 MB reply take seconds (bench/reply_extract_memory.py).
    del order
    for el in containers:
        prefix = _cite_prefix(el)
        if prefix is not None:
            removed.append(render(prefix))
            drop(prefix)
        removed.append(render(el))
        drop(el)
    return [text for text in removed if text]


def _last_descendant(el):
    while len(el):
        el = el[-1]
    return el


def _last_own_text(root, order) -> tuple[int, int]:
    """Document position of the last text outside quotes, signatures and attributions."""
    last = (-1, 0)
    stack = [root]
    while stack:
        el = stack.pop()
        if el.text and el.text.strip():
            last = max(last, (order[el], 0))
        for child in el:
            if not _skippable(child):
                stack.append(child)
            if child.tail and child.tail.strip():
                last = max(last, (order[_last_descendant(child)], 1))
    return last


def _history_start(root):
    """The first element after which everything is history (Outlook, Zimbra), or None."""
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        ident = el.get("id", "")
        if ident in ("divRplyFwdMsg", "appendonsend") or (el.tag == "hr" and ident == "zwchr"):
            return el
        if el.tag == "div":
            style = el.get("style", "").lower().replace(" ", "")
            if any(border in style for border in _OUTLOOK_BORDER) and _FROM_HEADER.search(el.text_content()[:400]):
                return el
    return None


def _cut_from(el, root) -> str:
    """Remove el and everything after it in document order; return the removed text."""
    doomed = []
    node = el
    while node is not None and node is not root and node.tag != "body":
        if node is el:
            previous = el.getprevious()
            if previous is not None and previous.tag == "hr":
                doomed.append(previous)  # Outlook web draws a rule above its header block
            doomed.append(el)
        doomed.extend(node.itersiblings())
        node = node.getparent()
    parts = [render(d) + "\n" + (d.tail or "") if d.tail else render(d) for d in doomed]
    for d in doomed:
        d.tail = None
        drop(d)
    return "\n\n".join(p.strip() for p in parts if p.strip())


def _attached(el, root) -> bool:
    while el is not None:
        if el is root:
            return True
        el = el.getparent()
    return False


def _is_quote_container(el) -> bool:
    if el.tag == "blockquote":
        return True
    classes = _classes(el)
    return any(c in _QUOTE_CLASSES or _YAHOO_QUOTED.fullmatch(c) for c in classes)


def _cite_prefix(el):
    """Thunderbird's "On ... wrote:" sits in div.moz-cite-prefix just before its blockquote."""
    previous = el.getprevious()
    if previous is not None and "moz-cite-prefix" in _classes(previous):
        return previous
    return None


def _skippable(el) -> bool:
    """Content that doesn't count as the person's text when looking for an inline reply."""
    if not isinstance(el.tag, str):
        return True
    classes = set(_classes(el))
    return (
        _is_quote_container(el)
        or bool(classes & _SIGNATURE_CLASSES)
        or bool(classes & {"gmail_attr", "moz-cite-prefix"})
    )


def _has_text(el) -> bool:
    if el.text and el.text.strip():
        return True
    for child in el:
        if not _skippable(child) and _has_text(child):
            return True
        if child.tail and child.tail.strip():
            return True
    return False


def _has_text_inside(el) -> bool:
    """Gmail puts an inline reply inside div.gmail_quote, after (between) its blockquotes."""
    if el.tag == "blockquote" or not {"gmail_quote", "gmail_quote_container"} & set(_classes(el)):
        return False
    first_quote = next(el.iter("blockquote"), None)
    return first_quote is not None and _has_text_after(first_quote, el)


def _has_text_after(el, root) -> bool:
    node = el
    while node is not None and node is not root:
        if node.tail and node.tail.strip():
            return True
        for sibling in node.itersiblings():
            if not _skippable(sibling) and _has_text(sibling):
                return True
            if sibling.tail and sibling.tail.strip():
                return True
        node = node.getparent()
    return False
