"""Hand a composed mail to the next hop and say how it went.

Sole purpose: deliver one message to the configured SMTP relay and classify
the outcome as delivered, `TransientError` (try again later) or
`PermanentError` (a person must act).
Not here: queueing, retries and backoff (the worker owns those), composing
(`outbound.compose`), DKIM signing, reading settings (a `RelayConfig` is
passed in), and the sandbox's Maildir (`outbound.maildir`; `MaildirRelay`
is re-exported here).

Secrets: the relay password never appears in a repr, an error message or
`redacted()`; errors name the relay by host and port only.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit

from gateway.errors import PermanentError, TransientError
from outbound.envelope import check_envelope
from outbound.maildir import MaildirRelay  # noqa: F401 (re-exported)

_TRUE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
# Never echo a piece of the URL in an error: an unencoded "/", "?" or "#" in
# the password makes urlsplit cut it into the host, port, query or fragment.
_ENCODE_HINT = " (percent-encode special characters in the user name and password)"


@dataclass(frozen=True)
class RelayConfig:
    """Where and how to reach the SMTP relay."""

    scheme: str  # "smtp" | "smtps"
    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    starttls: bool
    timeout: float = 30

    def __post_init__(self):
        if self.scheme not in ("smtp", "smtps"):
            raise ValueError("relay scheme must be smtp or smtps")
        if self.scheme == "smtps" and self.starttls:
            raise ValueError("smtps is already TLS; starttls applies to smtp only")
        if (self.username is None) != (self.password is None):
            raise ValueError("relay user name and password go together")

    @classmethod
    def from_url(cls, url: str) -> "RelayConfig":
        """Parse smtp://user:pass@host:587?starttls=true or smtps://user:pass@host:465."""
        try:
            parts = urlsplit(url.strip())
        except ValueError:
            raise ValueError("relay URL cannot be parsed" + _ENCODE_HINT) from None
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            raise ValueError("relay URL must start with smtp:// or smtps://")
        if parts.fragment or parts.path not in ("", "/"):
            raise ValueError("relay URL must not have a path or #fragment" + _ENCODE_HINT)
        userinfo, at, hostport = parts.netloc.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            if not user or not colon:
                raise ValueError("relay URL credentials must be user:password@" + _ENCODE_HINT)
            username, password = unquote(user), unquote(secret)
        host, port_text = _split_hostport(hostport)
        options = _parse_options(parts.query)
        starttls = options.get("starttls", False)
        if scheme == "smtps" and starttls:
            raise ValueError("relay URL: smtps is already TLS; starttls applies to smtp only")
        if port_text:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ValueError("relay URL port must be a number from 1 to 65535" + _ENCODE_HINT)
            port = int(port_text)
        else:
            port = 465 if scheme == "smtps" else 587 if starttls else 25
        return cls(scheme=scheme, host=host, port=port, username=username, password=password,
                   starttls=starttls, timeout=options.get("timeout", 30))

    def redacted(self) -> str:
        """The URL with the password replaced by ***, for logs and health pages."""
        user = ""
        if self.username is not None:
            # Some providers (Postmark) use the same token as user and password.
            shown = "***" if self.username == self.password else quote(self.username, safe="")
            user = f"{shown}:***@"
        query = "?starttls=true" if self.starttls else ""
        return f"{self.scheme}://{user}{_bracket(self.host)}:{self.port}{query}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _split_hostport(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("relay URL has a malformed [IPv6] host" + _ENCODE_HINT)
        port_text = rest[1:]
    else:
        host, _, port_text = hostport.partition(":")
    if not host or any(ch.isspace() for ch in host):
        raise ValueError("relay URL has no valid host" + _ENCODE_HINT)
    return host, port_text


def _parse_options(query: str) -> dict:
    options: dict = {}
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        key, value = key.lower(), unquote(value).strip().lower()
        if key in options or key not in ("starttls", "timeout"):
            raise ValueError("relay URL options are starttls and timeout, each at most once"
                             + _ENCODE_HINT)
        if key == "starttls":
            if value not in _TRUE:
                raise ValueError("relay URL starttls must be true/false/1/0/yes/no")
            options[key] = _TRUE[value]
        else:
            try:
                options[key] = float(value)
            except ValueError:
                options[key] = 0.0
            if not 0 < options[key] <= 600:
                raise ValueError("relay URL timeout must be seconds between 0 and 600")
    return options


class Relay(Protocol):
    """What the outbox worker needs from a relay."""

    def send(self, message: EmailMessage | bytes, *, envelope_from: str,
             recipients: list[str]) -> None: ...

    def check(self) -> None: ...


class SmtpRelay:
    """Delivery over SMTP (STARTTLS or implicit TLS, optional AUTH) to one relay."""

    def __init__(self, config: RelayConfig, *, local_hostname: str | None = None,
                 ssl_context: ssl.SSLContext | None = None):
        self.config = config
        self._local_hostname = local_hostname
        if ssl_context is None and (config.scheme == "smtps" or config.starttls):
            ssl_context = ssl.create_default_context()
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        return f"SmtpRelay({self.config.redacted()})"

    def send(self, message: EmailMessage | bytes, *, envelope_from: str,
             recipients: list[str]) -> None:
        """Deliver or raise; an envelope is explicit so Bcc-like routing never comes from headers."""
        check_envelope(envelope_from, recipients)
        try:
            smtp = self._connect()
            try:
                if isinstance(message, EmailMessage):
                    refused = smtp.send_message(message, from_addr=envelope_from,
                                                to_addrs=list(recipients))
                else:
                    refused = smtp.sendmail(envelope_from, list(recipients), message)
            except BaseException:
                smtp.close()
                raise
        except (smtplib.SMTPException, OSError) as exc:
            raise self._classify(exc) from exc
        # The relay has the message now: a failing QUIT must not make the
        # worker send it a second time.
        _quit_quietly(smtp)
        if refused:
            raise PermanentError(
                f"relay {self._where()} accepted the mail for some recipients but refused "
                f"{self._refusals(refused)}; not retried, to avoid duplicates")

    def check(self) -> None:
        """Connect, greet, (STARTTLS, log in), NOOP, QUIT: is the relay usable right now?"""
        try:
            smtp = self._connect()
            try:
                code, text = smtp.noop()
                if code != 250:
                    raise smtplib.SMTPResponseException(code, text)
                smtp.quit()
            finally:
                smtp.close()
        except (smtplib.SMTPException, OSError) as exc:
            raise self._classify(exc) from exc

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        if cfg.scheme == "smtps":
            smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, local_hostname=self._local_hostname,
                                    timeout=cfg.timeout, context=self._ssl_context)
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, local_hostname=self._local_hostname,
                                timeout=cfg.timeout)
        try:
            smtp.ehlo_or_helo_if_needed()
            if cfg.starttls:
                smtp.starttls(context=self._ssl_context)
                smtp.ehlo()
            if cfg.username is not None:
                smtp.login(cfg.username, cfg.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _where(self) -> str:
        return f"{_bracket(self.config.host)}:{self.config.port}"

    def _safe(self, text: str | bytes) -> str:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        text = " ".join(text.split())
        if self.config.password:
            text = text.replace(self.config.password, "***")
        return text

    def _refusals(self, refused: dict) -> str:
        return "; ".join(f"{rcpt}: {code} {self._safe(text)}" for rcpt, (code, text) in refused.items())

    def _classify(self, exc: BaseException) -> Exception:
        """4xx, disconnects and network trouble are transient; 5xx and TLS/config problems are not."""
        where = self._where()
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in exc.recipients.values()]
            kind = TransientError if codes and all(400 <= c < 500 for c in codes) else PermanentError
            return kind(f"relay {where} refused {self._refusals(exc.recipients)}")
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return TransientError(f"relay {where} closed the connection: {self._safe(str(exc))}")
        if isinstance(exc, smtplib.SMTPResponseException):
            what = {
                smtplib.SMTPSenderRefused: "refused the sender",
                smtplib.SMTPAuthenticationError: "rejected the login (check user name and password)",
                smtplib.SMTPDataError: "refused the message",
                smtplib.SMTPConnectError: "refused the session",
                smtplib.SMTPHeloError: "refused EHLO/HELO",
            }.get(type(exc), "answered")
            message = f"relay {where} {what}: {exc.smtp_code} {self._safe(exc.smtp_error)}"
            return PermanentError(message) if 500 <= exc.smtp_code < 600 else TransientError(message)
        if isinstance(exc, smtplib.SMTPException):
            # Not supported STARTTLS/AUTH, no usable AUTH mechanism: configuration.
            return PermanentError(f"relay {where}: {self._safe(str(exc))}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PermanentError(f"TLS certificate of relay {where} not trusted: "
                                  f"{self._safe(exc.verify_message or str(exc))}")
        if isinstance(exc, ssl.SSLError):
            return PermanentError(f"TLS with relay {where} failed ({self._safe(exc.reason or str(exc))});"
                                  " check smtp vs smtps and the port")
        if isinstance(exc, ConnectionRefusedError):
            return TransientError(f"relay {where} refused the connection")
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return TransientError(f"relay {where} timed out after {self.config.timeout:g}s")
        if isinstance(exc, socket.gaierror):
            return TransientError(f"relay host {self.config.host} could not be resolved")
        return TransientError(f"relay {where} unreachable: {self._safe(str(exc))}")


def _quit_quietly(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()

