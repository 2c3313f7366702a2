"""The whole gateway on real sockets for end-to-end tests.

GitHub is the emulator, the relay is an SMTP sink, the web app listens on an
ephemeral port, the SMTP receiver too, and all share one fresh database.
Jobs run when a test calls `run_jobs()`, so tests decide when the worker acts.
"""
from __future__ import annotations

import re
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

import requests

from gateway.config import Settings
from gateway.flows.context import FlowContext, build_context
from gateway.runner import LocalGateway, make_worker
from gateway.store import Database
from github_emulator import GitHubEmulator
from tests.support.github import app_key_pair
from tests.support.smtp_sink import SmtpSink

APP_ID = 4711
INSTALLATION_ID = 99
REPO = "octo-org/widgets"
API_TOKEN = "test-api-token-0123456789"
SECRET = "test-secret-key-0123456789abcdef"
WEBHOOK_SECRET = "test-webhook-secret"
BOT = "gateway-test[bot]"


@dataclass
class Harness:
    emulator: GitHubEmulator
    sink: SmtpSink
    ctx: FlowContext
    services: LocalGateway

    @property
    def web(self):
        return self.services.web

    @property
    def receiver(self):
        return self.services.receiver

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web.port}"

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    def api(self, method: str, path: str, *, token: str | None = API_TOKEN, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.base_url + path, headers=headers, timeout=10, **kwargs)

    def run_jobs(self) -> int:
        return make_worker(self.ctx).run_until_idle()

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.receiver.port, timeout=10)

    def send_mail(self, message: EmailMessage | bytes, *, mail_from: str, to: list[str]):
        """Deliver over SMTP; returns (code, text) of the final reply, raising nothing."""
        with self.smtp() as client:
            client.ehlo("client.example.org")
            code, text = client.mail(mail_from)
            if code >= 400:
                return code, text.decode()
            for rcpt in to:
                code, text = client.rcpt(rcpt)
                if code >= 400:
                    return code, text.decode()
            raw = message if isinstance(message, bytes) else message.as_bytes(policy=SMTP_POLICY)
            raw = re.sub(rb"(?<!\r)\n", b"\r\n", raw)  # what an MTA puts on the wire
            code, text = client.data(raw)
            return code, text.decode()

    def open_pull_request(self, *, head: str = "fix-typo", reporter: str = "Ann Reporter <ann@example.com>",
                          title: str = "Fix the typo in the README", **extra) -> dict:
        """Branch in the emulator, API call, worker run: returns the final status JSON."""
        if self.emulator.branch_sha(REPO, head) is None:
            self.emulator.create_branch(REPO, head, files={"README.md": "# widgets, fixed\n"})
        response = self.api("POST", "/api/pull-requests", json={
            "repo": REPO, "head": head, "title": title, "body": "Agent-made fix.", "reporter_email": reporter,
            **extra})
        assert response.status_code == 202, response.text
        self.run_jobs()
        return self.api("GET", f"/api/pull-requests/{response.json()['id']}").json()

    def close(self) -> None:
        self.services.stop()
        self.sink.stop()
        self.emulator.stop()


def start_harness(db: Database, tmp_path, **settings_overrides) -> Harness:
    private, public = app_key_pair()
    emulator = GitHubEmulator(app_id=APP_ID, app_public_key_pem=public, webhook_secret=WEBHOOK_SECRET,
                              bot_login=BOT)
    emulator.start()
    emulator.add_repo(REPO, default_branch="main")
    emulator.add_installation(installation_id=INSTALLATION_ID, account="octo-org", repositories=[REPO])
    sink = SmtpSink()
    sink.start()
    settings = Settings(
        database_url=db.url, data_dir=tmp_path, secret_key=SECRET, api_tokens=(API_TOKEN,),
        reply_domain="reply.example.com", mail_from="gateway@reply.example.com",
        smtp_relay_url=sink.url, github_app_id=str(APP_ID), github_app_private_key=private,
        github_webhook_secret=WEBHOOK_SECRET, github_api_url=emulator.url, github_web_url=emulator.url,
        public_url="http://gateway.test", smtp_port=0, allow_local_sources=True,
    ).replace(**settings_overrides)
    ctx = build_context(settings, db, github_emulated=True)
    services = LocalGateway(ctx, http_port=0, smtp_port=0, worker=False)  # tests run jobs themselves
    services.start()
    return Harness(emulator=emulator, sink=sink, ctx=ctx, services=services)
