"""Exactly once, whatever fails: what the gateway answered 250 or 202 to happens once.

The gateway runs as real child processes (tests/support/processes.py: `gateway serve|smtp|worker|
web`, configured by environment only) against a GitHub emulator and an SMTP sink that live in this
process, so GitHub's and the relay's memory (what was really posted and sent) survives a SIGKILL of
the gateway. Each test drives real traffic through the fault, waits with a deadline until every
effect is there and no job is left queued or running, then counts the effects where they land:
comments and pull requests on the emulator, mails at the sink.

The clients behave as real ones must when a connection dies:
- SMTP: a message whose DATA got no final reply is *unknown* (it may or may not have been stored);
  like an MTA, the client sends the same bytes again (same Message-ID) once it can connect again.
  A 4xx reply is tried again, a 5xx reply is final.
- HTTP: a request that got no answer is sent again with the same Idempotency-Key.
So every message and request ends with a final answer, and every one answered 250/202 must have
its effect exactly once: a comment, a receipt, a pull request, a notification.

One thing no SMTP client can make exactly-once is a hand-over to the relay: if the gateway dies
(or the relay connection drops) after the relay's 250 and before the gateway recorded "sent", the
mail is sent again, with the same Message-ID (receivers de-duplicate on it). The tests tolerate a
second copy of the *same* Message-ID only for a mail whose delivery really was attempted more than
once (outbound_mails.attempts > 1), and report how many there were; two *different* receipts or
notifications for one reply or request always fail.
"""
from __future__ import annotations

import os
import random
import signal
import re
import smtplib
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest
import requests
import urllib3
from sqlalchemy import func, select

from gateway.flows.retention import JOB as PRUNE_JOB
from gateway.signing import ReplyTokens
from gateway.store import Database, InboundMessage, Job, OutboundMail, PullRequestRequest
from tests.support import mail_clients
from tests.support.databases import POSTGRES_URL, migrated_database
from tests.support.harness import REPO
from tests.support.processes import GatewayProcess, free_port, gateway_environment, start_emulator
from tests.support.smtp_sink import SmtpSink

# Settings that keep a test's recovery in seconds: a killed worker's job is re-claimed after 3 s,
# retries wait at most 2 s, idle workers look for work every 0.1 s, writes are not paced (the
# emulator's content limits are off too, except where a test turns them on).
FAST = {
    "GATEWAY_JOB_LEASE_SECONDS": "3",
    "GATEWAY_JOB_BACKOFF_CAP_SECONDS": "2",
    "GATEWAY_WORKER_POLL_SECONDS": "0.1",
    "GATEWAY_WORKER_THREADS": "2",
    "GATEWAY_GITHUB_WRITE_LIMITS": "off",
    "GATEWAY_LOG_LEVEL": "INFO",
}
NO_ANSWER = "no answer"
RCPT_REFUSED = "550 5.1.1 Recipient address rejected"
DATA_REFUSED = "550 5.7.1 Sender not allowed for this conversation"
REPORTERS = ["Ann Reporter <ann@example.com>", "Bob Builder <bob@example.com>",
             "Cat Checker <cat@example.com>", "Dan Debugger <dan@example.com>"]
KEY = re.compile(r"\bdur(\d{4})x\b")  # the unique word in each reply's text


# -- the stack: emulator and sink here, the gateway in child processes -----------------------------

class Stack:
    def __init__(self, tmp_path: Path, db: Database):
        self.tmp = tmp_path
        self.db = db
        self.emulator = start_emulator()
        self.emulator.set_content_limits(None)  # GitHub's content limits: off unless a test wants them
        self.sink = SmtpSink().start()
        self.http_port, self.smtp_port = free_port(), free_port()
        self.processes: list[GatewayProcess] = []

    def env(self, **overrides: str) -> dict[str, str]:
        ports = {"GATEWAY_HTTP_PORT": str(self.http_port), "GATEWAY_SMTP_PORT": str(self.smtp_port)}
        return gateway_environment(database_url=self.db.url, data_dir=self.tmp, emulator_url=self.emulator.url,
                                   relay_url=self.sink.url, **{**ports, **FAST, **overrides})

    def start(self, command: str, name: str | None = None, *, args: tuple[str, ...] = (),
              **overrides: str) -> GatewayProcess:
        process = GatewayProcess([command, *args], self.env(**overrides), self.tmp / f"{name or command}.log")
        self.processes.append(process)
        return process.start()

    def restart(self, process: GatewayProcess) -> GatewayProcess:
        """SIGKILL, then the same command with the same environment, as a supervisor would."""
        process.kill()
        again = GatewayProcess(process.command, process.env, process.log_path)
        self.processes[self.processes.index(process)] = again
        return again.start()

    def kill_after_github_acted(self, process: GatewayProcess, path_regex: str) -> GatewayProcess:
        """SIGKILL at the worst moment, then restart: GitHub has carried out a POST whose answer the
        emulator is still holding back, so the gateway dies with the effect done and not recorded."""
        held = self.emulator.faults.inject("timeout", path_regex, method="POST", times=None, seconds=2)
        self.wait_until(f"a POST {path_regex} under way", lambda: held.hits >= 1, 15)
        time.sleep(0.2)  # carried out by now; its answer waits 2 s
        process.kill()
        held.times = held.hits  # disarmed: after the restart GitHub answers at once again
        return self.restart(process)

    def kill_after_relay_accepted(self, process: GatewayProcess) -> GatewayProcess:
        """SIGKILL, then restart, while the relay holds a mail it has taken but not yet answered 250 to."""
        before = self.sink.held
        self.sink.hold_next(2.0)
        self.wait_until("a mail handed to the relay", lambda: self.sink.held > before, 15)
        time.sleep(0.2)
        process.kill()
        return self.restart(process)

    def logs(self, lines: int = 60) -> str:
        parts = []
        for path in sorted({p.log_path for p in self.processes}):
            text = path.read_text(errors="replace") if path.exists() else ""
            tail = [line for line in text.splitlines()  # not the access or SMTP session logs
                    if " werkzeug " not in line and " mail.log " not in line][-lines:]
            parts.append(f"--- {path.name} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(parts)

    # The jobs the traffic caused. Not the hourly history pruning (flows.retention), which every
    # worker process queues as it starts and which always has its next run queued: it posts and
    # mails nothing.
    def unfinished_jobs(self) -> list[tuple[int, str, str, int, str | None]]:
        with self.db.session() as session:
            return [(j.id, j.kind, j.status, j.attempts, j.last_error) for j in session.scalars(
                select(Job).where(Job.status.in_(("queued", "running")), Job.kind != PRUNE_JOB).order_by(Job.id))]

    def jobs(self) -> list[Job]:
        with self.db.session() as session:
            return list(session.scalars(select(Job).where(Job.kind != PRUNE_JOB).order_by(Job.id)))

    def wait_until(self, what, predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                what = what() if callable(what) else what
                pytest.fail(f"{what}: not within {timeout:g} s\nunfinished jobs: {self.unfinished_jobs()}\n"
                            + self.logs())
            time.sleep(0.1)

    def wait_drained(self, what, effects_done, timeout: float) -> None:
        """Until every expected effect is visible and no job is left that could add one."""
        self.wait_until(what, lambda: effects_done() and not self.unfinished_jobs(), timeout)

    def close(self) -> None:
        for process in self.processes:
            process.kill()
        self.sink.stop()
        self.emulator.stop()


@pytest.fixture
def stack(tmp_path):
    db, close_db = migrated_database(tmp_path)
    stack = Stack(tmp_path, db)
    yield stack
    stack.close()
    close_db()


# -- SMTP clients that behave like an MTA ---------------------------------------------------------

@dataclass
class Letter:
    index: int
    raw: bytes
    mail_from: str
    rcpt: str
    message_id: str
    expect: str  # "accept", or the exact refusal expected
    answers: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"dur{self.index:04d}x"

    @property
    def final(self) -> str | None:
        finals = [a for a in self.answers if a != NO_ANSWER and not a.startswith("4")]
        return finals[-1] if finals else None

    @property
    def accepted(self) -> bool:
        return (self.final or "").startswith("250")


def reply_letter(index: int, notification, *, sender: str, to: str | None = None, expect: str = "accept",
                 mail_from: str | None = None) -> Letter:
    text = f"Reply {index}: checked the branch, dur{index:04d}x is fine."
    message = mail_clients.gmail(notification, text, sender=sender)
    rcpt = to or notification["Reply-To"]
    if to:
        message.replace_header("To", to)
    raw = re.sub(rb"(?<!\r)\n", b"\r\n", message.as_bytes(policy=SMTP_POLICY))
    address = mail_from or re.search(r"<([^>]+)>", sender).group(1)
    return Letter(index, raw, address, rcpt, message["Message-ID"].strip("<>"), expect)


def forged_address(reply_to: str) -> str:
    """The same thread and time, one character of the signature changed."""
    local, domain = reply_to.split("@")
    prefix, signature = local.rsplit(".", 1)
    return f"{prefix}.{signature[:-1]}{'b' if signature[-1] == 'a' else 'a'}@{domain}"


def send_letters(port: int, letters: list[Letter], deadline: float, on_final, errors: list[str]) -> None:
    """One client connection at a time; reconnects after a dead connection and resends what is unknown."""
    pending = deque(letters)
    smtp: smtplib.SMTP | None = None
    used = 0
    try:
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} messages still unsent at the deadline")
            letter = pending[0]
            in_data = False
            try:
                if smtp is None or used >= 40:  # aiosmtpd allows 100 commands per verb and connection
                    _quit(smtp)
                    smtp, used = smtplib.SMTP("127.0.0.1", port, timeout=30), 0
                    smtp.ehlo("client.example.org")
                used += 1
                code, text = smtp.mail(letter.mail_from)
                if code == 250:
                    code, text = smtp.rcpt(letter.rcpt)
                if code == 250:
                    in_data = True
                    try:
                        code, text = smtp.data(letter.raw)
                    except smtplib.SMTPDataError as exc:
                        code, text = exc.smtp_code, exc.smtp_error
            except OSError:  # refused, reset, closed: smtplib's errors are OSErrors too
                if in_data:
                    letter.answers.append(NO_ANSWER)
                _quit(smtp, polite=False)
                smtp = None
                time.sleep(0.05)
                continue
            letter.answers.append(f"{code} {text.decode(errors='replace')}")
            if 400 <= code < 500:
                time.sleep(0.1)
            else:
                pending.popleft()
                on_final(letter)
            if code != 250 or not in_data:
                try:
                    smtp.rset()
                except OSError:
                    _quit(smtp, polite=False)
                    smtp = None
        _quit(smtp)
    except Exception as exc:  # reported by the test, which must not hang on a dead thread
        errors.append(f"{type(exc).__name__}: {exc}")


def _quit(smtp: smtplib.SMTP | None, polite: bool = True) -> None:
    if smtp is None:
        return
    try:
        smtp.quit() if polite else smtp.close()
    except OSError:
        smtp.close()


class Burst:
    """Client threads sending letters; counts final answers so a test can act in the middle."""

    def __init__(self, ports: list[int], letters: list[Letter], clients: int, timeout: float):
        self.letters = letters
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self.accepted = 0
        deadline = time.monotonic() + timeout
        shares = [letters[k::clients] for k in range(clients)]
        self.threads = [threading.Thread(target=send_letters, name=f"smtp-client-{k}",
                                         args=(ports[k % len(ports)], share, deadline, self._final, self.errors))
                        for k, share in enumerate(shares)]

    def _final(self, letter: Letter) -> None:
        if letter.accepted:
            with self._lock:
                self.accepted += 1

    def start(self) -> "Burst":
        for thread in self.threads:
            thread.start()
        return self

    def wait_accepted(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.accepted < count and any(t.is_alive() for t in self.threads):
            assert time.monotonic() < deadline, f"only {self.accepted} accepted, expected {count}"
            time.sleep(0.005)

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "SMTP clients still running"
        assert self.errors == []


# -- opening threads through the API --------------------------------------------------------------

def post_pull_request(gateway: GatewayProcess, head: str, reporter: str, *, key: str | None = None,
                      deadline: float | None = None) -> tuple[list[str], dict]:
    """POST until a final answer; (every answer's summary, the final JSON)."""
    deadline = deadline or time.monotonic() + 30
    headers = {"Idempotency-Key": key} if key else {}
    body = {"repo": REPO, "head": head, "title": f"Change on {head}", "body": f"Agent-made change {head}.",
            "reporter_email": reporter}
    answers = []
    while True:
        assert time.monotonic() < deadline, f"no answer for {head}: {answers}"
        try:
            response = gateway.api("POST", "/api/pull-requests", json=body, headers=headers, timeout=10)
        except requests.RequestException as exc:
            if _never_connected(exc):  # the gateway is down: nothing was sent, nothing to wonder about
                time.sleep(0.05)
                continue
            answers.append(NO_ANSWER)
            if not key:
                raise AssertionError(f"no answer for {head} and no key to retry with: {exc}") from None
            time.sleep(0.05)
            continue
        answers.append(f"{response.status_code} {response.headers.get('Idempotent-Replayed', '')}".strip())
        if response.status_code >= 500:
            time.sleep(0.1)
            continue
        return answers, response.json()


def _never_connected(exc: requests.RequestException) -> bool:
    reason = exc.args[0].reason if exc.args and hasattr(exc.args[0], "reason") else None
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, urllib3.exceptions.NewConnectionError)


def open_threads(stack: Stack, gateway: GatewayProcess, reporters: list[str]) -> list:
    """One PR per reporter; returns the notification each received, in the order of ``reporters``."""
    for i, reporter in enumerate(reporters):
        head = f"thread-{i}"
        stack.emulator.create_branch(REPO, head, files={f"thread-{i}.md": f"change {i}\n"})
        answers, accepted = post_pull_request(gateway, head, reporter)
        assert answers == ["202"], (answers, accepted)
    wanted = [re.search(r"<([^>]+)>", r).group(1) for r in reporters]
    stack.wait_until("notification mails", lambda: set(wanted) <= {m.recipients[0] for m in stack.sink.messages}, 30)
    mails = stack.sink.clear()
    assert sorted(m.recipients[0] for m in mails) == sorted(wanted), "not one notification per reporter"
    by_recipient = {m.recipients[0]: m.message for m in mails}
    return [by_recipient[address] for address in wanted]


# -- what landed ------------------------------------------------------------------------------------

def comments_by_key(stack: Stack) -> dict[str, list[dict]]:
    """Every comment on every PR, by the unique word of the reply it carries."""
    found: dict[str, list[dict]] = defaultdict(list)
    for pull in stack.emulator.pulls(REPO):
        for comment in stack.emulator.comments(REPO, pull["number"]):
            keys = [f"dur{k}x" for k in KEY.findall(comment["body"])]
            assert len(keys) == 1, f"a comment without exactly one reply key: {comment['body'][:300]!r}"
            found[keys[0]].append({**comment, "pr": pull["number"]})
    return found


def mails_in_reply_to(stack: Stack) -> dict[str, list]:
    found = defaultdict(list)
    for mail in stack.sink.messages:
        if mail.message["In-Reply-To"]:
            found[mail.message["In-Reply-To"].strip().strip("<>")].append(mail)
    return found


def outbound_attempts(stack: Stack) -> dict[str, int]:
    with stack.db.session() as session:
        return {m.message_id.strip("<>"): m.attempts for m in session.scalars(select(OutboundMail))}


def assert_one_mail_each(what: str, mails_by_subject: dict[str, list], attempts: dict[str, int]) -> int:
    """Each subject (a reply, a request) got exactly one distinct mail; resends of that same
    Message-ID only where its delivery was interrupted. Returns how many resends there were."""
    resent = 0
    for subject, mails in mails_by_subject.items():
        ids = Counter(m.message["Message-ID"].strip("<>") for m in mails)
        assert len(ids) == 1, f"{what} {subject}: {len(ids)} different mails {sorted(ids)}"
        [(message_id, copies)] = ids.items()
        if copies > 1:
            assert attempts.get(message_id, 0) > 1, (
                f"{what} {subject}: {copies} copies of {message_id}, but its delivery ran only "
                f"{attempts.get(message_id)} time(s)")
            resent += copies - 1
    return resent


def assert_replies_exactly_once(stack: Stack, letters: list[Letter]) -> dict:
    comments = comments_by_key(stack)
    receipts = mails_in_reply_to(stack)
    accepted = [l for l in letters if l.accepted]
    refused = [l for l in letters if not l.accepted]
    twice = {k: [c["html_url"] for c in v] for k, v in comments.items() if len(v) > 1}
    assert twice == {}, f"posted more than once: {twice}"
    missing = [(l.key, l.answers) for l in accepted if l.key not in comments]
    assert missing == [], f"answered 250 but never posted: {missing}"
    leaked = [(l.key, l.answers, comments[l.key][0]["html_url"]) for l in refused if l.key in comments]
    assert leaked == [], f"refused but posted: {leaked}"
    assert len(comments) == len(accepted)
    for letter in accepted:
        [comment] = comments[letter.key]
        assert f"Reply {letter.index}: checked the branch, {letter.key} is fine." in comment["body"]
        mails = receipts.get(letter.message_id, [])
        assert mails, f"{letter.key} ({letter.answers}) has no receipt"
        assert mails[0].recipients == [letter.mail_from]
        assert comment["html_url"] in mails[0].message.get_body(("plain",)).get_content()
    assert [l.message_id for l in refused if receipts.get(l.message_id)] == []
    resent = assert_one_mail_each("receipt of", {l.key: receipts[l.message_id] for l in accepted},
                                  outbound_attempts(stack))
    with stack.db.session() as session:
        verdicts = Counter((row.message_id.strip("<>"), row.verdict) for row in session.scalars(select(InboundMessage)))
    for letter in accepted:
        assert verdicts[(letter.message_id, "posted")] == 1, (letter.key, letter.answers)
    return {"resent_receipts": resent}


def assert_no_dead_jobs(stack: Stack) -> None:
    dead = [(j.id, j.kind, j.attempts, j.last_error) for j in stack.jobs() if j.status != "done"]
    assert dead == [], f"jobs not done: {dead}"


# -- 1. SIGKILL during a burst of replies ------------------------------------------------------------

def test_replies_answered_250_are_posted_exactly_once_across_kill_9(stack):
    gateway = stack.start("serve")
    notifications = open_threads(stack, gateway, REPORTERS)
    rng = random.Random(20261121)
    other_key = ReplyTokens(secrets=["another-secret-0123456789abcdef"], domain="reply.example.com")
    letters = []
    for i in range(200):  # participants replying to their own thread
        t = i % len(REPORTERS)
        letters.append(reply_letter(i, notifications[t], sender=REPORTERS[t]))
    for i in range(200, 240):  # refusals of every kind, mixed in
        t = i % len(REPORTERS)
        notification, kind = notifications[t], i % 4
        if kind == 0:    # forged signature: 550 at RCPT TO
            letters.append(reply_letter(i, notification, sender=REPORTERS[t], expect=RCPT_REFUSED,
                                        to=forged_address(notification["Reply-To"])))
        elif kind == 1:  # signed with a key the gateway does not have: 550 at RCPT TO
            letters.append(reply_letter(i, notification, sender=REPORTERS[t], expect=RCPT_REFUSED,
                                        to=other_key.reply_address(notification["X-Gateway-Thread"])))
        elif kind == 2:  # a stranger with a valid address: 550 at DATA
            letters.append(reply_letter(i, notification, sender="Mallory <mallory@evil.example>",
                                        expect=DATA_REFUSED))
        else:            # a participant of another thread: 550 at DATA
            other = (t + 1) % len(REPORTERS)
            letters.append(reply_letter(i, notification, sender=REPORTERS[other], expect=DATA_REFUSED))
    rng.shuffle(letters)

    burst = Burst([stack.smtp_port], letters, clients=4, timeout=60).start()
    burst.wait_accepted(67, timeout=40)  # a third of the 200 that will be accepted
    gateway = stack.kill_after_github_acted(gateway, r"/comments$")
    burst.wait_accepted(134, timeout=40)
    gateway = stack.kill_after_relay_accepted(gateway)
    burst.join(timeout=60)

    finals = Counter(l.final for l in letters)
    assert [(l.key, l.expect, l.answers) for l in letters
            if l.final != ("250 2.0.0 Message accepted" if l.expect == "accept" else l.expect)] == []
    assert finals == {"250 2.0.0 Message accepted": 200, RCPT_REFUSED: 20, DATA_REFUSED: 20}

    accepted = [l for l in letters if l.accepted]

    def everything_landed() -> bool:
        replied = mails_in_reply_to(stack)
        return len(comments_by_key(stack)) >= len(accepted) and all(l.message_id in replied for l in accepted)

    sent_at = time.monotonic()
    stack.wait_drained("every accepted reply posted and receipted", everything_landed, timeout=45)
    drained_in = time.monotonic() - sent_at
    outcome = assert_replies_exactly_once(stack, letters)
    assert_no_dead_jobs(stack)
    assert outcome["resent_receipts"] >= 1, "the receipt the relay held during the kill was not sent again"
    retaken = sum(1 for j in stack.jobs() if j.attempts > 1)
    assert retaken >= 2, "the kills should have left a comment and a receipt job to be taken over"
    unknown = sum(l.answers.count(NO_ANSWER) for l in letters)
    print(f"unknown DATA outcomes resent {unknown}, jobs retaken {retaken}, drained {drained_in:.1f} s "
          f"after the burst, {outcome}")


# -- 2. SIGKILL during a burst of PR requests --------------------------------------------------------

def test_pr_requests_answered_202_open_one_pr_and_one_mail_across_kill_9(stack):
    heads = [f"burst-{i:02d}" for i in range(36)]
    for head in heads:
        stack.emulator.create_branch(REPO, head, files={f"{head}.md": f"{head}\n"})
    gateway = stack.start("serve")
    results: dict[str, tuple[list[str], dict]] = {}
    errors: list[str] = []
    done = threading.Semaphore(0)

    def client(share: list[str]) -> None:
        try:
            for head in share:
                results[head] = post_pull_request(gateway, head, f"{head}@example.com",
                                                  key=f"key-{head}", deadline=time.monotonic() + 30)
                done.release()
                time.sleep(0.02)  # an upstream system, not a flood: the kills land mid-burst
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, args=(heads[k::3],)) for k in range(3)]
    for thread in threads:
        thread.start()
    answered = 0
    for point, kill in ((12, lambda: stack.kill_after_github_acted(gateway, r"/pulls$")),
                        (24, lambda: stack.kill_after_relay_accepted(gateway))):
        while answered < point:
            assert done.acquire(timeout=30), f"requests stalled at {answered}: {errors}"
            answered += 1
        gateway = kill()  # a new process on the same port: the clients carry on
    for thread in threads:
        thread.join(60)
    assert errors == [] and sorted(results) == heads

    ids = {head: answer["id"] for head, (_, answer) in results.items()}
    assert [(h, a) for h, (a, _) in results.items() if a[-1] not in ("202", "202 true")] == []

    def not_notified() -> dict[str, dict]:
        statuses = {h: gateway.api("GET", f"/api/pull-requests/{i}").json() for h, i in ids.items()}
        return {h: s for h, s in statuses.items() if s["status"] != "notified"}

    stack.wait_drained(lambda: f"every request notified (not yet: {not_notified()})", lambda: not not_notified(),
                       timeout=45)

    pulls = stack.emulator.pulls(REPO)
    per_head = Counter(p["head"]["ref"] for p in pulls)
    assert per_head == Counter(heads), f"PRs per head: {per_head - Counter(heads)}"
    with stack.db.session() as session:
        stored = Counter(r.head for r in session.scalars(select(PullRequestRequest)))
    assert stored == Counter(heads), "a retried request was stored twice"
    statuses = {h: gateway.api("GET", f"/api/pull-requests/{i}").json() for h, i in ids.items()}
    by_head = {p["head"]["ref"]: p for p in pulls}
    notifications = defaultdict(list)
    for mail in stack.sink.messages:
        notifications[mail.recipients[0]].append(mail)
    assert sorted(notifications) == sorted(f"{h}@example.com" for h in heads)
    for head, status in statuses.items():
        assert (status["status"], status["number"], status["pr_url"]) == (
            "notified", by_head[head]["number"], by_head[head]["html_url"])
        assert by_head[head]["html_url"] in notifications[f"{head}@example.com"][0].message.get_body(
            ("plain",)).get_content()
    resent = assert_one_mail_each("notification for", notifications, outbound_attempts(stack))
    assert_no_dead_jobs(stack)
    assert resent >= 1, "the notification the relay held during the kill was not sent again"
    retaken = sum(1 for j in stack.jobs() if j.attempts > 1)
    assert retaken >= 2, "the kills should have left an open-PR and a mail job to be taken over"
    unknown = sum(a.count(NO_ANSWER) for a, _ in results.values())
    print(f"unknown answers retried {unknown}, jobs retaken {retaken}, resent notifications {resent}")


# -- 3. GitHub failing a share of calls, the relay refusing connections -------------------------------

def test_effects_happen_exactly_once_through_github_faults_and_relay_outages(stack):
    emulator, sink = stack.emulator, stack.sink
    emulator.faults.seed(7)
    repo_calls = r"^/repos/"
    faults = {
        "5xx": emulator.faults.inject("5xx", repo_calls, times=None, probability=0.12),
        "secondary": emulator.faults.inject("rate_limit_secondary", repo_calls, times=None, probability=0.03,
                                            retry_after=1),
        "primary": emulator.faults.inject("rate_limit_primary", repo_calls, times=None, probability=0.02,
                                          reset_in=1),
        # a share of calls finds every token expired: two worker threads can meet a second 401 in a
        # row (one expires the token the other's retry just fetched), which must be retried too
        "expired token": emulator.faults.inject("expire_token", repo_calls, times=None, probability=0.03),
        # carried out, then no answer: the gateway must find its comment / PR instead of making another
        "drop": emulator.faults.inject("drop", r"/(comments|pulls)$", method="POST", times=None,
                                       probability=0.15),
        # carried out, answered after the client (GITHUB_TIMEOUT_SECONDS=2) gave up
        "timeout": emulator.faults.inject("timeout", r"/comments$", method="POST", times=1, seconds=3),
    }
    emulator.set_content_limits([(25, 4.0)])  # GitHub's secondary content limit, scaled down

    gateway = stack.start("serve", GATEWAY_JOB_MAX_ATTEMPTS="40", GITHUB_TIMEOUT_SECONDS="2")
    sink.stop()  # the relay refuses connections while the PRs open
    heads = [f"fault-{i}" for i in range(4)]
    reporters = [f"Reporter {i} <r{i}@example.com>" for i in range(4)]
    ids = {}
    for head, reporter in zip(heads, reporters):
        emulator.create_branch(REPO, head, files={f"{head}.md": "x\n"})
        ids[head] = post_pull_request(gateway, head, reporter, key=f"key-{head}")[1]["id"]
    stack.wait_until("every PR opened", lambda: len(emulator.pulls(REPO)) == len(heads), 30)
    time.sleep(2)  # notifications keep failing against the closed relay
    sink.start()
    stack.wait_until("notifications after the relay is back", lambda: len(sink.messages) >= len(heads), 30)
    notifications = {m.recipients[0]: m.message for m in sink.messages}

    letters = [reply_letter(i, notifications[f"r{i % 4}@example.com"], sender=reporters[i % 4])
               for i in range(60)]
    burst = Burst([stack.smtp_port], letters, clients=3, timeout=30).start()
    burst.wait_accepted(20, timeout=20)
    sink.stop()  # receipts fail for a while
    time.sleep(3)
    sink.start()
    burst.join(timeout=30)
    assert Counter(l.final for l in letters) == {"250 2.0.0 Message accepted": 60}

    def everything_landed() -> bool:
        replied = mails_in_reply_to(stack)
        return len(comments_by_key(stack)) >= 60 and all(l.message_id in replied for l in letters)

    stack.wait_drained("every effect after recovery", everything_landed, timeout=50)

    outcome = assert_replies_exactly_once(stack, letters)
    pulls = stack.emulator.pulls(REPO)
    assert Counter(p["head"]["ref"] for p in pulls) == Counter(heads)
    roots = defaultdict(list)
    for mail in sink.messages:
        if not mail.message["In-Reply-To"]:
            roots[mail.recipients[0]].append(mail)
    assert sorted(roots) == sorted(f"r{i}@example.com" for i in range(4))
    outcome["resent_notifications"] = assert_one_mail_each("notification to", roots, outbound_attempts(stack))
    for head, request_id in ids.items():
        assert gateway.api("GET", f"/api/pull-requests/{request_id}").json()["status"] == "notified"
    assert_no_dead_jobs(stack)
    hits = {name: fault.hits for name, fault in faults.items()}
    assert all(hits.values()), f"a fault never fired, so the test proved nothing about it: {hits}"
    deliveries_retried = sum(1 for j in stack.jobs() if j.kind == "deliver_mail" and j.attempts > 1)
    assert deliveries_retried > 0, "no delivery met the closed relay"
    print(f"fault hits {hits}, content-limit refusals {emulator.limit_hits}, "
          f"deliveries retried {deliveries_retried}, {outcome}")


# -- 4. Scale-out: two receivers, two workers, one web app, one PostgreSQL -----------------------------

@pytest.mark.skipif(not POSTGRES_URL.startswith(("postgresql://", "postgres://")),
                    reason="scale-out needs PostgreSQL (FOR UPDATE SKIP LOCKED across processes): "
                           "set GATEWAY_TEST_DATABASE_URL=postgresql://...")
def test_two_receivers_and_two_workers_on_postgresql_run_each_job_once(stack):
    web = stack.start("web")
    second_smtp_port = free_port()
    stack.start("smtp", name="smtp-1")
    stack.start("smtp", name="smtp-2", GATEWAY_SMTP_PORT=str(second_smtp_port))
    stack.start("worker", name="worker-1")
    stack.start("worker", name="worker-2")
    notifications = open_threads(stack, web, REPORTERS[:3])
    letters = [reply_letter(i, notifications[i % 3], sender=REPORTERS[i % 3]) for i in range(150)]
    burst = Burst([stack.smtp_port, second_smtp_port], letters, clients=4, timeout=40).start()
    burst.join(timeout=45)
    assert Counter(l.final for l in letters) == {"250 2.0.0 Message accepted": 150}

    claimers: set[str] = set()  # which worker processes were seen holding a job

    def drained() -> bool:
        claimers.update(j.locked_by.split(":")[1] for j in stack.jobs() if j.locked_by)
        return len(comments_by_key(stack)) >= 150 and len(mails_in_reply_to(stack)) >= 150

    stack.wait_drained("every reply posted and receipted", drained, timeout=40)
    assert_replies_exactly_once(stack, letters)
    assert claimers == {str(p.pid) for p in stack.processes if p.command == ["worker"]}, claimers
    jobs = stack.jobs()
    assert Counter(j.kind for j in jobs) == {"open_pull_request": 3, "deliver_mail": 153, "process_reply": 150}
    assert [(j.id, j.kind, j.status, j.attempts, j.last_error) for j in jobs
            if (j.status, j.attempts) != ("done", 1)] == []
    assert all(p.process.poll() is None for p in stack.processes), stack.logs()


# -- 5. Several receiver processes on one port ---------------------------------------------------------

def child_pids(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_smtp_processes_share_one_port_and_stop_together(stack):
    serve = stack.start("serve")
    notifications = open_threads(stack, serve, REPORTERS[:2])
    serve.stop()
    receivers = stack.start("smtp", args=("--processes", "2"))
    children = child_pids(receivers.pid)
    assert len(children) == 2
    letters = [reply_letter(i, notifications[i % 2], sender=REPORTERS[i % 2]) for i in range(60)]
    Burst([stack.smtp_port], letters, clients=6, timeout=30).start().join(timeout=35)
    assert Counter(l.final for l in letters) == {"250 2.0.0 Message accepted": 60}
    with stack.db.session() as session:
        assert session.scalar(select(func.count(InboundMessage.id)).where(InboundMessage.verdict == "queued")) == 60

    os.kill(children[0], signal.SIGKILL)  # one receiver dies: the parent stops the other and fails
    assert receivers.process.wait(timeout=20) == 1
    assert not Path(f"/proc/{children[1]}").exists()  # stopped and reaped by the parent

    again = stack.start("smtp", name="smtp-again", args=("--processes", "2"))
    assert again.stop() == 0  # SIGTERM stops every receiver process


def test_smtp_writer_killed_mid_burst_loses_no_250_and_its_protocol_process_leaves(stack):
    serve = stack.start("serve")
    notifications = open_threads(stack, serve, REPORTERS[:2])
    serve.stop()
    writer = stack.start("smtp", name="smtp-writer")
    (protocol,) = child_pids(writer.pid)
    letters = [reply_letter(i, notifications[i % 2], sender=REPORTERS[i % 2]) for i in range(120)]
    burst = Burst([stack.smtp_port], letters, clients=4, timeout=60).start()
    burst.wait_accepted(40, timeout=30)

    writer.kill()  # SIGKILL: commits under way are lost or done; no answer has left for the lost ones
    try:
        stack.wait_until("the orphaned protocol process exits", lambda: not Path(f"/proc/{protocol}").exists()
                         or Path(f"/proc/{protocol}/stat").read_text().split()[2] == "Z", 15)
    finally:
        if Path(f"/proc/{protocol}").exists():  # not ours to reap: it belongs to init now
            os.kill(protocol, signal.SIGKILL)
    writer = stack.restart(writer)  # the same port: the orphan let it go
    burst.join(timeout=60)

    assert Counter(l.final for l in letters) == {"250 2.0.0 Message accepted": 120}
    interrupted = [l for l in letters if len(l.answers) > 1]
    assert all(a == NO_ANSWER or a.startswith("451 ") for l in interrupted for a in l.answers[:-1]), \
        [l.answers for l in interrupted]
    with stack.db.session() as session:
        rows = session.execute(select(InboundMessage.message_id, InboundMessage.verdict)).all()
    queued = Counter(message_id for message_id, verdict in rows if verdict == "queued")
    assert queued == {l.message_id: 1 for l in letters}  # each stored once; a resent copy is a duplicate
    assert {verdict for _, verdict in rows} <= {"queued", "duplicate"}
    assert writer.stop() == 0
