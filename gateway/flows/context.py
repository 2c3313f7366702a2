"""The composition root: builds the adapters from settings and hands them to flows.

This is the one place that knows inbound, outbound and github_app together
(with the rest of gateway.flows). An adapter that keeps state declares what it
needs (github_app's TokenCache and WriteLog) and is handed the store's
implementation here, so the adapters never import the store. Tests build a
FlowContext the same way, pointing GitHub at the emulator and the relay at an
SMTP sink.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from gateway.config import Settings
from gateway.signing import ReplyTokens
from gateway.store import Database, DatabaseTokenCache, DatabaseWriteLog, utcnow
from github_app.auth import InstallationTokens
from github_app.client import GitHubApp
from github_app.pacing import WritePacer
from outbound.delivery import MaildirRelay, RelayConfig, SmtpRelay


@dataclass
class FlowContext:
    settings: Settings
    db: Database
    tokens: ReplyTokens
    installations: InstallationTokens
    github: GitHubApp
    relay: SmtpRelay | MaildirRelay
    clock: Callable[[], datetime] = utcnow
    github_emulated: bool = False
    _bot_login: str | None = field(default=None, repr=False)

    @property
    def bot_login(self) -> str:
        """The App's bot account, whose comments must never be relayed back by mail."""
        if self._bot_login is None:
            self._bot_login = self.settings.github_bot_login or f"{self.installations.app_slug()}[bot]"
        return self._bot_login


def build_context(settings: Settings, db: Database | None = None, *, clock: Callable[[], datetime] = utcnow,
                  github_emulated: bool = False, relay: SmtpRelay | MaildirRelay | None = None) -> FlowContext:
    db = db or Database(settings.database_url)
    tokens = ReplyTokens(secrets=settings.secrets, domain=settings.reply_domain,
                         max_age=timedelta(days=settings.reply_max_age_days), clock=clock)
    installations = InstallationTokens(DatabaseTokenCache(db, settings.secrets, clock=clock),
                                       app_id=settings.github_app_id or "",
                                       private_key=settings.github_app_private_key or "",
                                       api_url=settings.github_api_url, clock=clock,
                                       timeout=settings.github_timeout_seconds)
    github = GitHubApp(installations, api_url=settings.github_api_url, web_url=settings.github_web_url,
                       pacer=WritePacer(DatabaseWriteLog(db), limits=settings.github_write_limits, clock=clock),
                       timeout=settings.github_timeout_seconds)
    if relay is None:
        relay = (SmtpRelay(RelayConfig.from_url(settings.smtp_relay_url)) if settings.smtp_relay_url
                 else MaildirRelay(settings.maildir or settings.data_dir / "maildir"))
    return FlowContext(settings=settings, db=db, tokens=tokens, installations=installations, github=github,
                       relay=relay, clock=clock, github_emulated=github_emulated)
