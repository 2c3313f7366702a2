"""HTML reply extraction: each client's quote container, the HTML-to-text rendering, odd input."""
from __future__ import annotations

import pytest

from inbound.html_reply import extract_reply_from_html, html_to_text
from inbound.reply import Extraction

ATTRIBUTION = "On Tue, Jun 5, 2018 at 12:22 PM Foo &lt;foo@bar.com&gt; wrote:"
ATTRIBUTION_TEXT = "On Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:"


# --- client quote containers ---------------------------------------------------------------

def test_gmail_quote_and_signature_are_removed():
    html = (
        '<div dir="ltr">Thanks, looks good!<div><br></div><div>Please merge.</div>'
        '<br clear="all"><div><div dir="ltr" class="gmail_signature" data-smartmail="gmail_signature">'
        "Bob<br>ACME</div></div><br></div><br>"
        '<div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">'
        f"{ATTRIBUTION}<br></div>"
        '<blockquote class="gmail_quote" style="margin:0 0 0 .8ex">'
        '<div dir="ltr">PR #1 is ready.</div></blockquote></div>'
    )
    assert extract_reply_from_html(html) == Extraction(
        "Thanks, looks good!\n\nPlease merge.", f"Bob\nACME\n\n{ATTRIBUTION_TEXT}\n\n> PR #1 is ready."
    )


def test_old_gmail_attribution_as_text_of_the_container():
    html = (f'<div>Agreed.</div><div class="gmail_quote">{ATTRIBUTION}<br>'
            '<blockquote class="gmail_quote">PR #1 is ready.</blockquote></div>')
    assert extract_reply_from_html(html) == Extraction("Agreed.", f"{ATTRIBUTION_TEXT}\n\n> PR #1 is ready.")


def test_gmail_inline_reply_keeps_quotes():
    html = (
        '<div dir="ltr">Answers inline.</div><br><div class="gmail_quote">'
        f'<div dir="ltr" class="gmail_attr">{ATTRIBUTION}<br></div>'
        '<blockquote class="gmail_quote">Can you fix X?</blockquote><div>Yes, done.</div>'
        '<blockquote class="gmail_quote">And Y?<br>Old stuff</blockquote></div>'
    )
    assert extract_reply_from_html(html) == Extraction(
        "Answers inline.\n\n\n> Can you fix X?\n\nYes, done.", f"{ATTRIBUTION_TEXT}\n\n> And Y?\n> Old stuff"
    )


OUTLOOK_HEADERS = (
    "<b>From:</b> Foo &lt;foo@bar.com&gt;<br><b>Sent:</b> Tuesday, June 5, 2018 12:22 PM<br>"
    "<b>To:</b> Bar<br><b>Subject:</b> PR #1"
)
OUTLOOK_CUT = "From: Foo <foo@bar.com>\nSent: Tuesday, June 5, 2018 12:22 PM\nTo: Bar\nSubject: PR #1\n\nPR #1 is ready."


def test_outlook_web_divrplyfwdmsg_and_everything_after():
    html = (
        '<div>Sounds good to me.</div><div id="appendonsend"></div>'
        '<hr style="display:inline-block;width:98%" tabindex="-1">'
        f'<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri">{OUTLOOK_HEADERS}</font><div>&nbsp;</div></div>'
        "<div>PR #1 is ready.</div>"
    )
    assert extract_reply_from_html(html) == Extraction("Sounds good to me.", OUTLOOK_CUT)


def test_outlook_appendonsend_alone():
    html = ('<div>Sounds good to me.</div><div id="appendonsend"></div>'
            f"<div>{OUTLOOK_HEADERS}</div><div>PR #1 is ready.</div>")
    assert extract_reply_from_html(html) == Extraction("Sounds good to me.", OUTLOOK_CUT)


@pytest.mark.parametrize("border", ["border-top:solid #E1E1E1 1.0pt", "border-top: solid #B5C4DF 1.0pt"])
def test_outlook_desktop_border_top_block_and_everything_after(border):
    html = (
        '<html><head><style>p {margin:0}</style></head><body><div class="WordSection1">'
        '<p class="MsoNormal">Approved.<o:p></o:p></p><p class="MsoNormal"><o:p>&nbsp;</o:p></p>'
        f'<div><div style="border:none;{border};padding:3.0pt 0in 0in 0in">'
        f'<p class="MsoNormal">{OUTLOOK_HEADERS}<o:p></o:p></p></div></div>'
        '<p class="MsoNormal">PR #1 is ready.<o:p></o:p></p></div></body></html>'
    )
    assert extract_reply_from_html(html) == Extraction("Approved.", OUTLOOK_CUT)


def test_outlook_border_without_from_header_is_kept():
    html = '<div>Look:</div><div style="border-top:solid #E1E1E1 1.0pt">a boxed note</div><div>end</div>'
    assert extract_reply_from_html(html) == Extraction("Look:\na boxed note\nend", "")


def test_apple_mail_blockquote_type_cite():
    html = (
        '<html><body dir="auto">Ship it.<br><br><div dir="ltr">Sent from my iPhone</div>'
        '<div dir="ltr"><br><blockquote type="cite">On Jun 5, 2018, at 12:22, Foo &lt;foo@bar.com&gt; wrote:'
        '<br><br></blockquote></div><blockquote type="cite"><div dir="ltr">PR #1 is ready.</div></blockquote>'
        "</body></html>"
    )
    assert extract_reply_from_html(html) == Extraction(
        "Ship it.", "Sent from my iPhone\n\nOn Jun 5, 2018, at 12:22, Foo <foo@bar.com> wrote:\n\nPR #1 is ready."
    )


def test_apple_mail_inline_reply_keeps_quotes():
    html = (
        f"<div>{ATTRIBUTION}</div><blockquote type=\"cite\">Can you fix X?</blockquote>"
        '<div>Done.</div><blockquote type="cite">And Y?</blockquote>'
    )
    assert extract_reply_from_html(html) == Extraction("> Can you fix X?\n\nDone.", f"{ATTRIBUTION_TEXT}\n\n> And Y?")


def test_thunderbird_cite_prefix_blockquote_and_signature():
    html = (
        '<html><body><p>Fine by me.</p><div class="moz-signature">-- <br>Bob</div>'
        '<div class="moz-cite-prefix">On 05/06/2018 12:22, Foo wrote:<br></div>'
        '<blockquote type="cite" cite="mid:x@y">PR #1 is ready.</blockquote></body></html>'
    )
    assert extract_reply_from_html(html) == Extraction(
        "Fine by me.", "--\nBob\n\nOn 05/06/2018 12:22, Foo wrote:\n\nPR #1 is ready."
    )


@pytest.mark.parametrize("klass", ["yahoo_quoted", "ydp4c5d6yahoo_quoted"])
def test_yahoo_quoted(klass):
    html = (
        '<html><body><div class="ydp1a2b3yahoo-style-wrap"><div>Yes please.</div></div>'
        f'<div id="yahoo_quoted_123" class="{klass}"><div>'
        "<div>On Tuesday, June 5, 2018, 12:22:33 PM GMT+2, Foo &lt;foo@bar.com&gt; wrote:</div><div><br></div>"
        '<div><div dir="ltr">PR #1 is ready.</div></div></div></div></body></html>'
    )
    assert extract_reply_from_html(html) == Extraction(
        "Yes please.", "On Tuesday, June 5, 2018, 12:22:33 PM GMT+2, Foo <foo@bar.com> wrote:\n\nPR #1 is ready."
    )


def test_protonmail_quote_and_signature_block():
    html = (
        '<div>Merge when green.</div><div class="protonmail_signature_block">'
        '<div class="protonmail_signature_block-proton">Sent with Proton Mail secure email.</div></div>'
        '<div class="protonmail_quote">------- Original Message -------<br>'
        "On Tuesday, June 5th, 2018 at 12:22, Foo &lt;foo@bar.com&gt; wrote:<br>"
        '<blockquote class="protonmail_quote" type="cite">PR #1 is ready.</blockquote></div>'
    )
    assert extract_reply_from_html(html) == Extraction(
        "Merge when green.",
        "Sent with Proton Mail secure email.\n\n------- Original Message -------\n"
        "On Tuesday, June 5th, 2018 at 12:22, Foo <foo@bar.com> wrote:\n\n> PR #1 is ready.",
    )


def test_zimbra_hr_zwchr_and_everything_after():
    html = (
        '<html><body><div style="font-family: arial"><div>LGTM</div><div><br></div><hr id="zwchr">'
        '<div><b>From: </b>"Foo" &lt;foo@bar.com&gt;<br><b>To: </b>bar<br>'
        "<b>Sent: </b>Tuesday, June 5, 2018 12:22:00 PM<br><b>Subject: </b>PR #1<br></div>"
        "<div>PR #1 is ready.</div></div></body></html>"
    )
    assert extract_reply_from_html(html) == Extraction(
        "LGTM", 'From: "Foo" <foo@bar.com>\nTo: bar\nSent: Tuesday, June 5, 2018 12:22:00 PM\nSubject: PR #1\n\nPR #1 is ready.'
    )


def test_generic_blockquote_after_attribution():
    html = f"<p>See below.</p><p>{ATTRIBUTION}</p><blockquote>PR #1 is ready.</blockquote>"
    assert extract_reply_from_html(html) == Extraction("See below.", f"{ATTRIBUTION_TEXT}\n\nPR #1 is ready.")


def test_only_history_extracts_to_nothing():
    html = f"<p>{ATTRIBUTION}</p><blockquote>PR #1 is ready.</blockquote>"
    assert extract_reply_from_html(html).text == ""


# --- html_to_text --------------------------------------------------------------------------

def test_links():
    html = ('<p>See <a href="https://x.org/a">the docs</a>, <a href="https://y.org">https://y.org</a>, '
            '<a href="mailto:bob@x.org">bob@x.org</a> and <a href="#top">top</a>.</p>')
    assert html_to_text(html) == "See [the docs](https://x.org/a), https://y.org, bob@x.org and top."


def test_lists():
    html = "<p>Steps:</p><ul><li>one</li><li>two<ul><li>two.a</li></ul></li></ul><ol><li>first</li><li>second</li></ol>"
    assert html_to_text(html) == "Steps:\n\n- one\n- two\n  - two.a\n\n1. first\n2. second"


def test_pre_and_code_are_verbatim():
    html = "<p>Run <code>make  test</code>:</p><pre>def f():\n    return 1  # &lt;ok&gt;\n\n\nf()</pre><p>done</p>"
    assert html_to_text(html) == "Run `make  test`:\n\n```\ndef f():\n    return 1  # <ok>\n\n\nf()\n```\n\ndone"


def test_blockquotes_become_quote_lines():
    html = "<blockquote>outer<blockquote>inner</blockquote></blockquote><p>after</p>"
    assert html_to_text(html) == "> outer\n>\n> > inner\n\nafter"


def test_paragraphs_breaks_entities_and_dropped_elements():
    html = (
        "<html><head><title>t</title><style>p{}</style></head><body>"
        "<p>Fish &amp; chips &lt;3&nbsp;&nbsp;x</p><div>line 1<br>line 2<br><br>line 4</div>"
        '<script>alert(1)</script><div style="display:none">preheader</div><p>caf\u00e9</p></body></html>'
    )
    assert html_to_text(html) == "Fish & chips <3  x\n\nline 1\nline 2\n\nline 4\n\ncafé"


def test_white_space_pre_wrap_keeps_newlines():
    html = '<div style="white-space: pre-wrap">first\n\nsecond  line</div><div>no\nbreak</div>'
    assert html_to_text(html) == "first\n\nsecond line\nno break"


def test_table_cells_and_headings():
    assert html_to_text("<h2>Title</h2><table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>") == "## Title\n\na b\nc"


# --- odd input never raises ----------------------------------------------------------------

@pytest.mark.parametrize("html, text", [
    ("", ""),
    ("   ", ""),
    ("<!-- only a comment -->", ""),
    ("<html></html>", ""),
    ("plain text, no tags", "plain text, no tags"),
    ("<div><p>Unclosed <b>bold <i>and</div></p>text after</td></table>", "Unclosed bold and\n\ntext after"),
    ("<?xml version='1.0' encoding='iso-8859-1'?><html><body><p>x</p></body></html>", "x"),
    ('<meta charset="iso-8859-1"><p>caf\u00e9</p>', "café"),
    ("<p>mojibake cafÃ© and a lone \udc80 surrogate\x00\x01</p>", "mojibake cafÃ© and a lone ? surrogate"),
    ("<div>" * 3000 + "deep" + "</div>" * 3000, "deep"),
    ("<blockquote>" * 400 + "deep quote" + "</blockquote>" * 400, "deep quote"),
])
def test_odd_input(html, text):
    assert extract_reply_from_html(html).text == text
    assert isinstance(html_to_text(html), str)
