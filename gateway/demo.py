"""`gateway demo`: the whole loop on this machine with nothing configured.

Sandbox GitHub (the emulator), a local branch mirrored to it, the PR opened,
the notification captured, a reply written the way a mail client writes one
(quoted history and signature) sent over SMTP, the comment read back from the
emulator, the receipt captured. Prints each step; exits 1 on the first failure.
"""
from __future__ import annotations

import logging
import smtplib
import subprocess
import tempfile
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import requests

from gateway.config import Settings
from gateway.flows.context import build_context
from gateway.migrate import upgrade
from gateway.runner import LocalGateway
from gateway.sandbox import SANDBOX_REPO, start_sandbox
from gateway.store import Database


class StepFailed(Exception):
    pass


def _wait(what: str, probe, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.2)
    raise StepFailed(f"timed out after {timeout:.0f}s waiting for {what}")


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=Coding Agent", "-c", "user.email=agent@example.com", *args],
                   cwd=cwd, check=True, capture_output=True)


def run_demo() -> int:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the steps are the output, not the access log
    with tempfile.TemporaryDirectory(prefix="gateway-demo-") as tmp:
        workdir = Path(tmp)
        settings = Settings.from_env({"GATEWAY_DATA_DIR": str(workdir), "GATEWAY_HTTP_PORT": "0",
                                      "GATEWAY_SMTP_PORT": "0"}, env_file=None, sandbox=True)
        sandbox = start_sandbox(settings)
        settings = sandbox.settings
        db = Database(settings.database_url)
        upgrade(db)
        ctx = build_context(settings, db, github_emulated=True)
        gateway = LocalGateway(ctx, http_port=0, smtp_port=0)
        gateway.start()
        receiver = gateway.receiver
        base = f"http://127.0.0.1:{gateway.web.port}"
        print(f"SANDBOX: GitHub is emulated at {settings.github_api_url}; mail goes to {settings.maildir}")
        step = "start"
        try:
            step = "make a branch in a local repository (the agent's work)"
            source = workdir / "agent-repo"
            _git(workdir, "clone", "-q", f"{settings.github_web_url}/{SANDBOX_REPO}.git", str(source))
            (source / "CHANGELOG.md").write_text("- Fixed the widget alignment\n")
            _git(source, "add", ".")
            _git(source, "commit", "-qm", "Fix widget alignment")
            print(f"✓ {step}: {source}")

            step = "ask the gateway for a pull request"
            response = requests.post(f"{base}/api/pull-requests", timeout=10,
                                     headers={"Authorization": f"Bearer {settings.api_tokens[0]}"},
                                     json={"repo": SANDBOX_REPO, "head": "demo-fix", "title": "Fix widget alignment",
                                           "body": "Aligns the widget.", "reporter_email": "Ann <ann@example.com>",
                                           "source": {"url": str(source), "ref": "main"}})
            if response.status_code != 202:
                raise StepFailed(f"{response.status_code} {response.text}")
            status_url = response.json()["url"]
            print(f"✓ {step}: 202, status at {status_url}")

            step = "mirror the branch, open the PR and mail the reporter"
            status = _wait("status notified", lambda: (s := requests.get(status_url, timeout=5, headers={
                "Authorization": f"Bearer {settings.api_tokens[0]}"}).json())["status"] in ("notified", "failed") and s)
            if status["status"] != "notified":
                raise StepFailed(status.get("failure_reason", status["status"]))
            print(f"✓ {step}: PR #{status['number']} {status['pr_url']}")

            step = "capture the notification"
            notification = _wait("the notification in the maildir", lambda: ctx.relay.messages())[0]
            print(f"✓ {step}: Subject: {notification['Subject']}; Reply-To: {notification['Reply-To']}")

            step = "reply over SMTP the way a mail client does"
            reply = EmailMessage()
            reply["From"], reply["To"] = "Ann <ann@example.com>", notification["Reply-To"]
            reply["Subject"] = "Re: " + notification["Subject"]
            reply["Message-ID"] = make_msgid(domain="example.com")
            reply["In-Reply-To"] = reply["References"] = notification["Message-ID"]
            quoted = "\n".join("> " + line for line in notification.get_body(("plain",)).get_content().splitlines())
            reply.set_content("Looks right to me, thanks! Could you also mention it in the README?\n\n"
                              f"-- \nAnn\n\nOn Sat, 21 Nov 2026 at 10:00, Gateway wrote:\n{quoted}\n")
            with smtplib.SMTP("127.0.0.1", receiver.port, timeout=10) as client:
                client.send_message(reply, from_addr="ann@example.com", to_addrs=[notification["Reply-To"]])
            print(f"✓ {step}: 250 from the receiver on port {receiver.port}")

            step = "read the comment back from GitHub"
            comment = _wait("the comment on the PR", lambda: sandbox.emulator.comments(SANDBOX_REPO, status["number"]))[0]
            visible = comment["body"].split("<details>")[0].split("<!--")[0].strip()
            if "Could you also mention it in the README?" not in visible or "wrote:" in visible or "-- " in visible:
                raise StepFailed(f"unexpected comment: {comment['body']!r}")
            print(f"✓ {step}: {comment['html_url']}\n    " + visible.replace("\n", "\n    "))

            step = "capture the receipt"
            receipt = _wait("the receipt in the maildir", lambda: len(ctx.relay.messages()) >= 2 and ctx.relay.messages())[1]
            print(f"✓ {step}: Subject: {receipt['Subject']}; In-Reply-To: {receipt['In-Reply-To']}")
            print("demo complete: every step passed")
            return 0
        except Exception as exc:
            print(f"✗ {step}: {exc}")
            return 1
        finally:
            gateway.stop()
            sandbox.stop()
            db.dispose()
