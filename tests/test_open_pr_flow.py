"""Flow 1 end to end: HTTP request → PR in the emulator → notification in the SMTP sink."""
import subprocess
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import func, select

from gateway.queue import Worker
from gateway.flows import job_kinds
from gateway.store import Job, OutboundMail, PullRequestRequest, Thread, utcnow
from tests.support.harness import API_TOKEN, INSTALLATION_ID, REPO


def later(hours=2):
    return lambda: utcnow() + timedelta(hours=hours)


def count(db, model, *where):
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_request_opens_pr_and_mails_reporter_a_signed_notification(gateway):
    gateway.emulator.create_branch(REPO, "fix-typo", files={"README.md": "# widgets, fixed\n"})
    response = gateway.api("POST", "/api/pull-requests", json={
        "repo": REPO, "head": "fix-typo", "title": "Fix the typo", "body": "Agent-made fix.",
        "reporter_email": "Ann Reporter <Ann@Example.com>"})
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "queued" and accepted["url"].endswith(f"/api/pull-requests/{accepted['id']}")

    assert gateway.run_jobs() == 2  # open the PR, deliver the mail
    status = gateway.api("GET", f"/api/pull-requests/{accepted['id']}").json()
    assert status["status"] == "notified" and status["number"] == 1 and status["base"] == "main"

    [pull] = gateway.emulator.pulls(REPO)
    assert (pull["title"], pull["head"]["ref"], pull["base"]["ref"]) == ("Fix the typo", "fix-typo", "main")
    assert pull["user"]["login"].endswith("[bot]")
    assert status["pr_url"] == pull["html_url"]

    [mail] = gateway.sink.wait_for(1)
    assert mail.recipients == ["ann@example.com"]
    message = message_from_bytes(mail.raw, policy=policy.default)
    assert message["Subject"] == "[widgets] PR ready: Fix the typo"
    assert message["To"] == "Ann Reporter <ann@example.com>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert "<" in message["List-Id"]
    tokens = gateway.ctx.tokens
    with gateway.ctx.db.session() as s:
        thread_id = s.scalars(select(Thread.id)).one()
    assert tokens.verify_address(message["Reply-To"]) == thread_id
    assert tokens.verify_message_id(message["Message-ID"]) == thread_id
    assert tokens.verify_headers(message["X-Gateway-Thread"], message["X-Gateway-Sig"],
                                 message["X-Gateway-Sig-Ts"]) == thread_id
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert pull["html_url"] in text and pull["html_url"] in html
    assert "Reply to this email to comment on the pull request" in text


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_TOKEN}"}])
def test_api_refuses_missing_or_wrong_token(gateway, headers):
    response = gateway.api("POST", "/api/pull-requests", token=None, headers=headers, json={})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "missing or invalid bearer token"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_invalid_request_names_every_bad_field_and_stores_nothing(gateway):
    response = gateway.api("POST", "/api/pull-requests", json={
        "repo": "not-a-repo", "head": "bad..ref", "title": "", "reporter_email": "nobody",
        "installation_id": "7", "source": {"url": "ext::sh -c evil", "ref": "x"}, "colour": "blue"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["message"] == "invalid request"
    assert set(error["fields"]) == {"repo", "head", "title", "reporter_email", "installation_id", "source.url",
                                    "colour"}
    assert error["fields"]["repo"] == 'must be "owner/name"'
    assert count(gateway.ctx.db, PullRequestRequest) == 0


def test_non_json_body_is_a_clear_error(gateway):
    response = gateway.api("POST", "/api/pull-requests", data="repo=x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415 and "application/json" in response.json()["error"]["message"]
    response = gateway.api("POST", "/api/pull-requests", data="{oops", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["message"] == "request body is not valid JSON"


@pytest.mark.parametrize("field, secret", [
    ("title", "ghp_" + "A1b2" * 9),
    ("body", "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----"),
    ("body", "creds: AKIAIOSFODNN7EXAMPLE"),
    ("body", "github_pat_11AAAAAAA0_" + "x" * 50),
])
def test_secret_in_title_or_body_is_refused_and_not_stored(gateway, field, secret):
    request = {"repo": REPO, "head": "fix", "title": "Fix", "body": "ok", "reporter_email": "a@example.com"}
    request[field] = request[field] + " " + secret
    response = gateway.api("POST", "/api/pull-requests", json=request)
    assert response.status_code == 422
    assert "looks like" in response.json()["error"]["fields"][field]
    assert secret not in response.text
    assert count(gateway.ctx.db, PullRequestRequest) == 0


def test_same_idempotency_key_returns_the_same_answer_and_one_pr(gateway):
    gateway.emulator.create_branch(REPO, "fix-typo", files={"a.txt": "a\n"})
    request = {"repo": REPO, "head": "fix-typo", "title": "Fix", "reporter_email": "ann@example.com"}
    first = gateway.api("POST", "/api/pull-requests", json=request, headers={"Idempotency-Key": "k-1"})
    second = gateway.api("POST", "/api/pull-requests", json=request, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"] and second.headers["Idempotent-Replayed"] == "true"
    gateway.run_jobs()
    third = gateway.api("POST", "/api/pull-requests", json=request, headers={"Idempotency-Key": "k-1"})
    assert third.json()["id"] == first.json()["id"] and third.json()["status"] == "notified"
    assert len(gateway.emulator.pulls(REPO)) == 1 and count(gateway.ctx.db, Job) == 2

    other = gateway.api("POST", "/api/pull-requests", json={**request, "title": "Other"},
                        headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 422
    assert other.json()["error"]["fields"] == {"Idempotency-Key": "was already used for a different request"}


def test_open_pr_with_same_head_and_base_is_reused(gateway):
    gateway.emulator.create_branch(REPO, "fix-typo", files={"a.txt": "a\n"})
    existing = gateway.emulator.add_pull_as(REPO, "octocat", head="fix-typo", base="main", title="Human PR")
    status = gateway.open_pull_request(head="fix-typo")
    assert status["status"] == "notified" and status["number"] == existing["number"]
    assert len(gateway.emulator.pulls(REPO)) == 1


@pytest.mark.parametrize("setup, request_extra, reason", [
    (lambda emu: None, {"head": "no-such-branch"}, "Branch 'no-such-branch' not found"),
    (lambda emu: emu.add_repo("octo-org/elsewhere"), {"repo": "octo-org/elsewhere", "head": "main"},
     "not installed on octo-org/elsewhere"),
    (lambda emu: (emu.add_repo("ro-org/widgets"), emu.create_branch("ro-org/widgets", "fix", files={"a": "b"}),
                  emu.add_installation(installation_id=7, account="ro-org", repositories=["ro-org/widgets"],
                                       permissions={"pull_requests": "read", "contents": "read"})),
     {"repo": "ro-org/widgets", "head": "fix"}, "Permission denied"),
])
def test_failure_gives_a_reason_a_person_can_act_on(gateway, setup, request_extra, reason):
    setup(gateway.emulator)
    request = {"repo": REPO, "title": "Fix", "reporter_email": "ann@example.com", **request_extra}
    accepted = gateway.api("POST", "/api/pull-requests", json=request).json()
    gateway.run_jobs()
    status = gateway.api("GET", f"/api/pull-requests/{accepted['id']}").json()
    assert status["status"] == "failed"
    assert reason in status["failure_reason"]
    assert "ghs_" not in status["failure_reason"]
    assert gateway.sink.messages == []


def test_github_outage_is_retried_and_reported_while_retrying(gateway):
    gateway.emulator.create_branch(REPO, "fix-typo", files={"a.txt": "a\n"})
    gateway.emulator.faults.inject("5xx", path_regex=r"/pulls$", method="POST", times=1)
    accepted = gateway.api("POST", "/api/pull-requests", json={
        "repo": REPO, "head": "fix-typo", "title": "Fix", "reporter_email": "ann@example.com"}).json()
    gateway.run_jobs()
    status = gateway.api("GET", f"/api/pull-requests/{accepted['id']}").json()
    assert status["status"] == "opening" and "retrying" in status
    Worker(gateway.ctx.db, job_kinds(gateway.ctx), clock=later()).run_until_idle()
    status = gateway.api("GET", f"/api/pull-requests/{accepted['id']}").json()
    assert status["status"] == "notified" and len(gateway.emulator.pulls(REPO)) == 1


def test_branch_is_mirrored_from_a_source_remote(gateway, tmp_path):
    """The agent cloned the repository somewhere else and committed; the gateway pushes its branch."""
    source = tmp_path / "agent-work"
    subprocess.run(["git", "clone", "-q", f"{gateway.emulator.url}/{REPO}.git", str(source)], check=True,
                   capture_output=True)
    (source / "fix.py").write_text("print('fixed')\n")
    run = lambda *args: subprocess.run(["git", *args], cwd=source, check=True, capture_output=True)
    run("add", ".")
    run("-c", "user.name=Agent", "-c", "user.email=agent@example.com", "commit", "-qm", "Fix")
    status = gateway.open_pull_request(head="agent-fix", source={"url": str(source), "ref": "main"})
    assert status["status"] == "notified", status
    pushed = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, check=True, capture_output=True, text=True)
    assert gateway.emulator.branch_sha(REPO, "agent-fix") == pushed.stdout.strip()
    assert gateway.emulator.pulls(REPO)[0]["head"]["ref"] == "agent-fix"


def test_relay_4xx_is_retried_and_5xx_dead_letters_the_mail(gateway):
    gateway.sink.fail_next("451 4.3.0 try later", stage="DATA")
    status = gateway.open_pull_request(head="one")
    assert status["status"] == "opened"  # the mail waits for its retry
    Worker(gateway.ctx.db, job_kinds(gateway.ctx), clock=later()).run_until_idle()
    assert len(gateway.sink.messages) == 1
    assert gateway.api("GET", f"/api/pull-requests/{status['id']}").json()["status"] == "notified"

    gateway.sink.fail_next("550 5.1.1 no such user", stage="RCPT")
    gateway.open_pull_request(head="two", reporter="gone@example.com")
    with gateway.ctx.db.session() as s:
        mail = s.scalars(select(OutboundMail).where(OutboundMail.recipient == "gone@example.com")).one()
        assert mail.status == "dead" and "550" in mail.last_error
    assert len(gateway.sink.messages) == 1


def test_restarted_worker_finishes_a_half_done_job_without_a_second_pr(gateway):
    gateway.emulator.create_branch(REPO, "fix-typo", files={"a.txt": "a\n"})
    accepted = gateway.api("POST", "/api/pull-requests", json={
        "repo": REPO, "head": "fix-typo", "title": "Fix", "reporter_email": "ann@example.com"}).json()
    # A worker claims the job, opens the PR on GitHub, and dies before recording anything.
    crashed = Worker(gateway.ctx.db, [], worker_id="crashed")
    assert crashed.claim() is not None
    gateway.ctx.github.open_or_reuse_pull_request(INSTALLATION_ID, REPO, head="fix-typo", base="main",
                                                  title="Fix", body="")
    assert gateway.run_jobs() == 0  # its lease still holds
    restarted = Worker(gateway.ctx.db, job_kinds(gateway.ctx), worker_id="restarted", clock=later(1))
    assert restarted.run_until_idle() == 2
    status = gateway.api("GET", f"/api/pull-requests/{accepted['id']}").json()
    assert status["status"] == "notified"
    assert len(gateway.emulator.pulls(REPO)) == 1 and len(gateway.sink.messages) == 1


def test_unknown_request_id_is_404_json(gateway):
    response = gateway.api("GET", "/api/pull-requests/nope")
    assert response.status_code == 404 and "nope" in response.json()["error"]["message"]


def test_health_reports_each_dependency(gateway):
    response = gateway.api("GET", "/health", token=None)
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    assert checks["database"]["ok"] and checks["relay"]["ok"]
    assert checks["github"]["state"] == "emulated"
    gateway.sink.stop()
    gateway.ctx.relay  # same relay, now unreachable
    from gateway.flows.health import HealthChecks

    healthy, report = HealthChecks(gateway.ctx, cache_seconds=0).report()
    assert not healthy and not report["checks"]["relay"]["ok"] and report["status"] == "unavailable"


def test_requests_spelling_the_repo_differently_share_the_pr_and_its_thread(gateway):
    """GitHub repository names are case-insensitive, so the thread of a PR is too."""
    first = gateway.open_pull_request(head="fix-typo", reporter="ann@example.com")
    second = gateway.open_pull_request(head="fix-typo", reporter="bob@example.com", repo="Octo-Org/Widgets")
    assert first["number"] == second["number"] == 1 and second["status"] == "notified"
    with gateway.ctx.db.session() as s:
        from gateway.store import Participant

        assert count(gateway.ctx.db, Thread) == 1
        assert sorted(s.scalars(select(Participant.email))) == ["ann@example.com", "bob@example.com"]
