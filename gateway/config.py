"""Settings: the gateway's whole configuration, read once from the environment.

The environment variable names are the public interface (README lists every one
with its default). A `.env` file in the working directory is read too; real
environment variables win. Nothing else in the code reads `os.environ`:
settings are passed in, so tests can build their own.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from github_app.pacing import DEFAULT_LIMITS


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line naming it."""


def _split_list(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _bool(name: str, value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _int(name: str, value: str | None, default: int, minimum: int = 0, maximum: int = 2**31) -> int:
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ConfigError(f"{name}: must be between {minimum} and {maximum}, got {number}")
    return number


def _float(name: str, value: str | None, default: float | None, minimum: float, maximum: float) -> float | None:
    if value is None or value.strip() == "":
        return default
    try:
        number = float(value.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected a number of seconds, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ConfigError(f"{name}: must be between {minimum:g} and {maximum:g}, got {number:g}")
    return number


def write_limits_setting(limits: tuple[tuple[int, float], ...]) -> str:
    """The GATEWAY_GITHUB_WRITE_LIMITS text for ``limits``: GitHub's own read ``80/60,500/3600``."""
    return ",".join(f"{count}/{window:g}" for count, window in limits) or "off"


def _days_kept(name: str, value: str | None, default: int | None, minimum: int = 1) -> int | None:
    """Days to keep something; ``off`` or ``0``: forever (None)."""
    if value is not None and value.strip().lower() in ("off", "0"):
        return None
    return _int(name, value, default, minimum, 36500)


# GitHub lets a webhook delivery be redelivered for 3 days; its stored id is what makes that harmless.
GITHUB_REDELIVERY_DAYS = 3


def _write_limits(name: str, value: str | None) -> tuple[tuple[int, float], ...]:
    """``COUNT/SECONDS[,...]``: ``80/60`` allows at most 80 writes in any 60 s; ``off``: none.
    Unset: GitHub's documented secondary limits, which github_app.pacing knows."""
    if not value:
        return DEFAULT_LIMITS
    text = value.strip()
    if text.lower() in ("off", "none", "0"):
        return ()
    limits = []
    for item in text.split(","):
        count, _, seconds = item.strip().partition("/")
        try:
            limit = (int(count), float(seconds))
        except ValueError:
            raise ConfigError(f"{name}: expected COUNT/SECONDS[,COUNT/SECONDS...] or off, got {value!r}") from None
        if limit[0] < 1 or limit[1] <= 0:
            raise ConfigError(f"{name}: counts and windows must be positive, got {item.strip()!r}")
        limits.append(limit)
    return tuple(limits)


def _http_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name}: expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///var/gateway.db"
    data_dir: Path = Path("var")
    secret_key: str = field(default="", repr=False)
    previous_secret_keys: tuple[str, ...] = field(default=(), repr=False)
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    public_url: str = ""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_hostname: str | None = None
    smtp_tls_cert: Path | None = None
    smtp_tls_key: Path | None = None
    smtp_proxy_protocol: bool = False
    max_message_bytes: int = 10 * 1024 * 1024
    max_recipients: int = 10
    reply_domain: str = ""
    mail_from: str = ""
    smtp_relay_url: str | None = field(default=None, repr=False)
    maildir: Path | None = None
    reply_max_age_days: int = 30
    trusted_authserv_id: str | None = None
    show_sender_address: bool = False
    job_max_attempts: int = 8
    job_lease_seconds: float = 60.0
    job_backoff_cap_seconds: float = 3600.0
    worker_poll_seconds: float | None = None  # None: 0.1 s on SQLite (no cross-process wake-up), 1 s on PostgreSQL
    worker_threads: int = 2
    retain_raw_mail_days: int | None = 30  # None: forever
    retain_finished_jobs_days: int | None = 7
    retain_webhook_deliveries_days: int | None = 7
    github_write_limits: tuple[tuple[int, float], ...] = DEFAULT_LIMITS
    github_timeout_seconds: float = 15.0
    allow_local_sources: bool = False
    github_app_id: str | None = None
    github_app_private_key: str | None = field(default=None, repr=False)
    github_webhook_secret: str | None = field(default=None, repr=False)
    github_api_url: str = "https://api.github.com"
    github_web_url: str = "https://github.com"
    github_bot_login: str | None = None
    log_level: str = "INFO"
    sandbox: bool = False

    @property
    def secrets(self) -> tuple[str, ...]:
        """Current signing secret first, then the previous ones (rotation)."""
        return (self.secret_key, *self.previous_secret_keys)

    @property
    def github_app_configured(self) -> bool:
        return bool(self.github_app_id and self.github_app_private_key)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, env_file: str | Path | None = ".env",
                 *, sandbox: bool = False) -> "Settings":
        env: dict[str, str] = {}
        if env_file and Path(env_file).is_file():
            env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        env.update(os.environ if environ is None else environ)
        get = env.get

        sandbox = sandbox or _bool("GATEWAY_SANDBOX", get("GATEWAY_SANDBOX"), False)
        data_dir = Path(get("GATEWAY_DATA_DIR") or "var")
        http_host = get("GATEWAY_HTTP_HOST") or "127.0.0.1"
        http_port = _int("GATEWAY_HTTP_PORT", get("GATEWAY_HTTP_PORT"), 8000, 0, 65535)
        reply_domain = (get("GATEWAY_REPLY_DOMAIN") or ("localhost" if sandbox else "")).strip().lower()

        private_key = get("GITHUB_APP_PRIVATE_KEY") or None
        key_file = get("GITHUB_APP_PRIVATE_KEY_FILE")
        if not private_key and key_file:
            try:
                private_key = Path(key_file).read_text()
            except OSError as exc:
                raise ConfigError(f"GITHUB_APP_PRIVATE_KEY_FILE: cannot read {key_file}: {exc.strerror}") from None
        if private_key:
            private_key = private_key.replace("\\n", "\n").strip() + "\n"
            if "PRIVATE KEY-----" not in private_key:
                raise ConfigError("GITHUB_APP_PRIVATE_KEY: not a PEM private key")

        tls_cert, tls_key = get("GATEWAY_SMTP_TLS_CERT"), get("GATEWAY_SMTP_TLS_KEY")
        if bool(tls_cert) != bool(tls_key):
            raise ConfigError("GATEWAY_SMTP_TLS_CERT and GATEWAY_SMTP_TLS_KEY: set both or neither")

        settings = cls(
            database_url=get("GATEWAY_DATABASE_URL") or f"sqlite:///{data_dir}/gateway.db",
            data_dir=data_dir,
            secret_key=get("GATEWAY_SECRET_KEY") or "",
            previous_secret_keys=_split_list(get("GATEWAY_PREVIOUS_SECRET_KEYS")),
            api_tokens=_split_list(get("GATEWAY_API_TOKENS")),
            http_host=http_host,
            http_port=http_port,
            public_url=_http_url("GATEWAY_PUBLIC_URL", get("GATEWAY_PUBLIC_URL"))
            if get("GATEWAY_PUBLIC_URL") else f"http://{http_host}:{http_port}",
            smtp_host=get("GATEWAY_SMTP_HOST") or "127.0.0.1",
            smtp_port=_int("GATEWAY_SMTP_PORT", get("GATEWAY_SMTP_PORT"), 2525, 0, 65535),
            smtp_hostname=get("GATEWAY_SMTP_HOSTNAME") or None,
            smtp_tls_cert=Path(tls_cert) if tls_cert else None,
            smtp_tls_key=Path(tls_key) if tls_key else None,
            smtp_proxy_protocol=_bool("GATEWAY_SMTP_PROXY_PROTOCOL", get("GATEWAY_SMTP_PROXY_PROTOCOL"), False),
            max_message_bytes=_int("GATEWAY_MAX_MESSAGE_BYTES", get("GATEWAY_MAX_MESSAGE_BYTES"),
                                   10 * 1024 * 1024, 1024),
            max_recipients=_int("GATEWAY_SMTP_MAX_RECIPIENTS", get("GATEWAY_SMTP_MAX_RECIPIENTS"), 10, 1, 1000),
            reply_domain=reply_domain,
            mail_from=get("GATEWAY_MAIL_FROM") or (f"gateway@{reply_domain}" if reply_domain else ""),
            smtp_relay_url=get("GATEWAY_SMTP_RELAY_URL") or None,
            maildir=Path(get("GATEWAY_MAILDIR")) if get("GATEWAY_MAILDIR") else
            (data_dir / "maildir" if sandbox else None),
            reply_max_age_days=_int("GATEWAY_REPLY_MAX_AGE_DAYS", get("GATEWAY_REPLY_MAX_AGE_DAYS"), 30, 1, 3650),
            trusted_authserv_id=get("GATEWAY_TRUSTED_AUTHSERV_ID") or None,
            show_sender_address=_bool("GATEWAY_SHOW_SENDER_ADDRESS", get("GATEWAY_SHOW_SENDER_ADDRESS"), False),
            allow_local_sources=_bool("GATEWAY_ALLOW_LOCAL_SOURCES", get("GATEWAY_ALLOW_LOCAL_SOURCES"), sandbox),
            job_max_attempts=_int("GATEWAY_JOB_MAX_ATTEMPTS", get("GATEWAY_JOB_MAX_ATTEMPTS"), 8, 1, 100),
            job_lease_seconds=_float("GATEWAY_JOB_LEASE_SECONDS", get("GATEWAY_JOB_LEASE_SECONDS"), 60.0, 1, 86400),
            job_backoff_cap_seconds=_float("GATEWAY_JOB_BACKOFF_CAP_SECONDS",
                                           get("GATEWAY_JOB_BACKOFF_CAP_SECONDS"), 3600.0, 1, 86400),
            worker_poll_seconds=_float("GATEWAY_WORKER_POLL_SECONDS", get("GATEWAY_WORKER_POLL_SECONDS"),
                                       None, 0.01, 60),
            worker_threads=_int("GATEWAY_WORKER_THREADS", get("GATEWAY_WORKER_THREADS"), 2, 1, 64),
            retain_raw_mail_days=_days_kept("GATEWAY_RETAIN_RAW_MAIL_DAYS", get("GATEWAY_RETAIN_RAW_MAIL_DAYS"), 30),
            retain_finished_jobs_days=_days_kept("GATEWAY_RETAIN_FINISHED_JOBS_DAYS",
                                                 get("GATEWAY_RETAIN_FINISHED_JOBS_DAYS"), 7),
            retain_webhook_deliveries_days=_days_kept("GATEWAY_RETAIN_WEBHOOK_DELIVERIES_DAYS",
                                                      get("GATEWAY_RETAIN_WEBHOOK_DELIVERIES_DAYS"), 7,
                                                      minimum=GITHUB_REDELIVERY_DAYS + 1),
            github_timeout_seconds=_float("GITHUB_TIMEOUT_SECONDS", get("GITHUB_TIMEOUT_SECONDS"), 15.0, 1, 300),
            github_write_limits=_write_limits("GATEWAY_GITHUB_WRITE_LIMITS", get("GATEWAY_GITHUB_WRITE_LIMITS")),
            github_app_id=get("GITHUB_APP_ID") or None,
            github_app_private_key=private_key,
            github_webhook_secret=get("GITHUB_WEBHOOK_SECRET") or None,
            github_api_url=_http_url("GITHUB_API_URL", get("GITHUB_API_URL") or "https://api.github.com"),
            github_web_url=_http_url("GITHUB_WEB_URL", get("GITHUB_WEB_URL") or "https://github.com"),
            github_bot_login=get("GITHUB_BOT_LOGIN") or None,
            log_level=(get("GATEWAY_LOG_LEVEL") or "INFO").upper(),
            sandbox=sandbox,
        )
        settings._check_formats()
        return settings

    def _check_formats(self) -> None:
        if self.github_app_id is not None and not self.github_app_id.isdigit():
            raise ConfigError(f"GITHUB_APP_ID: expected the App's numeric id, got {self.github_app_id!r}")
        if self.secret_key and len(self.secret_key) < 16:
            raise ConfigError("GATEWAY_SECRET_KEY: too short, use at least 32 random characters")
        if self.mail_from and "@" not in self.mail_from:
            raise ConfigError(f"GATEWAY_MAIL_FROM: not an email address: {self.mail_from!r}")
        if self.reply_domain and ("@" in self.reply_domain or " " in self.reply_domain):
            raise ConfigError(f"GATEWAY_REPLY_DOMAIN: expected a domain name, got {self.reply_domain!r}")
        if self.smtp_relay_url and urlsplit(self.smtp_relay_url).scheme not in ("smtp", "smtps"):
            raise ConfigError("GATEWAY_SMTP_RELAY_URL: expected smtp://... or smtps://...")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"GATEWAY_LOG_LEVEL: expected DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")

    def require_for_service(self) -> None:
        """What running the gateway (not just migrating) cannot do without."""
        if not self.secret_key:
            raise ConfigError("GATEWAY_SECRET_KEY: required (at least 32 random characters)")
        if not self.api_tokens:
            raise ConfigError("GATEWAY_API_TOKENS: required (comma list of bearer tokens for the API)")
        if not self.reply_domain:
            raise ConfigError("GATEWAY_REPLY_DOMAIN: required (the domain whose mail reaches the SMTP receiver)")
        if self.sandbox:
            return
        if not self.smtp_relay_url and not self.maildir:
            raise ConfigError("GATEWAY_SMTP_RELAY_URL: required (smtp://user:pass@host:587?starttls=true)")
        if not self.github_app_id:
            raise ConfigError("GITHUB_APP_ID: required (or run with --sandbox to use the GitHub emulator)")
        if not self.github_app_private_key:
            raise ConfigError("GITHUB_APP_PRIVATE_KEY: required (or GITHUB_APP_PRIVATE_KEY_FILE)")
        if not self.github_webhook_secret:
            raise ConfigError("GITHUB_WEBHOOK_SECRET: required (the App's webhook secret)")
        if not self.public_url.startswith("https://"):
            raise ConfigError("GATEWAY_PUBLIC_URL: required, the https:// address where mail recipients reach "
                              "the web app (RFC 8058 one-click unsubscribe links must be HTTPS)")

    def with_sandbox_defaults(self) -> "Settings":
        """Fill what a first run on a bare machine lacks, persisting generated secrets in data_dir."""
        self.data_dir.mkdir(parents=True, exist_ok=True)

        def persisted(name: str) -> str:
            path = self.data_dir / name
            if path.is_file():
                return path.read_text().strip()
            value = secrets.token_urlsafe(32)
            path.write_text(value + "\n")
            path.chmod(0o600)
            return value

        return replace(
            self,
            sandbox=True,
            secret_key=self.secret_key or persisted("sandbox-secret-key"),
            api_tokens=self.api_tokens or (persisted("sandbox-api-token"),),
            github_webhook_secret=self.github_webhook_secret or persisted("sandbox-webhook-secret"),
            maildir=self.maildir or self.data_dir / "maildir",
        )

    def replace(self, **changes) -> "Settings":
        return replace(self, **changes)
