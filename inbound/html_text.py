"""HTML mail bodies as Markdown-ish text: what a person reading the mail would see.

Its sole purpose in life is rendering.  ``html_to_text`` turns an HTML body into text
with paragraphs, lists, links, code fences and ``> `` quotes; invisible content
(scripts, styles, ``display: none``) is dropped.  The tree helpers (``parse_html``,
``fallback_text``, ``drop_invisible``, ``drop``, ``render``) are shared with
``inbound.html_reply``, which removes quoted history from the same tree first.

It does not decide what is a reply or a quote to remove (``inbound.html_reply``),
pick the HTML part out of a MIME message or decode charsets: it takes a ``str``.  It
never raises on odd input; broken markup gives its best reading.
"""
from __future__ import annotations

import html as _html
import re

import lxml.html
from lxml import etree

__all__ = ["drop", "drop_invisible", "fallback_text", "html_to_text", "parse_html", "render"]

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


def html_to_text(html: str) -> str:
    """Markdown-ish text of an HTML body: paragraphs, lists, links, code, ``> `` quotes."""
    root = parse_html(html)
    if root is None:
        return fallback_text(html)
    try:
        drop_invisible(root)
        return render(root)
    except RecursionError:
        return fallback_text(html)


# --- parsing ------------------------------------------------------------------------------

def parse_html(html: str):
    """A tree, or None when there is nothing to parse; never raises."""
    if not html or not html.strip():
        return None
    try:
        # Bytes with an explicit encoding: an XML declaration or a <meta charset> can't confuse the parser.
        root = lxml.html.document_fromstring(html.encode("utf-8", "replace"), parser=_PARSER)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError, TypeError):
        return None
    if not root.text_content().strip() and fallback_text(html):
        return None  # libxml2 gives up on very deep nesting and keeps nothing: read it as text
    return root


def fallback_text(html: str) -> str:
    """Tag-stripped text, for input lxml makes nothing of."""
    if not html:
        return ""
    return _CONTROL.sub("", _html.unescape(_TAG.sub(" ", html))).strip()


def drop_invisible(root) -> None:
    """Remove what a reader never sees: scripts, styles, ``display: none``."""
    for el in list(root.iter()):
        if not isinstance(el.tag, str):
            continue
        if el.tag in _DROPPED or _HIDDEN.search(el.get("style", "")):
            drop(el)


def drop(el) -> None:
    """Remove an element but keep the text that follows it (lxml stores that on the element)."""
    if el.getparent() is not None:
        el.drop_tree()


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


def render(el) -> str:
    """The Markdown-ish text of one element and everything inside it."""
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
    return _WHITESPACE.sub(" ", render(el).replace("\n", " ")).strip()


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
