"""Reply extraction for HTML-only mail: remove what mail clients quote, then read what is left.

Its sole purpose in life is the HTML path of reply extraction.  Mail clients mark
their quoted history structurally (Gmail's ``div.gmail_quote``, Outlook's
``#divRplyFwdMsg``, Apple Mail's ``blockquote[type=cite]``, ...), which is more
reliable than any text rule, so those containers are removed first (their text goes
to ``cut``).  The rest is turned into Markdown-ish text (``html_to_text``) and handed
to the plain-text extractor (``inbound.reply``), which trims what the markup did not
mark.  A quote followed by more of the person's text is an inline reply: it is kept
and rendered as ``> `` lines.

It does not pick the HTML part out of a MIME message nor decode charsets: it takes a
``str``.  It never raises on odd input; broken markup gives its best reading.
"""
from __future__ import annotations

import html as _html
import re

import lxml.html
from lxml import etree

from inbound import reply_patterns as P
from inbound.reply import Extraction, extract_reply

__all__ = ["extract_reply_from_html", "html_to_text"]

_PARSER = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)
_DROPPED = frozenset(("script", "style", "head", "title", "meta", "link", "template", "noscript", "object", "iframe"))
_BLOCKS = frozenset((
    "address", "article", "aside", "body", "center", "dd", "details", "dialog", "dir", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "header", "html", "main", "menu", "nav", "section",
    "summary", "table", "tbody", "thead", "tfoot", "tr", "caption",
))
_PARAGRAPHS = frozenset(("p", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "pre", "blockquote"))
_WHITESPACE = re.compile(r"[ \t\n\r\f\v]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_TAG = re.compile(r"<[^>]*>")
_HIDDEN = re.compile(r"display\s*:\s*none", re.IGNORECASE)
_PRE_WRAP = re.compile(r"white-space\s*:\s*pre", re.IGNORECASE)
_OUTLOOK_BORDER = ("border-top:solid#e1e1e1", "border-top:solid#b5c4df")
_FROM_HEADER = re.compile(
    r"^\W*(?:" + "|".join(re.escape(k) for k, role in P.HEADER_ROLE.items() if role == "from") + r")\s*[:：]",
    re.IGNORECASE | re.MULTILINE,
)
_YAHOO_QUOTED = re.compile(r"(?:ydp[0-9a-f]*)?yahoo_quoted")
_QUOTE_CLASSES = frozenset(("gmail_quote", "gmail_quote_container", "protonmail_quote"))
_SIGNATURE_CLASSES = frozenset(("gmail_signature", "moz-signature", "protonmail_signature_block"))


def html_to_text(html: str) -> str:
    """Markdown-ish text of an HTML body: paragraphs, lists, links, code, ``> `` quotes."""
    root = _parse(html)
    if root is None:
        return _fallback_text(html)
    try:
        _drop_invisible(root)
        return _render(root)
    except RecursionError:
        return _fallback_text(html)


def extract_reply_from_html(html: str) -> Extraction:
    """The person's new text in an HTML reply; ``cut`` holds removed containers and the plain cut."""
    root = _parse(html)
    if root is None:
        return extract_reply(_fallback_text(html))
    try:
        _drop_invisible(root)
        removed = _remove_history(root)
        plain = extract_reply(_render(root))
    except RecursionError:
        return extract_reply(_fallback_text(html))
    cut = "\n\n".join(part for part in (plain.cut, *removed) if part)
    return Extraction(plain.text, cut)


# --- parsing ------------------------------------------------------------------------------

def _parse(html: str):
    """A tree, or None when there is nothing to parse; never raises."""
    if not html or not html.strip():
        return None
    try:
        # Bytes with an explicit encoding: an XML declaration or a <meta charset> can't confuse the parser.
        root = lxml.html.document_fromstring(html.encode("utf-8", "replace"), parser=_PARSER)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError, TypeError):
        return None
    if not root.text_content().strip() and _fallback_text(html):
        return None  # libxml2 gives up on very deep nesting and keeps nothing: read it as text
    return root


def _fallback_text(html: str) -> str:
    """Tag-stripped text, for input lxml makes nothing of."""
    if not html:
        return ""
    return _CONTROL.sub("", _html.unescape(_TAG.sub(" ", html))).strip()


def _drop_invisible(root) -> None:
    for el in list(root.iter()):
        if not isinstance(el.tag, str):
            continue
        if el.tag in _DROPPED or _HIDDEN.search(el.get("style", "")):
            _drop(el)


def _drop(el) -> None:
    """Remove an element but keep the text that follows it (lxml stores that on the element)."""
    if el.getparent() is not None:
        el.drop_tree()


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
            removed.append(_render(el))
            _drop(el)
    containers = [el for el in root.iter() if isinstance(el.tag, str) and _is_quote_container(el)]
    containers = [el for el in containers if not any(_is_quote_container(a) for a in el.iterancestors())]
    if not containers:
        return [text for text in removed if text]
    order = {el: k for k, el in enumerate(root.iter())}
    last_text = _last_own_text(root, order)
    if any((order[_last_descendant(el)], 1) < last_text or _has_text_inside(el) for el in containers):
        # An inline reply: every quote stays, as "> " lines; the plain pass cuts the trailing one.
        return [text for text in removed if text]
    for el in containers:
        prefix = _cite_prefix(el)
        if prefix is not None:
            removed.append(_render(prefix))
            _drop(prefix)
        removed.append(_render(el))
        _drop(el)
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
    parts = [_render(d) + "\n" + (d.tail or "") if d.tail else _render(d) for d in doomed]
    for d in doomed:
        d.tail = None
        _drop(d)
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


# --- rendering ----------------------------------------------------------------------------

class _Writer:
    """Collects text; block boundaries ask for at least n newlines, <br> always adds one."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.newlines = 0  # trailing newlines already written
        self.space = True  # the last thing written was whitespace (or nothing)
        self.keep_newlines = 0  # inside white-space: pre-wrap / pre-line

    def text(self, s: str) -> None:
        if self.keep_newlines and "\n" in s:
            lines = s.replace("\r\n", "\n").split("\n")
            for k, line in enumerate(lines):
                if k:
                    self.line_break()
                self.text(line)
            return
        s = _WHITESPACE.sub(" ", s)
        if self.space or self.newlines:
            s = s.lstrip(" ")
        if s:
            self.parts.append(s)
            self.newlines = 0
            self.space = s.endswith(" ")

    def verbatim(self, s: str) -> None:
        """Inline text whose spaces matter (code)."""
        self.parts.append(s)
        self.newlines = 0
        self.space = False

    def raw(self, s: str) -> None:
        if s:
            self.parts.append(s)
            self.newlines = len(s) - len(s.rstrip("\n"))
            self.space = s[-1].isspace()

    def line_break(self) -> None:
        self.parts.append("\n")
        self.newlines += 1
        self.space = True

    def block(self, n: int) -> None:
        if self.parts and self.newlines < n:
            self.parts.append("\n" * (n - self.newlines))
            self.newlines = n
            self.space = True

    def value(self) -> str:
        """The text, trailing spaces and runs of blank lines trimmed outside code fences."""
        lines: list[str] = []
        fenced = False
        for line in "".join(self.parts).replace("\xa0", " ").split("\n"):
            if line.lstrip("> -").startswith("```"):
                fenced = not fenced
            elif not fenced:
                line = line.rstrip()
                if not line and (not lines or not lines[-1]):
                    continue
            lines.append(line)
        return "\n".join(lines).strip("\n")


def _render(el) -> str:
    out = _Writer()
    _render_children(el, out)
    return _CONTROL.sub("", out.value())


def _render_children(el, out: _Writer) -> None:
    if el.text:
        out.text(el.text)
    for child in el:
        _render_node(child, out)
        if child.tail:
            out.text(child.tail)


def _render_node(el, out: _Writer) -> None:
    tag = el.tag if isinstance(el.tag, str) else ""
    if not tag or tag in _DROPPED:
        return
    if tag == "br":
        out.line_break()
    elif tag == "a":
        _render_link(el, out)
    elif tag == "img":
        if el.get("alt", "").strip():
            out.text(el.get("alt"))
    elif tag == "pre":
        _render_pre(el, out)
    elif tag == "code":
        code = el.text_content().replace("\n", " ")
        tick = "``" if "`" in code else "`"
        if code.strip():
            out.verbatim(f"{tick}{code}{tick}")
    elif tag == "blockquote":
        _render_prefixed(el, out, first="> ", rest="> ", empty=">")
    elif tag in ("ul", "ol"):
        _render_list(el, out)
    elif tag == "li":
        _render_prefixed(el, out, first="- ", rest="  ", empty="", paragraph=1)
    elif tag == "hr":
        out.block(2)
        out.raw("---")
        out.block(2)
    elif tag in ("td", "th"):
        if not out.space and not out.newlines:
            out.text(" ")
        _render_children(el, out)
        out.text(" ")
    elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
        out.block(2)
        text = _inline(el)
        if text:
            out.raw("#" * int(tag[1]) + " " + text)
        out.block(2)
    elif tag in _PARAGRAPHS or tag in _BLOCKS:
        n = 2 if tag in _PARAGRAPHS else 1
        keep = bool(_PRE_WRAP.search(el.get("style", "")))
        out.block(n)
        out.keep_newlines += keep
        _render_children(el, out)
        out.keep_newlines -= keep
        out.block(n)
    else:
        _render_children(el, out)


def _inline(el) -> str:
    return _WHITESPACE.sub(" ", _render(el).replace("\n", " ")).strip()


def _render_link(el, out: _Writer) -> None:
    text = _inline(el)
    href = (el.get("href") or "").strip()
    if not href or href.startswith(("#", "javascript:", "cid:")):
        out.text(text)
        return
    bare = href[7:] if href.lower().startswith("mailto:") else href
    if not text or text in (href, bare) or text.rstrip("/") == href.rstrip("/"):
        out.text(text or bare)
    else:
        out.text(f"[{text}]({href})")


def _render_pre(el, out: _Writer) -> None:
    parts = [el.text or ""]
    for child in el:
        if isinstance(child.tag, str):
            parts.append("\n" if child.tag == "br" else child.text_content())
        parts.append(child.tail or "")
    code = "".join(parts).strip("\n")
    fence = "````" if "```" in code else "```"
    out.block(2)
    out.raw(f"{fence}\n{code}\n{fence}")
    out.block(2)


def _render_list(el, out: _Writer) -> None:
    nested = el.getparent() is not None and el.getparent().tag == "li"
    out.block(1 if nested else 2)
    number = int(el.get("start", "1")) if el.get("start", "1").isdigit() else 1
    for child in el:
        if isinstance(child.tag, str) and child.tag == "li":
            marker = f"{number}. " if el.tag == "ol" else "- "
            _render_prefixed(child, out, first=marker, rest=" " * len(marker), empty="", paragraph=1)
            number += 1
        elif isinstance(child.tag, str):
            _render_node(child, out)
        if child.tail and child.tail.strip():
            out.text(child.tail)
    out.block(1 if nested else 2)


def _render_prefixed(el, out: _Writer, first: str, rest: str, empty: str, paragraph: int = 2) -> None:
    """Render el on its own, then prefix its lines ("> " for quotes, "- " for list items)."""
    inner = _Writer()
    inner.keep_newlines = out.keep_newlines
    _render_children(el, inner)
    text = inner.value()
    if not text.strip():
        return
    lines = text.split("\n")
    prefixed = [first + lines[0]] + [(rest + line) if line.strip() else empty for line in lines[1:]]
    out.block(paragraph)
    out.raw("\n".join(line.rstrip() if line.strip() else empty for line in prefixed))
    out.block(paragraph)
