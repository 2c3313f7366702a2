"""Bytes and encoded header text of a mail, decoded to ``str`` the way mail clients mean them.

Sole purpose: charsets.  ``decode_text`` decodes body or header bytes by their
charset label, trying first the superset that mail clients really mean
(windows-1252 for iso-8859-1, GB18030 for gb2312/gbk, cp932 for shift_jis, ...:
the WHATWG Encoding Standard's mapping).  ``decode_header_value`` unfolds one raw
header value and decodes its RFC 2047 encoded words and raw 8-bit bytes.
Nothing here raises: undecodable bytes become U+FFFD.

Not for: reading the MIME structure, choosing body parts or parsing addresses
(``inbound.parse``, which calls this for every part and header).
"""

from __future__ import annotations

import codecs
import email.header
import re

__all__ = ["decode_header_value", "decode_text", "raw_text", "unfold"]

# What a charset label means in practice (the WHATWG Encoding Standard's
# mapping, which is what mail clients implement): the superset is tried first,
# then the label itself.
_SUPERSETS = {
    "ascii": "utf-8",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
    "iso2022_jp": "iso2022_jp_ext",
}
# Labels Python does not know, with the codec they name.
_ALIASES = {
    "x-gbk": "gbk",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
    "unknown-8bit": "utf-8",
    "x-unknown": "utf-8",
    "ks_c_5601": "cp949",
}

_FOLD = re.compile(r"\r?\n(?=[ \t])")


def decode_text(data: bytes, charset: str | None) -> str:
    """Decode body or header bytes labelled ``charset``; never raises."""
    for codec in _codecs_for(charset):
        try:
            return data.decode(codec)
        except (LookupError, UnicodeError, TypeError, ValueError):
            continue
    label = _codec_name(charset) or "utf-8"
    try:
        return data.decode(label, "replace")
    except (LookupError, UnicodeError, TypeError, ValueError):
        return data.decode("utf-8", "replace")


def decode_header_value(value: object) -> str:
    """Decode one raw header value (RFC 2047 words, raw 8-bit) and unfold it."""
    text = unfold(str(value))
    if "=?" not in text:  # no encoded word: decode_header would hand the text back as it is
        return raw_text(text).strip()
    try:
        chunks = email.header.decode_header(text)
    except Exception:
        return raw_text(text).strip()
    out = []
    for data, charset in chunks:
        if isinstance(data, str):
            out.append(raw_text(data))
        elif charset is None:
            # decode_header hands unencoded stretches back as
            # raw-unicode-escape bytes; undo that to see any raw 8-bit bytes.
            out.append(raw_text(data.decode("raw-unicode-escape", "replace")))
        else:
            out.append(decode_text(data, charset))
    return "".join(out).strip()


def unfold(value: str) -> str:
    """A header value on one line: RFC 5322 folding (a line break before a space or tab) removed."""
    return _FOLD.sub("", value)


def raw_text(text: str) -> str:
    """Text that may carry raw 8-bit bytes as surrogate escapes, decoded."""
    if text.isascii() or not _ESCAPED_BYTE.search(text):
        return text
    data = text.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return decode_text(data, "windows-1252")


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _codec_name(charset: str | None) -> str | None:
    if not charset:
        return None
    label = str(charset).strip().strip('"').lower()
    label = _ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except LookupError:
        return None
    # bytes.decode refuses non-text codecs (base64, rot13) anyway; skip them early.
    return info.name if getattr(info, "_is_text_encoding", True) else None


def _codecs_for(charset: str | None) -> list[str]:
    """Codecs to try strictly, best first."""
    name = _codec_name(charset)
    if name is None:
        # No label or an unknown one: what senders mostly mean today.
        return ["utf-8", "cp1252"]
    chain = [_SUPERSETS.get(name, name), name]
    if name == "ascii":
        chain.append("cp1252")
    elif name == "iso2022_jp":
        chain.append("iso2022_jp_2")
    elif name in ("iso8859-1", "cp1252"):
        chain.append("latin-1")  # five bytes are undefined in cp1252
    else:
        chain.append("utf-8")
    return list(dict.fromkeys(chain))
