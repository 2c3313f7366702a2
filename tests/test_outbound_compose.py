"""outbound.compose: headers a thread depends on, injection safety, wording of each mail."""

import email
import email.policy
from datetime import datetime, timezone

import pytest

from outbound.compose import (
    ThreadHeaders,
    activity_content,
    compose,
    notification_content,
    receipt_content,
)

REPO = "octo-org/widgets"
PR_URL = "https://github.com/octo-org/widgets/pull/7"
DATE = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
LONG_URL = "https://gateway.example.com/unsubscribe/" + "t" * 120


def thread(**overrides) -> ThreadHeaders:
    values = dict(
        message_id="<th1.0.abcdef@reply.example.com>",
        reply_to="reply+th1.1714566600.abcdef@reply.example.com",
        signed={"X-Gateway-Thread": "th1", "X-Gateway-Sig": "s" * 90, "X-Gateway-Sig-Ts": "1714566600"},
        list_id="octo-org/widgets PR #7 <pr-7.widgets.octo-org.reply.example.com>",
    )
    values.update(overrides)
    return ThreadHeaders(**values)


def build(subject="[widgets] PR ready: Fix it", text="plain body\n", html="<p>html body</p>\n",
          **thread_overrides):
    msg = compose(sender="Gateway <gateway@example.com>", to="Rita Reporter <rita@example.org>",
                  subject=subject, text=text, html=html, thread=thread(**thread_overrides), date=DATE)
    return msg, email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)


def bodies(parsed):
    """Both parts, decoded, with the wire's CRLF turned back into newlines."""
    return tuple(parsed.get_body((kind,)).get_content().replace("\r\n", "\n") for kind in ("plain", "html"))


def test_headers_present_and_exact():
    _, parsed = build()
    assert parsed["From"] == "Gateway <gateway@example.com>"
    assert parsed["To"] == "Rita Reporter <rita@example.org>"
    assert parsed["Subject"] == "[widgets] PR ready: Fix it"
    assert parsed["Date"] == "Wed, 01 May 2024 12:30:00 +0000"
    assert parsed["Message-ID"] == "<th1.0.abcdef@reply.example.com>"
    assert parsed["Reply-To"] == "reply+th1.1714566600.abcdef@reply.example.com"
    assert parsed["X-Gateway-Thread"] == "th1"
    assert parsed["X-Gateway-Sig"] == "s" * 90
    assert parsed["X-Gateway-Sig-Ts"] == "1714566600"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["X-Auto-Response-Suppress"] == "All"
    assert parsed["List-Id"] == "octo-org/widgets PR #7 <pr-7.widgets.octo-org.reply.example.com>"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed.get_content_type() == "multipart/alternative"
    for absent in ("Precedence", "In-Reply-To", "References", "List-Unsubscribe",
                   "List-Unsubscribe-Post", "Bcc", "Cc"):
        assert absent not in parsed


def test_wire_format_is_crlf_7bit_and_lines_short_where_possible():
    msg, _ = build(text="Grüße, ünïcödé\n", html="<p>Grüße</p>\n")
    raw = msg.as_bytes()
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    # the only line allowed to be long is the unbreakable signature header
    long_lines = [line for line in raw.split(b"\r\n") if len(line) > 78]
    assert long_lines == [b"X-Gateway-Sig: " + b"s" * 90]


def test_subject_injection_cannot_add_a_header():
    msg, parsed = build(subject="x\r\nBcc: evil@x\nX-Evil: 1\x00\x1b")
    assert "Bcc" not in parsed and "X-Evil" not in parsed
    assert parsed["Subject"] == "x Bcc: evil@x X-Evil: 1"
    assert b"\r\nBcc:" not in msg.as_bytes()


def test_subject_is_length_limited_and_one_line():
    _, parsed = build(subject="word " * 100)
    assert len(parsed["Subject"]) <= 200
    assert parsed["Subject"].endswith("…")
    assert "\n" not in parsed["Subject"]


def test_injection_in_title_via_content_builder():
    subject, text, _ = notification_content(repo=REPO, title="Fix\r\nBcc: evil@x", pr_url=PR_URL,
                                            pr_number=7, body=None)
    _, parsed = build(subject=subject, text=text)
    assert parsed["Subject"] == "[widgets] PR ready: Fix Bcc: evil@x"
    assert "Bcc" not in parsed


@pytest.mark.parametrize("field, value", [
    ("sender", "a@example.com\r\nBcc: evil@x"),
    ("to", "a@example.com, b@example.com"),
    ("to", "not an address"),
])
def test_addresses_must_be_exactly_one_and_clean(field, value):
    kwargs = dict(sender="gateway@example.com", to="rita@example.org", subject="s", text="t",
                  html="h", thread=thread(), date=DATE)
    kwargs[field] = value
    with pytest.raises(ValueError):
        compose(**kwargs)


@pytest.mark.parametrize("overrides", [
    {"message_id": "no-brackets@example.com"},
    {"in_reply_to": "<a@b>\r\nBcc: x@y"},
    {"signed": {"From": "evil@x"}},
    {"signed": {"X-Gateway-Sig": "has space"}},
    {"list_id": "no angle brackets"},
    {"unsubscribe_url": "javascript:alert(1)"},
    {"unsubscribe_url": "https://x.example/>, <mailto:evil@x"},
    {"unsubscribe_mailto": "a@b>, <https://evil"},
])
def test_thread_values_are_validated(overrides):
    with pytest.raises(ValueError):
        build(**overrides)


def test_naive_date_is_refused():
    with pytest.raises(ValueError):
        compose(sender="g@example.com", to="r@example.org", subject="s", text="t", html="h",
                thread=thread(), date=datetime(2024, 5, 1, 12, 30))


def test_default_date_is_now_utc():
    msg = compose(sender="g@example.com", to="r@example.org", subject="s", text="t", html="h",
                  thread=thread())
    assert msg["Date"].datetime.tzinfo is not None


def test_non_ascii_title_round_trips():
    title = "Réparer l’encodage — 修复 🚀"
    subject, text, html = notification_content(repo=REPO, title=title, pr_url=PR_URL, pr_number=7,
                                               body="Corps: ü")
    msg, parsed = build(subject=subject, text=text, html=html)
    assert parsed["Subject"] == f"[widgets] PR ready: {title}"
    assert b"=?utf-8?" in msg.as_bytes()  # encoded by the policy, not raw 8-bit
    plain, rich = bodies(parsed)
    assert title in plain and title in rich and "Corps: ü" in plain


def test_html_escapes_user_text():
    subject, text, html = notification_content(
        repo=REPO, title="<img src=x onerror=alert(1)>", pr_url=PR_URL, pr_number=7,
        body="<script>alert('x')</script> & \"quotes\"")
    _, parsed = build(subject=subject, text=text, html=html)
    _, rich = bodies(parsed)
    assert "<script>" not in rich and "<img" not in rich
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in rich
    assert "&lt;img src=x onerror=alert(1)&gt;" in rich
    assert f'<a href="{PR_URL}">' in rich


def test_links_must_be_http():
    with pytest.raises(ValueError):
        notification_content(repo=REPO, title="t", pr_url="javascript:alert(1)", pr_number=7, body=None)
    with pytest.raises(ValueError):
        activity_content(repo=REPO, title="t", kind="comment", actor="a", text="x",
                         url="data:text/html,hi", review_state=None)


def test_list_unsubscribe_one_click_with_long_url_stays_unencoded():
    msg, parsed = build(unsubscribe_url=LONG_URL, unsubscribe_mailto="unsubscribe+th1@reply.example.com")
    assert parsed["List-Unsubscribe"] == f"<{LONG_URL}>, <mailto:unsubscribe+th1@reply.example.com>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert b"=?" not in msg.as_bytes().split(b"\r\n\r\n")[0]  # no RFC 2047 in the header block


def test_list_unsubscribe_mailto_only_has_no_post():
    _, parsed = build(unsubscribe_mailto="mailto:unsubscribe+th1@reply.example.com")
    assert parsed["List-Unsubscribe"] == "<mailto:unsubscribe+th1@reply.example.com>"
    assert "List-Unsubscribe-Post" not in parsed


def test_in_reply_to_and_references():
    refs = ("<th1.0.abcdef@reply.example.com>", "<CAF" + "x" * 90 + "@mail.gmail.com>")
    _, parsed = build(message_id="<th1.2.abcdef@reply.example.com>",
                      in_reply_to=refs[-1], references=refs)
    assert parsed["In-Reply-To"] == refs[-1]
    assert parsed["References"] == " ".join(refs)


def test_text_and_html_alternatives():
    _, parsed = build(text="the text\n", html="<p>the html</p>\n")
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert all("MIME-Version" not in p for p in parts)
    assert bodies(parsed) == ("the text\n", "<p>the html</p>\n")


def test_notification_wording():
    body = "\n".join(f"line {i}" for i in range(1, 41))
    subject, text, html = notification_content(repo=REPO, title="Fix the widget", pr_url=PR_URL,
                                               pr_number=7, body=body)
    assert subject == "[widgets] PR ready: Fix the widget"
    assert PR_URL in text and "Fix the widget" in text and "#7" in text
    assert "> line 20" in text and "line 21" not in text  # excerpt: first 20 lines
    assert "Reply to this email to comment on the pull request." in text
    assert ("You are receiving this because you reported the issue. "
            "Merging is done by a maintainer on GitHub.") in text
    assert "Reply to this email to comment on the pull request." in html


def test_notification_excerpt_is_char_limited():
    _, text, _ = notification_content(repo=REPO, title="t", pr_url=PR_URL, pr_number=7, body="a" * 5000)
    assert "a" * 2000 in text and "a" * 2001 not in text


def test_receipt_wording():
    url = PR_URL + "#issuecomment-1"
    subject, text, html = receipt_content(repo=REPO, title="Fix the widget", comment_url=url,
                                          attachments_note="2 attachments were not posted.")
    assert subject == "Re: [widgets] PR ready: Fix the widget"
    assert f"Your reply was posted as a comment: {url}" in text
    assert "2 attachments were not posted." in text and f'href="{url}"' in html
    _, text, _ = receipt_content(repo=REPO, title="Fix the widget", comment_url=None, attachments_note=None)
    assert "Your reply had no new text (only quoted text), so nothing was posted." in text


@pytest.mark.parametrize("kind, state, words", [
    ("comment", None, "alice commented."),
    ("review_comment", None, "alice commented on the changes."),
    ("review", "approved", "alice approved these changes."),
    ("review", "APPROVED", "alice approved these changes."),
    ("review", "changes_requested", "alice requested changes."),
    ("review", "commented", "alice reviewed."),
    ("merged", None, "alice merged the pull request."),
    ("closed", None, "alice closed the pull request without merging."),
    ("reopened", None, "alice reopened the pull request."),
])
def test_activity_wording(kind, state, words):
    url = PR_URL + "#discussion_r1"
    subject, text, html = activity_content(repo=REPO, title="Fix the widget", kind=kind, actor="alice",
                                           text="Looks <good>\nsecond line", url=url, review_state=state)
    assert subject == "Re: [widgets] PR ready: Fix the widget"
    assert text.startswith(words)
    assert "> Looks <good>\n> second line" in text
    assert "Looks &lt;good&gt;" in html and "<good>" not in html
    assert url in text and "Reply to this email to answer on the pull request." in text


def test_activity_without_text_or_url():
    _, text, _ = activity_content(repo=REPO, title="t", kind="merged", actor="bob", text=None, url=None,
                                  review_state=None)
    assert text.startswith("bob merged the pull request.") and ">" not in text


def test_unknown_activity_kind_is_refused():
    with pytest.raises(ValueError):
        activity_content(repo=REPO, title="t", kind="labeled", actor="a", text=None, url=None,
                         review_state=None)


def test_thread_subjects_share_one_base_even_for_long_titles():
    title = "very long title " * 30
    first, _, _ = notification_content(repo=REPO, title=title, pr_url=PR_URL, pr_number=7, body=None)
    later, _, _ = receipt_content(repo=REPO, title=title, comment_url=None, attachments_note=None)
    again, _, _ = activity_content(repo=REPO, title=title, kind="closed", actor="a", text=None, url=None,
                                   review_state=None)
    assert later == again == "Re: " + first
    _, parsed = build(subject=later)
    assert parsed["Subject"] == later  # compose's own limit does not cut it differently
