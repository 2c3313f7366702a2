"""Flow 3 end to end over real SMTP: replies from real clients, and every way in that must fail.

Each test asserts the SMTP answer, exactly what appeared on the PR (or that
nothing did) and what went to the outbox.
"""
from datetime import timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from gateway.signing import ReplyTokens
from gateway.store import InboundMessage, utcnow
from tests.support import mail_clients
from tests.support.harness import REPO, SECRET

TEXT = "Thanks! I tested the branch and the typo is gone.\n\nOne more thing: the footer still says 2025."


@pytest.fixture
def thread(gateway):
    """A PR with a thread; yields the notification the reporter received."""
    status = gateway.open_pull_request()
    assert status["status"] == "notified"
    [mail] = gateway.sink.clear()
    return mail.message


def comments(gateway):
    return [c["body"] for c in gateway.emulator.comments(REPO, 1)]


def receipts(gateway):
    return [m.message for m in gateway.sink.messages]


def verdicts(gateway):
    with gateway.ctx.db.session() as s:
        return [(m.verdict, m.reason) for m in s.scalars(select(InboundMessage).order_by(InboundMessage.id))]


def posted_text(body: str) -> str:
    """The comment without its hidden parts: what a reader sees first."""
    return body.split("<details>")[0].split("<!-- gateway:")[0].strip()


def send(gateway, message, *, mail_from="ann@example.com", to=None):
    to = to or [message["To"]]
    return gateway.send_mail(message, mail_from=mail_from, to=to)


@pytest.mark.parametrize("client", ["gmail", "outlook", "apple_mail", "thunderbird", "ios_mail"])
def test_reply_from_each_client_becomes_exactly_the_new_text(gateway, thread, client):
    reply = getattr(mail_clients, client)(thread, TEXT)
    code, _ = send(gateway, reply)
    assert code == 250
    gateway.run_jobs()
    [body] = comments(gateway)
    assert posted_text(body) == f"**Ann Reporter** via email:\n\n{TEXT}"
    assert "<!-- gateway:inbound:" in body
    assert "ann@example.com" not in body
    [receipt] = receipts(gateway)
    assert receipt["In-Reply-To"] == reply["Message-ID"]
    assert gateway.emulator.comments(REPO, 1)[0]["html_url"] in receipt.get_body(("plain",)).get_content()
    assert verdicts(gateway) == [("posted", None)]


def test_html_only_reply_is_converted_and_trimmed(gateway, thread):
    code, _ = send(gateway, mail_clients.gmail(thread, "Looks good to me.", html_only=True))
    assert code == 250
    gateway.run_jobs()
    assert posted_text(comments(gateway)[0]) == "**Ann Reporter** via email:\n\nLooks good to me."


def test_non_utf8_reply_keeps_its_characters(gateway, thread):
    code, _ = send(gateway, mail_clients.german_latin1(thread, "Grüße, der Fehler ist behoben. Straße ✓"
                                                       .replace("✓", "ok")))
    assert code == 250
    gateway.run_jobs()
    assert posted_text(comments(gateway)[0]) == ("**Änne Müller** via email:\n\n"
                                                 "Grüße, der Fehler ist behoben. Straße ok")


def test_attachment_is_listed_not_dropped(gateway, thread):
    reply = mail_clients.with_attachment(mail_clients.apple_mail(thread, "Log attached."), "trace.log", b"x" * 2048)
    assert send(gateway, reply)[0] == 250
    gateway.run_jobs()
    text = posted_text(comments(gateway)[0])
    assert text.startswith("**Ann Reporter** via email:\n\nLog attached.")
    assert "`trace.log` (2.0 KB)" in text


def test_quote_only_reply_posts_nothing_and_the_receipt_says_so(gateway, thread):
    assert send(gateway, mail_clients.gmail(thread, ""))[0] == 250
    gateway.run_jobs()
    assert comments(gateway) == []
    [receipt] = receipts(gateway)
    assert "nothing was posted" in receipt.get_body(("plain",)).get_content()
    assert verdicts(gateway) == [("empty", None)]


def test_please_merge_only_becomes_a_comment(gateway, thread):
    assert send(gateway, mail_clients.gmail(thread, "Please merge this now. /merge"))[0] == 250
    gateway.run_jobs()
    assert posted_text(comments(gateway)[0]).endswith("Please merge this now. /merge")
    assert gateway.emulator.pulls(REPO)[0]["merged"] is False and gateway.emulator.pulls(REPO)[0]["state"] == "open"


def test_credentials_in_a_reply_are_redacted_before_posting(gateway, thread):
    token = "ghp_" + "Zz09" * 9
    assert send(gateway, mail_clients.gmail(thread, f"my token is {token}"))[0] == 250
    gateway.run_jobs()
    [body] = comments(gateway)
    assert token not in body and "[redacted GitHub personal access token]" in body


# -- refused at RCPT TO: 550 5.1.1, nothing stored, nothing posted, nothing sent --------------------

def _refused_at_rcpt(gateway, message, address):
    code, text = gateway.send_mail(message, mail_from="ann@example.com", to=[address])
    assert (code, text) == (550, "5.1.1 Recipient address rejected")
    gateway.run_jobs()
    assert comments(gateway) == [] and receipts(gateway) == [] and verdicts(gateway) == []


def test_forged_token_is_refused(gateway, thread):
    forged = thread["Reply-To"].replace(thread["Reply-To"].split(".")[-3][-4:], "aaaa")
    _refused_at_rcpt(gateway, mail_clients.gmail(thread, TEXT), forged)


def test_token_signed_by_an_unknown_key_is_refused(gateway, thread):
    thread_id = thread["X-Gateway-Thread"]
    other = ReplyTokens(secrets=["another-secret-0123456789abcdef"], domain="reply.example.com")
    _refused_at_rcpt(gateway, mail_clients.gmail(thread, TEXT), other.reply_address(thread_id))


def test_expired_token_is_refused(gateway, thread):
    old = ReplyTokens(secrets=[SECRET], domain="reply.example.com", clock=lambda: utcnow() - timedelta(days=31))
    _refused_at_rcpt(gateway, mail_clients.gmail(thread, TEXT), old.reply_address(thread["X-Gateway-Thread"]))


def test_revoked_thread_is_refused(gateway, thread):
    from gateway.flows.operator import revoke_thread

    assert revoke_thread(gateway.ctx, thread["X-Gateway-Thread"])
    _refused_at_rcpt(gateway, mail_clients.gmail(thread, TEXT), thread["Reply-To"])


def test_another_threads_token_does_not_reach_this_thread(gateway, thread):
    gateway.open_pull_request(head="second-fix", reporter="bob@example.com", title="Second")
    [bob_mail] = [m.message for m in gateway.sink.clear() if m.recipients == ["bob@example.com"]]
    # Ann replies to Bob's thread address: she is not a participant there.
    reply = mail_clients.gmail(thread, TEXT, to=bob_mail["Reply-To"])
    code, text = send(gateway, reply)
    assert (code, text) == (550, "5.7.1 Sender not allowed for this conversation")
    gateway.run_jobs()
    assert comments(gateway) == [] and gateway.emulator.comments(REPO, 2) == [] and receipts(gateway) == []
    assert verdicts(gateway)[0][0] == "rejected-not-participant"


def test_token_signed_by_the_previous_key_still_works(db, tmp_path):
    """After rotation, a reply address issued under the old key still reaches its thread."""
    from tests.support.harness import start_harness

    old_key = "old-secret-0123456789abcdef"
    gateway = start_harness(db, tmp_path, secret_key="new-secret-0123456789abcdef", previous_secret_keys=(old_key,))
    try:
        gateway.open_pull_request()
        notification = gateway.sink.clear()[0].message
        issued_before_rotation = ReplyTokens(secrets=[old_key], domain="reply.example.com").reply_address(
            notification["X-Gateway-Thread"])
        assert send(gateway, mail_clients.gmail(notification, TEXT, to=issued_before_rotation))[0] == 250
        gateway.run_jobs()
        assert [posted_text(c) for c in comments(gateway)] == [f"**Ann Reporter** via email:\n\n{TEXT}"]
    finally:
        gateway.close()


# -- refused or ignored at DATA ------------------------------------------------------------------

def test_wrong_sender_is_refused_with_5_7_1(gateway, thread):
    reply = mail_clients.gmail(thread, TEXT, sender="Mallory <mallory@evil.example>")
    assert send(gateway, reply, mail_from="mallory@evil.example") == (550, "5.7.1 Sender not allowed for this conversation")
    gateway.run_jobs()
    assert comments(gateway) == [] and receipts(gateway) == []
    assert verdicts(gateway) == [("rejected-not-participant", "mallory@evil.example is not a participant")]


def test_dmarc_fail_from_the_trusted_verifier_is_refused(db, tmp_path):
    from tests.support.harness import start_harness

    gateway = start_harness(db, tmp_path, trusted_authserv_id="mx.reply.example.com")
    try:
        gateway.open_pull_request()
        notification = gateway.sink.clear()[0].message
        spoof = mail_clients.gmail(notification, TEXT)
        spoof["Authentication-Results"] = "mx.reply.example.com; spf=fail smtp.mailfrom=example.com; dmarc=fail header.from=example.com"
        assert send(gateway, spoof) == (550, "5.7.1 Message failed DMARC")
        honest = mail_clients.gmail(notification, "Real me.")
        honest["Authentication-Results"] = "mx.reply.example.com; dkim=pass; dmarc=pass header.from=example.com"
        honest["Authentication-Results"] = "attacker.example; dmarc=fail"  # untrusted: ignored
        assert send(gateway, honest)[0] == 250
        gateway.run_jobs()
        assert [posted_text(c) for c in comments(gateway)] == ["**Ann Reporter** via email:\n\nReal me."]
        assert [v for v, _ in verdicts(gateway)] == ["rejected-dmarc", "posted"]
    finally:
        gateway.close()


def test_out_of_office_auto_reply_is_accepted_never_posted_never_answered(gateway, thread):
    ooo = mail_clients.gmail(thread, "I am away until Monday.")
    del ooo["Subject"]
    ooo["Subject"] = "Automatic reply: " + thread["Subject"]
    ooo["Auto-Submitted"] = "auto-replied"
    assert send(gateway, ooo)[0] == 250
    gateway.run_jobs()
    assert comments(gateway) == [] and receipts(gateway) == []
    assert verdicts(gateway)[0][0] == "ignored-auto-reply"


def test_bounce_is_accepted_never_posted_never_answered(gateway, thread):
    bounce = EmailMessage()
    bounce["From"] = "Mail Delivery Subsystem <mailer-daemon@example.com>"
    bounce["To"] = thread["Reply-To"]
    bounce["Subject"] = "Undelivered Mail Returned to Sender"
    bounce["Message-ID"] = "<bounce-1@example.com>"
    bounce.set_content("This is the mail system. Your message could not be delivered.")
    assert gateway.send_mail(bounce, mail_from="", to=[thread["Reply-To"]])[0] == 250
    gateway.run_jobs()
    assert comments(gateway) == [] and receipts(gateway) == []
    assert verdicts(gateway)[0][0] == "bounce"


@pytest.mark.parametrize("sender, envelope, expected_code, expected_verdict", [
    # a service mailing from an ordinary address: not a participant of the thread
    ("Slackish <feedback@slackish.example>", "feedback@slackish.example", 550, "rejected-not-participant"),
    # the same with a VERP bounce envelope: a machine sender, recorded and ignored
    ("Slackish <feedback@slackish.example>", "bounces+123@slackish.example", 250, "ignored-auto-reply"),
    # a service mailing from a no-reply address: automated, recorded, never posted or answered
    ("Slackish <no-reply@slackish.example>", "no-reply@slackish.example", 250, "ignored-auto-reply"),
])
def test_ticket_trick_verification_mail_never_becomes_a_comment(gateway, thread, sender, envelope, expected_code,
                                                                 expected_verdict):
    """A third-party service, signed up with the reply address, mails its secret link there."""
    verify = EmailMessage()
    verify["From"] = sender
    verify["To"] = thread["Reply-To"]
    verify["Subject"] = "Confirm your email address"
    verify["Message-ID"] = "<verify-1@slackish.example>"
    verify.set_content("Your confirmation code is 472-991. Click https://slackish.example/confirm?c=secret")
    code, _ = gateway.send_mail(verify, mail_from=envelope, to=[thread["Reply-To"]])
    assert code == expected_code
    gateway.run_jobs()
    assert comments(gateway) == [] and receipts(gateway) == []
    assert [v for v, _ in verdicts(gateway)] == [expected_verdict]


def test_duplicate_delivery_is_accepted_and_posted_once(gateway, thread):
    reply = mail_clients.gmail(thread, TEXT)
    assert send(gateway, reply)[0] == 250
    assert send(gateway, reply)[0] == 250
    gateway.run_jobs()
    assert len(comments(gateway)) == 1 and len(receipts(gateway)) == 1
    assert [v for v, _ in verdicts(gateway)] == ["posted", "duplicate"]


def test_oversize_message_is_refused_with_552(db, tmp_path):
    from tests.support.harness import start_harness

    gateway = start_harness(db, tmp_path, max_message_bytes=20_000)
    try:
        gateway.open_pull_request()
        notification = gateway.sink.messages[0].message
        reply = mail_clients.with_attachment(mail_clients.gmail(notification, TEXT), "big.bin", b"x" * 50_000)
        code, text = send(gateway, reply)
        assert code == 552 and text.startswith("5.3.4")
        assert verdicts(gateway) == [] and gateway.emulator.comments(REPO, 1) == []
    finally:
        gateway.close()


def test_reply_without_sub_address_is_routed_by_the_signed_message_id(gateway, thread):
    reply = mail_clients.gmail(thread, TEXT, to="reply@reply.example.com")
    assert send(gateway, reply)[0] == 250
    gateway.run_jobs()
    assert posted_text(comments(gateway)[0]).endswith(TEXT)


def test_bare_reply_address_with_forged_message_id_is_refused(gateway, thread):
    reply = mail_clients.gmail(thread, TEXT, to="reply@reply.example.com")
    forged = thread["Message-ID"].replace(".", "x", 1)
    del reply["In-Reply-To"], reply["References"]
    reply["In-Reply-To"] = forged
    reply["References"] = forged
    assert send(gateway, reply) == (550, "5.1.1 Recipient address rejected")
    gateway.run_jobs()
    assert comments(gateway) == []


def test_github_failure_after_250_is_retried_then_dead_lettered_and_kept(gateway, thread):
    from gateway.flows import job_kinds
    from gateway.queue import Worker

    gateway.emulator.faults.inject("5xx", path_regex=r"/comments$", method="POST", times=100)
    assert send(gateway, mail_clients.gmail(thread, TEXT))[0] == 250
    clock = [utcnow()]
    worker = Worker(gateway.ctx.db, job_kinds(gateway.ctx), clock=lambda: clock[0])
    for _ in range(gateway.settings.job_max_attempts):
        clock[0] += timedelta(hours=2)
        worker.run_until_idle()
    assert comments(gateway) == [] and receipts(gateway) == []
    with gateway.ctx.db.session() as s:
        row = s.scalars(select(InboundMessage)).one()
        assert row.verdict == "failed" and "gave up after" in row.reason
        assert TEXT.split("\n")[0].encode() in row.raw


def test_inbound_list_api_filters_by_verdict_and_thread(gateway, thread):
    send(gateway, mail_clients.gmail(thread, TEXT))
    send(gateway, mail_clients.gmail(thread, TEXT, sender="x@evil.example"), mail_from="x@evil.example")
    gateway.run_jobs()
    everything = gateway.api("GET", "/api/inbound").json()["messages"]
    assert [m["verdict"] for m in everything] == ["rejected-not-participant", "posted"]
    posted = gateway.api("GET", "/api/inbound", params={"verdict": "posted",
                                                         "thread": thread["X-Gateway-Thread"]}).json()["messages"]
    assert len(posted) == 1 and posted[0]["comment_url"].startswith("http")
    assert gateway.api("GET", "/api/inbound", params={"verdict": "nonsense"}).status_code == 422
    assert gateway.api("GET", "/api/inbound", token=None).status_code == 401


def test_raw_mime_over_http_uses_the_same_pipeline(gateway, thread):
    reply = mail_clients.outlook(thread, "Posted via a provider webhook.")
    response = gateway.api("POST", "/inbound/raw", params={"from": "ann@example.com", "to": thread["Reply-To"]},
                           data=reply.as_bytes(), headers={"Content-Type": "message/rfc822"})
    assert response.status_code == 202 and response.json()["smtp"]["code"] == 250
    forged = gateway.api("POST", "/inbound/raw", params={"from": "ann@example.com", "to": "reply+x.1.y@reply.example.com"},
                         data=reply.as_bytes(), headers={"Content-Type": "message/rfc822"})
    assert forged.status_code == 404 and forged.json()["smtp"]["status"] == "5.1.1"
    stranger = mail_clients.outlook(thread, "hi", sender="eve@evil.example")
    refused = gateway.api("POST", "/inbound/raw", params={"from": "eve@evil.example", "to": thread["Reply-To"]},
                          data=stranger.as_bytes(), headers={"Content-Type": "message/rfc822"})
    assert refused.status_code == 403 and refused.json()["smtp"]["status"] == "5.7.1"
    missing = gateway.api("POST", "/inbound/raw", data=b"x", headers={"Content-Type": "message/rfc822"})
    assert missing.status_code == 422 and set(missing.json()["error"]["fields"]) == {"from", "to"}
    gateway.run_jobs()
    assert [posted_text(c) for c in comments(gateway)] == ["**Ann Reporter** via email:\n\nPosted via a provider webhook."]


def test_a_failed_write_before_250_answers_451_and_the_retry_is_posted(gateway, thread):
    """Nothing is acknowledged that was not stored: the client keeps the message and tries again."""
    def rename(old, new):
        with gateway.ctx.db.engine.begin() as connection:
            connection.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {new}")

    reply = mail_clients.gmail(thread, TEXT)
    rename("inbound_messages", "inbound_messages_away")
    try:
        assert send(gateway, reply) == (451, "4.3.0 Temporary failure, try again later")
    finally:
        rename("inbound_messages_away", "inbound_messages")
    assert verdicts(gateway) == []
    assert send(gateway, reply)[0] == 250  # the MTA's retry
    gateway.run_jobs()
    assert [posted_text(c) for c in comments(gateway)] == [f"**Ann Reporter** via email:\n\n{TEXT}"]


# -- what is decided at DATA from the headers alone, and recorded in batches ------------------------


def test_revoked_thread_is_refused_at_data_even_while_its_rcpt_answer_is_remembered(gateway, thread):
    from gateway.flows.operator import revoke_thread

    assert send(gateway, mail_clients.gmail(thread, "First, before the revocation."))[0] == 250
    assert revoke_thread(gateway.ctx, thread["X-Gateway-Thread"])
    # RCPT may still say yes for a few seconds (the thread was live just now); DATA reads the thread again.
    assert send(gateway, mail_clients.gmail(thread, TEXT)) == (550, "5.1.1 Recipient address rejected")
    gateway.run_jobs()
    assert [posted_text(c) for c in comments(gateway)] == ["**Ann Reporter** via email:\n\nFirst, before the revocation."]
    assert [v for v, _ in verdicts(gateway)] == ["posted"]


def test_a_delivery_report_seen_only_in_the_body_is_recorded_as_a_bounce_by_the_job(gateway, thread):
    """Headers that look like the reporter's; the delivery-status part shows a machine."""
    report = (f"From: Ann Reporter <ann@example.com>\r\nTo: {thread['Reply-To']}\r\n"
              f"Subject: Re: {thread['Subject']}\r\nMessage-ID: <report-1@example.com>\r\n"
              f"In-Reply-To: {thread['Message-ID']}\r\nMIME-Version: 1.0\r\n"
              "Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
              "--b1\r\nContent-Type: text/plain\r\n\r\nDelivery to the following recipient failed.\r\n"
              "--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
              "Final-Recipient: rfc822; x@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
              "--b1--\r\n").encode()
    assert gateway.send_mail(report, mail_from="ann@example.com", to=[thread["Reply-To"]])[0] == 250
    assert [v for v, _ in verdicts(gateway)] == ["queued"]  # the body is not read while the client waits
    gateway.run_jobs()
    assert comments(gateway) == [] and receipts(gateway) == []
    [(verdict, reason)] = verdicts(gateway)
    assert verdict == "bounce" and "message/delivery-status" in reason


def _envelope(raw: bytes, *, to: str, mail_from: str = "ann@example.com"):
    from inbound.handler import Envelope

    return Envelope(mail_from=mail_from, rcpt_tos=(to,), content=raw, peer="192.0.2.7", helo="client.example.org")


def _jobs(gateway):
    from gateway.store import Job

    with gateway.ctx.db.session() as s:
        return list(s.scalars(select(Job.payload).where(Job.kind == "process_reply")))


def test_a_batch_records_each_message_once_and_a_repeat_within_it_as_duplicate(gateway, thread):
    from gateway.flows.receive_reply import ReplyDoor
    from inbound.handler import smtp_reply

    first, second = (mail_clients.gmail(thread, f"Reply {i}.").as_bytes() for i in (1, 2))
    to = thread["Reply-To"]
    decisions = [smtp_reply(answer) for answer in ReplyDoor(gateway.ctx).deliver_many(
        [_envelope(first, to=to), _envelope(second, to=to), _envelope(first, to=to)])]
    assert [(d.code, d.reason) for d in decisions] == [(250, "queued"), (250, "queued"), (250, "duplicate")]
    assert [v for v, _ in verdicts(gateway)] == ["queued", "queued", "duplicate"]
    assert len(_jobs(gateway)) == 2
    gateway.run_jobs()
    assert [posted_text(c).rsplit("\n", 1)[-1] for c in comments(gateway)] == ["Reply 1.", "Reply 2."]


def test_a_message_that_cannot_be_stored_fails_alone_not_its_batch(gateway, thread):
    """The batch is retried message by message: the others are stored, that one gets 451."""
    from gateway.flows.receive_reply import ReplyDoor
    from inbound.handler import smtp_reply

    good = mail_clients.gmail(thread, "Stored.").as_bytes()
    unstorable = mail_clients.gmail(thread, "Not stored.").as_bytes()
    to = thread["Reply-To"]
    decisions = [smtp_reply(answer) for answer in ReplyDoor(gateway.ctx).deliver_many([
        _envelope(good, to=to),
        _envelope(unstorable, to=to, mail_from="ann\udcff@example.com")])]  # a lone surrogate: no encoding takes it
    assert [(d.code, d.status) for d in decisions] == [(250, "2.0.0"), (451, "4.3.0")]
    assert [v for v, _ in verdicts(gateway)] == ["queued"]
    assert len(_jobs(gateway)) == 1


def test_concurrent_senders_share_commits_and_each_reply_is_posted_once(gateway, thread):
    import threading

    codes, lock = [], threading.Lock()

    def sender(n: int) -> None:
        for i in range(5):
            code, _ = send(gateway, mail_clients.gmail(thread, f"Sender {n}, reply {i}."))
            with lock:
                codes.append(code)

    senders = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for t in senders:
        t.start()
    for t in senders:
        t.join(30)
    assert codes == [250] * 20
    gateway.run_jobs()
    posted = sorted(posted_text(c).rsplit("\n", 1)[-1] for c in comments(gateway))
    assert posted == sorted(f"Sender {n}, reply {i}." for n in range(4) for i in range(5))
    assert len(receipts(gateway)) == 20
