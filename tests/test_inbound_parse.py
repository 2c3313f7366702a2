"""inbound.parse: real messages in, decoded fields out."""

import base64
import quopri
import random
from dataclasses import replace
from email.message import EmailMessage

import mailparser
import pytest

from inbound.parse import EMPTY, Attachment, parse_message


def raw_text_message(body: bytes, charset: str, cte: str, subtype: str = "plain", headers: bytes = b"") -> bytes:
    if cte == "quoted-printable":
        body = quopri.encodestring(body)
    elif cte == "base64":
        body = base64.encodebytes(body)
    return (
        b"From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        + headers
        + f'Content-Type: text/{subtype}; charset="{charset}"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'.encode()
        + body
    )


def rich_message() -> EmailMessage:
    """alternative(plain, related(html, inline image)) + binary + named text + forwarded message."""
    m = EmailMessage()
    m["From"] = "Jürgen Müller <Juergen@Example.COM>"
    m["To"] = "reply+abc@gw.example"
    m["Subject"] = "Re: [octo/repo] PR ready"
    m["Message-ID"] = "<abc.1@mail.example>"
    m["In-Reply-To"] = "<r3@gw.example>"
    m["References"] = "<r1@gw.example> <r2@gw.example> <r3@gw.example>"
    m.set_content("plain body\n")
    m.add_alternative("<p>html body</p>\n", subtype="html")
    m.get_payload()[1].add_related(b"\x89PNG" + b"\0" * 100, maintype="image", subtype="png", cid="<img1@x>")
    m.add_attachment(b"\x00\x01" * 50, maintype="application", subtype="octet-stream", filename="data.bin")
    m.add_attachment("note text\n", subtype="plain", filename="note.txt")
    inner = EmailMessage()
    inner["Subject"] = "forwarded"
    inner.set_content("forwarded inner text\n")
    m.add_attachment(inner)
    return m


# -- structure -------------------------------------------------------------------


def test_plain_message():
    raw = (
        b"From: \"Ada Lovelace\" <Ada@Example.org>\r\nTo: reply+t@gw.example\r\nSubject: Hello\r\n"
        b"Message-ID: <m1@example.org>\r\n\r\nLine one\r\nLine two\r\n"
    )
    msg = parse_message(raw)
    assert msg.from_address == "ada@example.org"
    assert msg.from_name == "Ada Lovelace"
    assert msg.subject == "Hello"
    assert msg.message_id == "m1@example.org"
    assert msg.text == "Line one\nLine two\n"
    assert msg.html is None
    assert msg.attachments == ()
    assert msg.content_type == "text/plain"
    assert msg.report_type is None


def test_html_only():
    msg = parse_message(raw_text_message(b"<p>only html</p>", "utf-8", "7bit", subtype="html"))
    assert msg.text is None
    assert msg.html == "<p>only html</p>"


def test_alternative_gives_each_part_alone():
    m = EmailMessage()
    m["From"] = "a@example.com"
    m.set_content("the plain text\n")
    m.add_alternative("<p>the html</p>\n", subtype="html")
    msg = parse_message(m.as_bytes())
    assert msg.text == "the plain text\n"
    assert msg.html == "<p>the html</p>\n"
    assert msg.content_type == "multipart/alternative"


def test_rich_message_bodies_attachments_and_ids():
    msg = parse_message(rich_message().as_bytes())
    assert msg.text == "plain body\n"  # not the forwarded message's text, not note.txt
    assert msg.html == "<p>html body</p>\n"
    assert msg.attachments == (
        Attachment("", "image/png", 104, "img1@x"),
        Attachment("data.bin", "application/octet-stream", 100),
        Attachment("note.txt", "text/plain", 10),
        Attachment("", "message/rfc822", msg.attachments[3].size),
    )
    assert msg.attachments[3].size > 0
    assert msg.message_id == "abc.1@mail.example"
    assert msg.in_reply_to == ("r3@gw.example",)
    assert msg.references == ("r1@gw.example", "r2@gw.example", "r3@gw.example")


def test_attachments_cover_what_mailparser_lists():
    raw = rich_message().as_bytes()
    ours = sorted(a.content_type for a in parse_message(raw).attachments)
    theirs = sorted(a["mail_content_type"] for a in mailparser.parse_from_bytes(raw).attachments)
    assert ours == theirs


def test_parsing_is_deterministic():
    # mail-parser names unnamed attachments at random; we must not.
    raw = rich_message().as_bytes()
    assert parse_message(raw) == parse_message(raw)


def test_mailparser_mixes_forwarded_text_into_text_plain():
    # Why we pick the body ourselves (fails if mail-parser ever changes; then revisit).
    assert mailparser.parse_from_bytes(rich_message().as_bytes()).text_plain == [
        "plain body\n",
        "forwarded inner text\n",
    ]


def test_body_split_around_inline_image_is_joined():
    raw = (
        b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nbefore image\r\n"
        b"--b\r\nContent-Type: image/jpeg\r\nContent-Disposition: inline; filename=p.jpg\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n/9j/4A==\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nafter image\r\n--b--\r\n"
    )
    msg = parse_message(raw)
    assert msg.text == "before image\nafter image"
    assert msg.attachments == (Attachment("p.jpg", "image/jpeg", 4),)


def test_text_attachment_is_not_the_body():
    m = EmailMessage()
    m["From"] = "a@example.com"
    m.set_content("body\n")
    m.add_attachment("log output\n", subtype="plain", filename="log.txt")
    msg = parse_message(m.as_bytes())
    assert msg.text == "body\n"
    assert [a.filename for a in msg.attachments] == ["log.txt"]


def test_multipart_report():
    raw = (
        b"From: MAILER-DAEMON@mx.example\r\nSubject: Undelivered\r\n"
        b"Content-Type: multipart/report; report-type=Delivery-Status; boundary=r\r\n\r\n"
        b"--r\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n"
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
        b"Final-Recipient: rfc822; x@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"--r--\r\n"
    )
    msg = parse_message(raw)
    assert msg.content_type == "multipart/report"
    assert msg.report_type == "delivery-status"
    assert msg.text == "Could not deliver."  # the CRLF before a boundary belongs to it
    assert [a.content_type for a in msg.attachments] == ["message/delivery-status"]


# -- transfer encodings and charsets -------------------------------------------------

TEXTS = {
    "iso-8859-1": "Grüße aus Köln, café",
    "windows-1252": "“smart” quotes – 5 €",
    "koi8-r": "Привет, мир",
    "iso-2022-jp": "こんにちは世界",
    "gb2312": "你好，世界",
    "gbk": "你好世界，朱镕基",
    "shift_jis": "こんにちは、ｶﾀｶﾅ",
    "utf-8": "héllo ☃ 👋",
}


@pytest.mark.parametrize("charset", sorted(TEXTS))
@pytest.mark.parametrize("cte", ["7bit", "8bit", "quoted-printable", "base64"])
def test_body_charsets(charset, cte):
    text = TEXTS[charset]
    assert parse_message(raw_text_message(text.encode(charset), charset, cte)).text == text


def test_mailparser_leaves_7bit_iso_2022_jp_undecoded():
    # iso-2022-jp is a 7-bit charset and normally sent as 7bit; mail-parser
    # returns the escape sequences.  Why we decode bodies ourselves.
    raw = raw_text_message("こんにちは".encode("iso-2022-jp"), "iso-2022-jp", "7bit")
    assert mailparser.parse_from_bytes(raw).text_plain != ["こんにちは"]
    assert parse_message(raw).text == "こんにちは"


@pytest.mark.parametrize(
    ("label", "data", "expected"),
    [
        ("gb2312", "朱镕基".encode("gbk"), "朱镕基"),  # GBK text labelled gb2312
        ("iso-8859-1", "“quoted”".encode("cp1252"), "“quoted”"),  # cp1252 labelled latin-1
        ("shift_jis", "①".encode("cp932"), "①"),  # cp932 extension labelled shift_jis
        ("x-no-such-charset", "naïve".encode("utf-8"), "naïve"),
        ("us-ascii", "naïve".encode("utf-8"), "naïve"),  # 8-bit UTF-8 labelled ascii
        ("utf-8", b"caf\xe9", "caf\ufffd"),  # broken UTF-8: replaced, not raised
        ("base64", b"plain", "plain"),  # a Python codec that is not a text encoding
    ],
)
def test_mislabelled_charsets(label, data, expected):
    assert parse_message(raw_text_message(data, label, "8bit")).text == expected


def test_missing_charset_with_8bit_utf8():
    raw = b"From: a@example.com\r\nContent-Type: text/plain\r\n\r\n" + "Grüße".encode()
    assert parse_message(raw).text == "Grüße"


def test_line_endings_are_newlines():
    assert parse_message(b"Subject: x\r\n\r\na\r\nb\rc\n").text == "a\nb\nc\n"


# -- headers -----------------------------------------------------------------------


def b64word(text: str, charset: str) -> bytes:
    return b"=?" + charset.encode() + b"?b?" + base64.b64encode(text.encode(charset)) + b"?="


@pytest.mark.parametrize(
    ("from_header", "subject_header", "name", "address", "subject"),
    [
        (
            b"=?iso-8859-1?q?J=FCrgen_M=FCller?= <JM@Example.com>",
            b"=?windows-1252?q?=93Quoted=94_=80?=",
            "Jürgen Müller",
            "jm@example.com",
            "“Quoted” €",
        ),
        (
            b64word("Иван Петров", "koi8-r") + b" <ivan@x.ru>",
            b64word("Тема письма", "koi8-r"),
            "Иван Петров",
            "ivan@x.ru",
            "Тема письма",
        ),
        (b64word("山田太郎", "iso-2022-jp") + b" <taro@x.jp>", b64word("件名", "iso-2022-jp"), "山田太郎", "taro@x.jp", "件名"),
        (
            b"=?gb2312?b?" + base64.b64encode("朱镕基".encode("gbk")) + b"?= <z@x.cn>",
            b64word("你好", "gb2312"),
            "朱镕基",
            "z@x.cn",
            "你好",
        ),
        (b64word("山田", "shift_jis") + b" <y@x.jp>", b64word("こんにちは", "shift_jis"), "山田", "y@x.jp", "こんにちは"),
        ("Zoë Ünal <zoe@x.de>".encode(), "Réponse : ça va".encode(), "Zoë Ünal", "zoe@x.de", "Réponse : ça va"),
        ("Zoë <zoe@x.de>".encode("latin-1"), "Grüße".encode("latin-1"), "Zoë", "zoe@x.de", "Grüße"),
        # An encoded word that splits a UTF-8 sequence, and folded words.
        (b"=?utf-8?q?J=C3?= =?utf-8?q?=BCrgen?= <j@x.de>", b"=?utf-8?b?w6Q=?=\r\n =?utf-8?b?w7Y=?=", "Jürgen", "j@x.de", "äö"),
        (b'"Doe, John" <John.Doe@X.com>', b"plain", "Doe, John", "john.doe@x.com", "plain"),
        (b"bare@x.com", b"", None, "bare@x.com", ""),
    ],
)
def test_header_decoding(from_header, subject_header, name, address, subject):
    raw = b"From: " + from_header + b"\r\nSubject: " + subject_header + b"\r\n\r\nbody\r\n"
    msg = parse_message(raw)
    assert (msg.from_name, msg.from_address, msg.subject) == (name, address, subject)


def test_encoded_display_name_cannot_change_the_address():
    raw = b"From: =?utf-8?q?evil=40attacker.example_=3C?= <victim@example.com>\r\n\r\nx"
    msg = parse_message(raw)
    assert msg.from_address == "victim@example.com"
    assert msg.from_name == "evil@attacker.example <"


def test_headers_in_order_and_lookup():
    raw = (
        b"Received: from a\r\nReceived: from b\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
        b"X-Long: one\r\n two\r\n\r\nbody"
    )
    msg = parse_message(raw)
    assert msg.headers == (
        ("Received", "from a"),
        ("Received", "from b"),
        ("Subject", "café"),
        ("X-Long", "one two"),
    )
    assert msg.header("received") == "from a"
    assert msg.header_all("RECEIVED") == ["from a", "from b"]
    assert msg.header("missing") is None
    assert msg.header_all("missing") == []


@pytest.mark.parametrize(
    ("headers", "message_id", "in_reply_to", "references"),
    [
        (b"Message-ID: <a@b>\r\n", "a@b", (), ()),
        (b"Message-ID: bare@host\r\n", "bare@host", (), ()),
        (
            b"In-Reply-To: <p@x> (sent by Bob)\r\nReferences: <r1@x>\r\n  <r2@x>\r\n\t<r3@x> <r2@x>\r\n",
            None,
            ("p@x",),
            ("r1@x", "r2@x", "r3@x"),
        ),
        (b"In-Reply-To: <p1@x> <p2@x>\r\n", None, ("p1@x", "p2@x"), ()),
        (b"References: <thread.7.sig@gw.example>\r\nReferences: <later@x>\r\n", None, (), ("thread.7.sig@gw.example", "later@x")),
    ],
)
def test_message_ids(headers, message_id, in_reply_to, references):
    msg = parse_message(headers + b"\r\nbody")
    assert (msg.message_id, msg.in_reply_to, msg.references) == (message_id, in_reply_to, references)


# -- garbage -------------------------------------------------------------------------


def test_empty_input():
    # A message with no headers and an empty text/plain body (the default type).
    assert parse_message(b"") == replace(EMPTY, text="")


def test_random_bytes_do_not_raise():
    rng = random.Random(1234)
    for _ in range(50):
        msg = parse_message(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))))
        assert isinstance(msg.subject, str)


def test_not_bytes_gives_empty_fields():
    assert parse_message(None) == EMPTY  # type: ignore[arg-type]


def test_deeply_nested_multipart_is_read_for_headers_only():
    raw = b"Subject: deep\r\nContent-Type: multipart/mixed; boundary=a0\r\n\r\n" + b"".join(
        b"--a%d\r\nContent-Type: multipart/mixed; boundary=a%d\r\n\r\n" % (i, i + 1) for i in range(3000)
    )
    msg = parse_message(raw)
    assert msg.subject == "deep"
    assert msg.text is None


def test_falls_back_to_stdlib_when_mailparser_raises():
    raw = (
        b"Subject: t\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n"
        b"--a\r\nContent-Type: text/plain\r\n\r\nthe body\r\n"
        b"--a\r\nContent-Type: multipart/mixed; boundary=zzz\r\n\r\nno inner boundary\r\n"
    )
    with pytest.raises(Exception):
        mailparser.parse_from_bytes(raw)
    msg = parse_message(raw)
    assert msg.subject == "t"
    assert msg.text == "the body\nno inner boundary\n"  # see the next test


def test_multipart_without_boundary_is_read_as_text():
    raw = b"Subject: t\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\nno boundary at all\r\n"
    msg = parse_message(raw)
    assert msg.text == "no boundary at all\n"
    assert msg.attachments == ()


def test_nested_body_within_limits_is_found():
    depth = 30
    raw = b"Subject: nested\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    for i in range(depth):
        raw += b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
    raw += b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep text\r\n--b%d--\r\n" % (depth, depth)
    for i in reversed(range(depth)):
        raw += b"--b%d--\r\n" % i
    assert parse_message(raw).text == "deep text"


def test_headers_survive_when_both_parsers_fail(monkeypatch):
    import email as stdlib_email

    def explode(_raw):
        raise RecursionError("too deep")

    monkeypatch.setattr(mailparser, "parse_from_bytes", explode)
    monkeypatch.setattr(stdlib_email, "message_from_bytes", explode)
    msg = parse_message(b"From: a@example.com\r\nSubject: still here\r\n\r\nbody")
    assert (msg.from_address, msg.subject, msg.text) == ("a@example.com", "still here", None)
