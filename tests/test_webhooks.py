"""Flow 4 end to end: signed GitHub deliveries over HTTP → mails in the reporter's thread.

Each test posts real webhook shapes (tests/support/webhook_payloads.py) to the
running web server, runs the worker, and checks what reached the SMTP sink
(headers and text), what was stored, and what was not.
"""
from datetime import timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select

from gateway.flows import github_events, job_kinds
from gateway.queue import Worker
from gateway.store import (Installation, InstallationToken, Job, OutboundMail, Participant, Thread,
                           WebhookDelivery, utcnow)
from tests.support import mail_clients
from tests.support import webhook_payloads as wp
from tests.support.github import count_requests
from tests.support.harness import BOT, INSTALLATION_ID, REPO, WEBHOOK_SECRET

ANN = "Ann Reporter <ann@example.com>"
BOB = "Bob Tester <bob@example.com>"
MAINTAINER = "maria-maintainer"
FOOTER = ("-- \nYou are receiving this because you reported the issue. "
          "Merging is done by a maintainer on GitHub.")
HINT = "Reply to this email to answer on the pull request."


# -- helpers ------------------------------------------------------------------------------------

@pytest.fixture
def thread(gateway) -> EmailMessage:
    """PR #1 with a mail thread; yields the notification Ann received (the sink is then empty)."""
    status = gateway.open_pull_request(reporter=ANN)
    assert (status["status"], status["number"]) == ("notified", 1)
    [mail] = gateway.sink.clear()
    return mail.message


def count(gateway, model, *where) -> int:
    with gateway.ctx.db.session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def deliveries(gateway) -> list[tuple[str, str, str | None, str | None]]:
    with gateway.ctx.db.session() as s:
        return [(d.delivery_id, d.event, d.action, d.outcome)
                for d in s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.received_at))]


def event_jobs(gateway) -> list[tuple[str, str]]:
    with gateway.ctx.db.session() as s:
        return [(j.payload, j.status) for j in s.scalars(
            select(Job).where(Job.kind == "handle_github_event").order_by(Job.id))]


def participant_id(gateway, email: str) -> int:
    with gateway.ctx.db.session() as s:
        return s.scalars(select(Participant.id).where(Participant.email == email)).one()


def expected_text(line: str, *, quote: str | None = None, url: str | None = None) -> str:
    blocks = [line]
    if quote:
        blocks.append("\n".join(("> " + row).rstrip() for row in quote.splitlines()))
    if url:
        blocks.append(f"View it on GitHub: {url}")
    return "\n\n".join([*blocks, HINT, FOOTER]) + "\n"


def assert_thread_mail(gateway, mail, notification: EmailMessage, *, to: str = ANN) -> None:
    """In the notification's thread, answerable, and with a working one-click unsubscribe for `to`."""
    message = mail.message
    address = to.split("<")[1].rstrip(">")
    assert mail.recipients == [address]
    assert message["To"] == to
    assert message["Subject"] == "Re: [widgets] PR ready: Fix the typo in the README"
    assert message["In-Reply-To"] == notification["Message-ID"]
    assert message["References"] == notification["Message-ID"]
    tokens = gateway.ctx.tokens
    thread_id = tokens.verify_message_id(notification["Message-ID"])
    assert tokens.verify_address(message["Reply-To"]) == thread_id
    assert tokens.verify_message_id(message["Message-ID"]) == thread_id
    token = tokens.unsubscribe_token(thread_id, participant_id(gateway, address))
    assert message["List-Unsubscribe"] == (f"<http://gateway.test/unsubscribe/{token}>, "
                                           f"<mailto:unsubscribe+{token}@reply.example.com>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Auto-Submitted"] == "auto-generated"


def text_of(mail) -> str:
    """The plain part as the reader sees it (the wire's CRLFs as newlines)."""
    return mail.message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def deliver_and_run(gateway, event: str, payload: dict, delivery_id: str | None = None) -> list:
    response = wp.deliver(gateway, event, payload, delivery_id)
    assert response.status_code == 202, response.text
    gateway.run_jobs()
    return gateway.sink.messages


# -- signature, ping, de-duplication --------------------------------------------------------------

def test_ping_is_answered_and_nothing_is_stored(gateway):
    response = wp.deliver(gateway, "ping", wp.ping(), "ping-1")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "event": "ping", "zen": "pong"}
    assert deliveries(gateway) == [] and event_jobs(gateway) == []


def test_signed_delivery_is_stored_and_queued_in_one_go(gateway, thread):
    payload = wp.issue_comment(1, "Looks good.")
    response = wp.deliver(gateway, "issue_comment", payload, "d-1")
    assert response.status_code == 202
    assert response.json() == {"ok": True, "delivery": "d-1", "outcome": "queued"}
    assert deliveries(gateway) == [("d-1", "issue_comment", "created", None)]
    assert event_jobs(gateway) == [('{"delivery_id": "d-1"}', "queued")]
    assert gateway.sink.messages == []  # handling is the job's, not the request's

    gateway.run_jobs()
    assert deliveries(gateway) == [("d-1", "issue_comment", "created", "relayed comment to 1 of 1 participant(s)")]
    assert event_jobs(gateway) == [('{"delivery_id": "d-1"}', "done")]


@pytest.mark.parametrize("case", ["missing", "wrong secret", "other body", "sha1 only", "not hex", "empty secret"])
def test_unsigned_or_badly_signed_delivery_is_refused_and_nothing_is_stored(gateway, thread, case):
    payload = wp.issue_comment(1, "Looks good.")
    body = wp.json.dumps(payload).encode()
    headers = {
        "missing": {"X-Hub-Signature-256": None, "X-Hub-Signature": None},
        "wrong secret": {"X-Hub-Signature-256": wp.signature("not-the-secret", body)},
        "other body": {"X-Hub-Signature-256": wp.signature(WEBHOOK_SECRET, body + b" ")},
        "sha1 only": {"X-Hub-Signature-256": None},
        "not hex": {"X-Hub-Signature-256": "sha256=" + "z" * 64},
        "empty secret": {"X-Hub-Signature-256": wp.signature("", body)},
    }[case]
    response = wp.deliver(gateway, "issue_comment", payload, "d-bad", body=body, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": {"status": 401, "message": "missing or invalid X-Hub-Signature-256"}}
    assert deliveries(gateway) == [] and event_jobs(gateway) == []
    gateway.run_jobs()
    assert gateway.sink.messages == []


def test_unsigned_ping_is_refused(gateway):
    response = wp.deliver(gateway, "ping", wp.ping(), secret=None)
    assert response.status_code == 401


def test_gateway_without_a_webhook_secret_refuses_every_delivery(gateway):
    gateway.ctx.settings = gateway.ctx.settings.replace(github_webhook_secret=None)
    response = wp.deliver(gateway, "ping", wp.ping(), secret="")
    assert response.status_code == 401
    assert deliveries(gateway) == []


@pytest.mark.parametrize("missing", ["X-GitHub-Event", "X-GitHub-Delivery"])
def test_signed_delivery_without_event_or_delivery_id_is_a_bad_request(gateway, missing):
    response = wp.deliver(gateway, "issue_comment", wp.issue_comment(1, "hi"), headers={missing: None})
    assert response.status_code == 400
    assert response.json() == {"error": {"status": 400, "message":
                                         "X-GitHub-Event and X-GitHub-Delivery headers are required"}}
    assert deliveries(gateway) == []


def test_signed_body_that_is_not_json_is_a_bad_request(gateway):
    response = wp.deliver(gateway, "issue_comment", {}, body=b"payload=%7B%7D",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "the payload is not valid JSON"
    assert deliveries(gateway) == []


def test_redelivery_has_no_second_effect(gateway, thread):
    payload = wp.issue_comment(1, "Looks good.")
    first = wp.deliver(gateway, "issue_comment", payload, "d-same")
    again_before_handling = wp.deliver(gateway, "issue_comment", payload, "d-same")
    assert first.status_code == 202
    assert again_before_handling.status_code == 200
    assert again_before_handling.json() == {"ok": True, "delivery": "d-same", "outcome": "duplicate"}
    gateway.run_jobs()
    again_after_handling = wp.deliver(gateway, "issue_comment", payload, "d-same")
    assert again_after_handling.status_code == 200 and again_after_handling.json()["outcome"] == "duplicate"
    gateway.run_jobs()

    assert len(gateway.sink.messages) == 1
    assert count(gateway, WebhookDelivery) == 1
    assert event_jobs(gateway) == [('{"delivery_id": "d-same"}', "done")]
    assert count(gateway, OutboundMail, OutboundMail.kind == "activity:comment") == 1


def test_a_handling_job_retried_after_a_crash_mails_nobody_twice(gateway, thread, monkeypatch):
    relay = github_events._relay_activity

    def relay_then_crash(*args):
        relay(*args)
        raise RuntimeError("the worker died right after relaying")

    monkeypatch.setattr(github_events, "_relay_activity", relay_then_crash)
    wp.deliver(gateway, "issue_comment", wp.issue_comment(1, "Looks good."), "d-crash")
    gateway.run_jobs()
    monkeypatch.undo()
    assert event_jobs(gateway) == [('{"delivery_id": "d-crash"}', "queued")]  # to be retried

    Worker(gateway.ctx.db, job_kinds(gateway.ctx), clock=lambda: utcnow() + timedelta(hours=1)).run_until_idle()
    assert event_jobs(gateway) == [('{"delivery_id": "d-crash"}', "done")]
    assert len(gateway.sink.messages) == 1
    assert deliveries(gateway)[0][3] == "relayed comment to 1 of 1 participant(s)"


def test_a_new_delivery_of_the_same_event_is_a_new_delivery(gateway, thread):
    """GitHub's "Redeliver" keeps the id; two different ids are two events (GitHub's contract)."""
    payload = wp.issue_comment(1, "Looks good.")
    deliver_and_run(gateway, "issue_comment", payload, "d-a")
    deliver_and_run(gateway, "issue_comment", payload, "d-b")
    assert len(gateway.sink.messages) == 2


# -- each event becomes the right mail in the right thread -----------------------------------------

COMMENT = "Thanks for the fix!\n\nOne nit: the footer still says 2025."


def _cases():
    comment = wp.issue_comment(1, COMMENT)
    review_comment = wp.pull_request_review_comment(1, "Typo here: `widgts`.", path="README.md", line=1)
    approved = wp.pull_request_review(1, "approved", "Ship it.")
    approved_silently = wp.pull_request_review(1, "approved", None)
    changes = wp.pull_request_review(1, "changes_requested", "Please add a test for the footer.")
    commented = wp.pull_request_review(1, "commented", "A few thoughts, nothing blocking.")
    merged = wp.pull_request("closed", 1, merged=True, merged_by=MAINTAINER)
    closed = wp.pull_request("closed", 1)
    reopened = wp.pull_request("reopened", 1)
    pull_url = f"https://github.com/{REPO}/pull/1"
    return [
        pytest.param("issue_comment", comment, "comment", f"{MAINTAINER} commented.", COMMENT,
                     comment["comment"]["html_url"], id="issue_comment"),
        pytest.param("pull_request_review_comment", review_comment, "review_comment",
                     f"{MAINTAINER} commented on the changes.", "Typo here: `widgts`.",
                     review_comment["comment"]["html_url"], id="review_comment"),
        pytest.param("pull_request_review", approved, "review", f"{MAINTAINER} approved these changes.",
                     "Ship it.", approved["review"]["html_url"], id="review_approved"),
        pytest.param("pull_request_review", approved_silently, "review", f"{MAINTAINER} approved these changes.",
                     None, approved_silently["review"]["html_url"], id="review_approved_without_summary"),
        pytest.param("pull_request_review", changes, "review", f"{MAINTAINER} requested changes.",
                     "Please add a test for the footer.", changes["review"]["html_url"], id="review_changes_requested"),
        pytest.param("pull_request_review", commented, "review", f"{MAINTAINER} reviewed.",
                     "A few thoughts, nothing blocking.", commented["review"]["html_url"], id="review_commented"),
        pytest.param("pull_request", merged, "merged", f"{MAINTAINER} merged the pull request.", None, pull_url,
                     id="merged"),
        pytest.param("pull_request", closed, "closed", f"{MAINTAINER} closed the pull request without merging.",
                     None, pull_url, id="closed"),
        pytest.param("pull_request", reopened, "reopened", f"{MAINTAINER} reopened the pull request.", None,
                     pull_url, id="reopened"),
    ]


@pytest.mark.parametrize("event, payload, kind, line, quote, url", _cases())
def test_each_event_reaches_the_reporter_in_the_thread(gateway, thread, event, payload, kind, line, quote, url):
    [mail] = deliver_and_run(gateway, event, payload, "d-1")
    assert_thread_mail(gateway, mail, thread)
    assert text_of(mail) == expected_text(line, quote=quote, url=url)
    html = mail.message.get_body(("html",)).get_content()
    assert line in html and f'<a href="{url}">' in html
    assert deliveries(gateway)[0][3] == f"relayed {kind} to 1 of 1 participant(s)"
    assert count(gateway, OutboundMail, OutboundMail.kind == f"activity:{kind}",
                 OutboundMail.status == "sent") == 1


def test_merged_names_who_merged_not_who_sent(gateway, thread):
    payload = wp.pull_request("closed", 1, sender="octo-admin", merged=True, merged_by=MAINTAINER)
    [mail] = deliver_and_run(gateway, "pull_request", payload)
    assert text_of(mail).startswith(f"{MAINTAINER} merged the pull request.\n")


def test_every_participant_gets_the_mail_and_later_mails_stay_in_the_thread(gateway, thread):
    """A second request for the same head reuses the PR and joins its thread."""
    status = gateway.open_pull_request(reporter=BOB)
    assert status["number"] == 1
    [bob_notification] = gateway.sink.clear()
    assert bob_notification.message["In-Reply-To"] == thread["Message-ID"]

    mails = deliver_and_run(gateway, "issue_comment", wp.issue_comment(1, COMMENT))
    assert sorted(m.recipients[0] for m in mails) == ["ann@example.com", "bob@example.com"]
    for mail in mails:
        assert_thread_mail(gateway, mail, thread, to=ANN if mail.recipients == ["ann@example.com"] else BOB)
    assert len({m.message["Message-ID"] for m in mails}) == 2

    gateway.sink.clear()
    [_ann, _bob] = deliver_and_run(gateway, "pull_request", wp.pull_request("closed", 1, merged=True))
    assert _ann.message["In-Reply-To"] == thread["Message-ID"] == _bob.message["In-Reply-To"]
    assert deliveries(gateway)[-1][3] == "relayed merged to 2 of 2 participant(s)"


def test_unsubscribed_participant_gets_nothing_the_others_still_do(gateway, thread):
    gateway.open_pull_request(reporter=BOB)
    gateway.sink.clear()
    with gateway.ctx.db.session() as s:
        s.scalars(select(Participant).where(Participant.email == "bob@example.com")).one().unsubscribed_at = utcnow()
    [mail] = deliver_and_run(gateway, "issue_comment", wp.issue_comment(1, COMMENT))
    assert mail.recipients == ["ann@example.com"]
    assert deliveries(gateway)[0][3] == "relayed comment to 1 of 2 participant(s)"


def test_repository_name_case_does_not_lose_the_thread(gateway):
    """The caller may spell the repo "Octo-Org/Widgets"; GitHub sends its canonical full_name."""
    status = gateway.open_pull_request(repo="Octo-Org/Widgets")
    assert status["status"] == "notified"
    [notification] = gateway.sink.clear()
    [mail] = deliver_and_run(gateway, "issue_comment", wp.issue_comment(1, COMMENT, repo=REPO))
    assert mail.message["In-Reply-To"] == notification.message["Message-ID"]
    assert mail.message["Subject"] == "Re: " + notification.message["Subject"] == "Re: [Widgets] PR ready: " \
                                                                                  "Fix the typo in the README"


# -- acknowledged and ignored ---------------------------------------------------------------------

def test_event_on_a_pr_without_a_thread_is_acknowledged_and_ignored(gateway, thread):
    gateway.emulator.create_branch(REPO, "human-work", files={"x.txt": "x\n"})
    pull = gateway.emulator.add_pull_as(REPO, "someone", "human-work", "main", "A human PR")
    assert pull["number"] == 2
    response = wp.deliver(gateway, "issue_comment", wp.issue_comment(2, "LGTM"), "d-2")
    assert response.status_code == 202
    gateway.run_jobs()
    assert gateway.sink.messages == []
    assert deliveries(gateway) == [("d-2", "issue_comment", "created", f"ignored: {REPO}#2 has no mail thread")]
    assert event_jobs(gateway) == [('{"delivery_id": "d-2"}', "done")]


@pytest.mark.parametrize("event, payload, outcome", [
    ("issue_comment", wp.issue_comment(1, "An issue, not a PR", on_pull_request=False),
     "ignored: issue_comment.created is not relayed"),
    ("issue_comment", wp.issue_comment(1, "edited text", action="edited"),
     "ignored: issue_comment.edited is not relayed"),
    ("issue_comment", wp.issue_comment(1, "gone", action="deleted"), "ignored: issue_comment.deleted is not relayed"),
    ("pull_request_review", wp.pull_request_review(1, "commented", ""),
     "ignored: pull_request_review.submitted is not relayed"),
    ("pull_request_review", wp.pull_request_review(1, "approved", "ok", action="dismissed"),
     "ignored: pull_request_review.dismissed is not relayed"),
    ("pull_request", wp.pull_request("synchronize", 1), "ignored: pull_request.synchronize is not relayed"),
    ("push", {"ref": "refs/heads/main", "repository": wp.repository(), "sender": wp.user(MAINTAINER)},
     "ignored: push.None is not relayed"),
], ids=["issue_not_pr", "edited", "deleted", "review_only_line_comments", "review_dismissed", "synchronize", "push"])
def test_events_that_are_not_relayed_are_stored_and_ignored(gateway, thread, event, payload, outcome):
    response = wp.deliver(gateway, event, payload, "d-x")
    assert response.status_code == 202
    gateway.run_jobs()
    assert gateway.sink.messages == []
    assert deliveries(gateway)[0][3] == outcome


def test_revoked_thread_gets_no_more_mail(gateway, thread):
    with gateway.ctx.db.session() as s:
        s.scalars(select(Thread)).one().revoked_at = utcnow()
    response = wp.deliver(gateway, "issue_comment", wp.issue_comment(1, COMMENT), "d-r")
    assert response.status_code == 202
    gateway.run_jobs()
    assert gateway.sink.messages == []
    assert deliveries(gateway)[0][3] == f"ignored: the mail thread of {REPO}#1 was revoked"


# -- never echoed: the gateway's own doing --------------------------------------------------------

def test_the_bots_own_comment_of_a_reply_is_not_echoed(gateway, thread):
    """The full loop: a reply becomes a bot comment; GitHub's event for it must not come back as mail."""
    code, _ = gateway.send_mail(mail_clients.gmail(thread, "Works for me now."), mail_from="ann@example.com",
                                to=[thread["Reply-To"]])
    assert code == 250
    gateway.run_jobs()
    [receipt] = gateway.sink.clear()
    assert "Your reply was posted as a comment" in text_of(receipt)
    [posted] = gateway.emulator.comments(REPO, 1)
    assert posted["user"]["login"] == BOT and posted["performed_via_github_app"]["slug"] == "gateway-test"

    response = wp.deliver(gateway, "issue_comment", wp.issue_comment_from(posted, 1), "d-echo")
    assert response.status_code == 202
    gateway.run_jobs()
    assert gateway.sink.messages == []
    assert deliveries(gateway)[0][3] == "ignored: caused by the gateway itself"


@pytest.mark.parametrize("event, payload", [
    ("issue_comment", wp.issue_comment(1, "Posted by the App.", login=BOT)),
    ("issue_comment", wp.issue_comment(1, "Posted by the App.", login=BOT.upper())),
    ("issue_comment", wp.issue_comment(1, "**Ann** via email:\n\nhi\n\n<!-- gateway:inbound:abc:1 -->",
                                       login="someone-else")),
    ("issue_comment", wp.issue_comment(1, "On behalf of a user, via the App.", login="ann-gh", via_app=wp.app())),
    ("pull_request_review_comment", wp.pull_request_review_comment(1, "via the App", login="ann-gh",
                                                                   via_app=wp.app())),
    ("pull_request_review", wp.pull_request_review(1, "commented", "The App reviewed.", login=BOT)),
    ("pull_request", wp.pull_request("closed", 1, sender=BOT, merged=True)),
    ("pull_request", wp.pull_request("reopened", 1, sender=BOT)),
], ids=["bot_login", "bot_login_other_case", "marker", "performed_via_app", "review_comment_via_app",
        "bot_review", "merged_by_bot", "reopened_by_bot"])
def test_nothing_the_gateway_caused_is_relayed(gateway, thread, event, payload):
    response = wp.deliver(gateway, event, payload, "d-own")
    assert response.status_code == 202
    gateway.run_jobs()
    assert gateway.sink.messages == []
    assert deliveries(gateway)[0][3] == "ignored: caused by the gateway itself"


def test_a_comment_via_another_app_is_relayed(gateway, thread):
    other = wp.app(app_id=1, slug="dependabot")
    [mail] = deliver_and_run(gateway, "issue_comment", wp.issue_comment(1, "Bumped.", login="dependabot[bot]",
                                                                      via_app=other))
    assert text_of(mail).startswith("dependabot[bot] commented.\n")


# -- merging is human-only -----------------------------------------------------------------------

def test_a_merge_command_in_a_comment_is_relayed_and_never_merges(gateway, thread):
    for text in ("/merge", "@gateway-test merge please", "Please merge this."):
        deliver_and_run(gateway, "issue_comment", wp.issue_comment(1, text, login="ann-gh"))
    pull = gateway.emulator.pull(REPO, 1)
    assert (pull["state"], pull["merged"]) == ("open", False)
    assert count_requests(gateway.emulator, "PUT", "/merge") == 0
    assert len(gateway.sink.messages) == 3
    assert all(o.startswith("relayed comment") for *_, o in deliveries(gateway))


# -- installation: suspend, unsuspend, deleted ----------------------------------------------------

def cached_tokens(gateway) -> list[int]:
    with gateway.ctx.db.session() as s:
        return list(s.scalars(select(InstallationToken.installation_id)))


def installation_row(gateway, installation_id: int = INSTALLATION_ID):
    with gateway.ctx.db.session() as s:
        row = s.get(Installation, installation_id)
        return None if row is None else (row.account, row.suspended_at is not None, row.suspended_reason)


def reply_jobs(gateway) -> list[tuple[str, int | None]]:
    with gateway.ctx.db.session() as s:
        return [(j.status, j.installation_id) for j in s.scalars(select(Job).where(Job.kind == "process_reply"))]


def test_suspend_purges_tokens_and_pauses_the_installations_jobs_until_unsuspend(gateway, thread):
    assert cached_tokens(gateway) == [INSTALLATION_ID]
    response = wp.deliver(gateway, "installation", wp.installation("suspend", sender="octo-admin"), "d-s")
    assert response.status_code == 202
    gateway.run_jobs()
    assert cached_tokens(gateway) == []
    assert installation_row(gateway) == ("octo-org", True, "the installation was suspended by octo-admin")
    assert deliveries(gateway)[0][3] == "paused: the installation was suspended by octo-admin"

    # A reply arrives meanwhile: accepted and stored, but its job waits.
    code, _ = gateway.send_mail(mail_clients.gmail(thread, "Still broken on Safari."), mail_from="ann@example.com",
                                to=[thread["Reply-To"]])
    assert code == 250
    assert gateway.run_jobs() == 0
    assert reply_jobs(gateway) == [("queued", INSTALLATION_ID)]
    assert gateway.emulator.comments(REPO, 1) == [] and gateway.sink.messages == []
    assert cached_tokens(gateway) == []

    # Jobs of other installations are not held up.
    with gateway.ctx.db.session() as s:
        s.add(Job(kind="handle_github_event", payload='{"delivery_id": "none"}', installation_id=12345))
    assert gateway.run_jobs() == 1

    response = wp.deliver(gateway, "installation", wp.installation("unsuspend"), "d-u")
    assert response.status_code == 202
    gateway.run_jobs()
    assert installation_row(gateway) == ("octo-org", False, None)
    assert deliveries(gateway)[1][3] == "resumed"
    assert reply_jobs(gateway) == [("done", INSTALLATION_ID)]
    [comment] = gateway.emulator.comments(REPO, 1)
    assert "Still broken on Safari." in comment["body"]
    [receipt] = gateway.sink.messages
    assert "Your reply was posted as a comment" in text_of(receipt)
    assert cached_tokens(gateway) == [INSTALLATION_ID]


def test_uninstalling_the_app_purges_tokens_and_pauses_with_a_reason(gateway, thread):
    response = wp.deliver(gateway, "installation", wp.installation("deleted"), "d-del")
    assert response.status_code == 202
    gateway.run_jobs()
    assert cached_tokens(gateway) == []
    assert installation_row(gateway) == ("octo-org", True, "the App was uninstalled")
    gateway.send_mail(mail_clients.gmail(thread, "Hello?"), mail_from="ann@example.com", to=[thread["Reply-To"]])
    assert gateway.run_jobs() == 0
    assert reply_jobs(gateway) == [("queued", INSTALLATION_ID)]


def test_suspending_another_installation_touches_nothing_of_ours(gateway, thread):
    deliver_and_run(gateway, "installation", wp.installation("suspend", installation_id=555, account="other"), "d-o")
    assert cached_tokens(gateway) == [INSTALLATION_ID]
    assert installation_row(gateway)[1:] == (False, None)
    assert installation_row(gateway, 555) == ("other", True, "the installation was suspended by octo-admin")
    gateway.send_mail(mail_clients.gmail(thread, "Hi"), mail_from="ann@example.com", to=[thread["Reply-To"]])
    gateway.run_jobs()
    assert reply_jobs(gateway) == [("done", INSTALLATION_ID)]


def test_a_pr_request_for_a_suspended_installation_waits_until_unsuspend(gateway):
    deliver_and_run(gateway, "installation", wp.installation("suspend"), "d-s")
    gateway.emulator.create_branch(REPO, "fix-typo", files={"README.md": "# widgets, fixed\n"})
    response = gateway.api("POST", "/api/pull-requests", json={
        "repo": REPO, "head": "fix-typo", "title": "Fix", "reporter_email": ANN})
    assert response.status_code == 202
    gateway.run_jobs()
    assert gateway.emulator.pulls(REPO) == []
    status = gateway.api("GET", f"/api/pull-requests/{response.json()['id']}").json()
    assert status["status"] == "queued"
    with gateway.ctx.db.session() as s:
        job = s.scalars(select(Job).where(Job.kind == "open_pull_request")).one()
        assert (job.status, job.installation_id) == ("queued", INSTALLATION_ID)
    deliver_and_run(gateway, "installation", wp.installation("unsuspend"), "d-u")
    assert [p["number"] for p in gateway.emulator.pulls(REPO)] == [1]


def test_other_installation_actions_are_acknowledged(gateway):
    deliver_and_run(gateway, "installation", wp.installation("new_permissions_accepted"), "d-p")
    assert deliveries(gateway)[0][3] == "ignored: installation.new_permissions_accepted"
    assert installation_row(gateway) == ("octo-org", False, None)


def test_reinstalling_after_uninstall_resumes(gateway):
    deliver_and_run(gateway, "installation", wp.installation("deleted"), "d-del")
    deliver_and_run(gateway, "installation", wp.installation("created"), "d-new")
    assert [o for *_, o in deliveries(gateway)] == ["paused: the App was uninstalled", "resumed"]
    assert installation_row(gateway) == ("octo-org", False, None)
