"""Unsubscribe end to end (RFC 8058): the headers every mail carries, the one-click POST,
the page a GET shows (changing nothing), mail to the signed mailto: address over real
SMTP, and that replies keep working afterwards.
"""
import re
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from gateway.store import InboundMessage, Participant, Thread, WebhookDelivery
from tests.support import mail_clients
from tests.support import webhook_payloads as wp
from tests.support.harness import REPO

ANN = "Ann Reporter <ann@example.com>"
BOB = "Bob Tester <bob@example.com>"
TARGETS = re.compile(r"<(?P<url>[^<>]+)>, <(?P<mailto>mailto:[^<>]+)>")


@pytest.fixture
def thread(gateway) -> EmailMessage:
    """PR #1 with Ann's thread; yields her notification (the sink is then empty)."""
    gateway.open_pull_request(reporter=ANN)
    [mail] = gateway.sink.clear()
    return mail.message


def targets(message: EmailMessage) -> tuple[str, str]:
    """(https link, mailto address) of List-Unsubscribe."""
    match = TARGETS.fullmatch(message["List-Unsubscribe"])
    assert match, message["List-Unsubscribe"]
    return match["url"], match["mailto"][len("mailto:"):]


def local_path(url: str) -> str:
    """The gateway serves public_url on the harness's port."""
    return urlsplit(url).path


def subscribed(gateway, email: str = "ann@example.com", thread_number: int = 1) -> bool:
    with gateway.ctx.db.session() as s:
        participant = s.scalars(select(Participant).join(Thread, Thread.id == Participant.thread_id).where(
            Participant.email == email, Thread.pr_number == thread_number)).one()
        return participant.unsubscribed_at is None


def unsubscribed_at(gateway, email: str = "ann@example.com"):
    with gateway.ctx.db.session() as s:
        return s.scalars(select(Participant.unsubscribed_at).where(Participant.email == email)).first()


def one_click(gateway, url: str):
    """What a mail client sends for List-Unsubscribe-Post (RFC 8058 section 3.1)."""
    return gateway.api("POST", local_path(url), token=None, data="List-Unsubscribe=One-Click",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})


def comment_event(gateway, number: int = 1, text: str = "Looks good.") -> list:
    response = wp.deliver(gateway, "issue_comment", wp.issue_comment(number, text))
    assert response.status_code == 202
    gateway.run_jobs()
    return gateway.sink.clear()


def last_outcome(gateway) -> str:
    with gateway.ctx.db.session() as s:
        return s.scalars(select(WebhookDelivery.outcome).order_by(WebhookDelivery.received_at.desc())).first()


# -- the headers ----------------------------------------------------------------------------------

def test_every_mail_carries_a_signed_link_and_mailto_and_one_click(gateway, thread):
    code, _ = gateway.send_mail(mail_clients.gmail(thread, "Thanks."), mail_from="ann@example.com",
                                to=[thread["Reply-To"]])
    assert code == 250
    gateway.run_jobs()
    [receipt] = gateway.sink.clear()
    [activity] = comment_event(gateway)

    tokens = gateway.ctx.tokens
    with gateway.ctx.db.session() as s:
        thread_id, participant_id = s.execute(select(Participant.thread_id, Participant.id)).one()
    for message in (thread, receipt.message, activity.message):
        url, mailto = targets(message)
        token = url.rsplit("/", 1)[1]
        assert url == f"http://gateway.test/unsubscribe/{token}"
        assert mailto == f"unsubscribe+{token}@reply.example.com"
        assert tokens.verify_unsubscribe(token) == (thread_id, participant_id)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# -- the link -------------------------------------------------------------------------------------

def test_get_shows_a_button_and_changes_nothing(gateway, thread):
    url, _ = targets(thread)
    for _ in range(2):  # link scanners fetch links; that must never unsubscribe anyone
        page = gateway.api("GET", local_path(url), token=None)
        assert page.status_code == 200
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert page.headers["Cache-Control"] == "no-store"
        assert f"Stop mail about {REPO} #1 to a…@example.com?" in page.text
        assert '<form method="post"><button type="submit">Unsubscribe</button></form>' in page.text
        assert "ann@example.com" not in page.text
    assert subscribed(gateway)


def test_one_click_post_stops_mail_at_once(gateway, thread):
    url, _ = targets(thread)
    response = one_click(gateway, url)
    assert response.status_code == 200
    assert "<h1>Unsubscribed</h1>" in response.text
    assert not subscribed(gateway)

    assert comment_event(gateway) == []
    assert last_outcome(gateway) == "relayed comment to 0 of 1 participant(s)"
    page = gateway.api("GET", local_path(url), token=None)
    assert page.status_code == 200 and "a…@example.com gets no more mail about" in page.text
    assert "<form" not in page.text


def test_the_pages_button_posts_without_a_body(gateway, thread):
    url, _ = targets(thread)
    response = gateway.api("POST", local_path(url), token=None)
    assert response.status_code == 200
    assert not subscribed(gateway)


def test_unsubscribing_twice_keeps_the_first_time(gateway, thread):
    url, _ = targets(thread)
    one_click(gateway, url)
    first = unsubscribed_at(gateway)
    assert one_click(gateway, url).status_code == 200
    assert unsubscribed_at(gateway) == first is not None


def test_a_token_in_upper_case_still_works(gateway, thread):
    url, _ = targets(thread)
    prefix, token = url.rsplit("/", 1)
    assert one_click(gateway, f"{prefix}/{token.upper()}").status_code == 200
    assert not subscribed(gateway)


def _forged(gateway, thread) -> dict[str, str]:
    url, _ = targets(thread)
    token = url.rsplit("/", 1)[1]
    thread_id, pid, sig = token.split(".")
    other_sig = gateway.ctx.tokens.unsubscribe_token(thread_id, int(pid) + 1).split(".")[2]
    return {"tampered signature": f"{thread_id}.{pid}.{'a' * 16 if sig != 'a' * 16 else 'b' * 16}",
            "signature of another participant": f"{thread_id}.{pid}.{other_sig}",
            "malformed": "not-a-token",
            "reply token": thread["Reply-To"].split("+")[1].split("@")[0]}


def test_invalid_links_are_404_and_change_nothing(gateway, thread):
    gateway.open_pull_request(reporter=BOB)  # participant id + 1 exists, on the same thread
    gateway.sink.clear()
    for name, token in _forged(gateway, thread).items():
        for method in ("GET", "POST"):
            response = gateway.api(method, f"/unsubscribe/{token}", token=None)
            assert response.status_code == 404, (name, method)
            assert "This unsubscribe link is not valid." in response.text
    assert subscribed(gateway) and subscribed(gateway, "bob@example.com")


def test_unsubscribing_one_participant_leaves_the_others(gateway, thread):
    gateway.open_pull_request(reporter=BOB)
    [bob_notification] = gateway.sink.clear()
    bob_url, _ = targets(bob_notification.message)
    assert one_click(gateway, bob_url).status_code == 200
    [mail] = comment_event(gateway)
    assert mail.recipients == ["ann@example.com"]
    assert subscribed(gateway) and not subscribed(gateway, "bob@example.com")


def test_unsubscribing_from_one_thread_leaves_the_others(gateway, thread):
    gateway.open_pull_request(head="second-fix", reporter=ANN, title="Second fix")
    gateway.sink.clear()
    url, _ = targets(thread)
    one_click(gateway, url)
    assert not subscribed(gateway, thread_number=1) and subscribed(gateway, thread_number=2)
    assert comment_event(gateway, number=1) == []
    [mail] = comment_event(gateway, number=2)
    assert mail.message["Subject"] == "Re: [widgets] PR ready: Second fix"


# -- the mailto: address --------------------------------------------------------------------------

def unsubscribe_mail(sender: str, to: str, **headers) -> EmailMessage:
    """What Gmail sends for a List-Unsubscribe mailto: (a short, automatic message)."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, "Unsubscribe"
    message["Message-ID"] = "<unsub-1@mail.gmail.com>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("This message was automatically generated by Gmail.")
    return message


def inbound_count(gateway) -> int:
    with gateway.ctx.db.session() as s:
        return s.scalar(select(func.count()).select_from(InboundMessage))


def test_mail_to_the_mailto_address_unsubscribes(gateway, thread):
    _, address = targets(thread)
    code, text = gateway.send_mail(unsubscribe_mail(ANN, address), mail_from="ann@example.com", to=[address])
    assert code == 250, text
    assert not subscribed(gateway)
    gateway.run_jobs()
    assert gateway.emulator.comments(REPO, 1) == []
    assert gateway.sink.messages == []  # no receipt, no bounce
    assert comment_event(gateway) == []


def test_mailto_works_from_the_address_a_forwarder_rewrote(gateway, thread):
    """The token is the authority (RFC 8058): the envelope sender may differ after forwarding."""
    _, address = targets(thread)
    code, _ = gateway.send_mail(unsubscribe_mail("Ann <ann@forwarded.example.net>", address),
                                mail_from="srs0=xyz@forwarded.example.net", to=[address])
    assert code == 250
    assert not subscribed(gateway)


def test_mailto_with_threading_headers_only_unsubscribes(gateway, thread):
    """Some clients thread the unsubscribe mail under the list mail; it must not become a comment."""
    _, address = targets(thread)
    message = unsubscribe_mail(ANN, address, In_Reply_To=thread["Message-ID"], References=thread["Message-ID"])
    code, _ = gateway.send_mail(message, mail_from="ann@example.com", to=[address])
    assert code == 250
    gateway.run_jobs()
    assert not subscribed(gateway)
    assert gateway.emulator.comments(REPO, 1) == []
    assert gateway.sink.messages == []


@pytest.mark.parametrize("local", ["unsubscribe+not-a-token", "unsubscribe+{thread}.999.aaaaaaaaaaaaaaaa"])
def test_mailto_with_an_invalid_token_is_refused_at_rcpt(gateway, thread, local):
    _, address = targets(thread)
    thread_id = address.split("+")[1].split(".")[0]
    bad = local.format(thread=thread_id) + "@reply.example.com"
    code, text = gateway.send_mail(unsubscribe_mail(ANN, bad), mail_from="ann@example.com", to=[bad])
    assert code == 550 and "5.1.1" in text
    assert subscribed(gateway)
    assert inbound_count(gateway) == 0


# -- replies still work ----------------------------------------------------------------------------

def test_replies_still_work_after_unsubscribing(gateway, thread):
    url, _ = targets(thread)
    one_click(gateway, url)
    code, _ = gateway.send_mail(mail_clients.gmail(thread, "One more thing: the footer."),
                                mail_from="ann@example.com", to=[thread["Reply-To"]])
    assert code == 250
    gateway.run_jobs()
    [comment] = gateway.emulator.comments(REPO, 1)
    assert "One more thing: the footer." in comment["body"]
    [receipt] = gateway.sink.clear()  # she asked for this one
    assert "Your reply was posted as a comment" in receipt.message.get_body(("plain",)).get_content()
    assert comment_event(gateway) == []  # and still nothing else


def test_mailto_token_at_another_domain_is_refused_at_rcpt(gateway, thread):
    _, address = targets(thread)
    elsewhere = address.replace("@reply.example.com", "@other.example.org")
    code, _ = gateway.send_mail(unsubscribe_mail(ANN, elsewhere), mail_from="ann@example.com", to=[elsewhere])
    assert code == 550
    assert subscribed(gateway)
