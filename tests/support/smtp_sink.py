"""A real SMTP server for tests: capture what the gateway sends, or make it fail.

`SmtpSink` runs aiosmtpd on 127.0.0.1 on an ephemeral port in a background
thread. Tests point a relay at `sink.url`, then read `sink.messages` /
`sink.wait_for(n)`. `fail_next` injects 4xx/5xx replies at MAIL, RCPT or DATA
to exercise retry classification; `hold_next` keeps a mail but delays its 250;
`stop()` then `start()` refuses connections in between, on the same port;
`auth` turns on SMTP AUTH; `tls_cert` turns on STARTTLS (required, so a
plaintext client fails) or, with `implicit_tls=True`, an smtps listener.

Not a mail store or a receiver under test: the gateway's own SMTP receiver
lives in `inbound/`. Always stop the sink (context manager or fixture) so no
server thread outlives its test.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import email
import email.policy
import ipaddress
import re
import ssl
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

Stage = Literal["MAIL", "RCPT", "DATA"]
_REPLY = re.compile(r"[245]\d\d( .*)?")


@dataclass(frozen=True)
class ReceivedMail:
    envelope_from: str
    recipients: list[str]
    raw: bytes
    message: EmailMessage


class _EphemeralController(Controller):
    """Controller bound to port 0: learns the real port before its self-test connection."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class _Handler:
    def __init__(self, sink: "SmtpSink"):
        self._sink = sink

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self._sink._auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        failure = self._sink._take_failure("MAIL")
        if failure:
            return failure
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        failure = self._sink._take_failure("RCPT")
        if failure:
            return failure
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = self._sink._take_failure("DATA") or self._sink.reply_code or "250 OK"
        if reply.startswith("2"):
            raw = bytes(envelope.original_content)
            self._sink._record(ReceivedMail(
                envelope_from=envelope.mail_from,
                recipients=list(envelope.rcpt_tos),
                raw=raw,
                message=email.message_from_bytes(raw, policy=email.policy.default),
            ))
            delay = self._sink._take_hold()
            if delay:
                await asyncio.sleep(delay)
        return reply


class SmtpSink:
    """aiosmtpd Controller on 127.0.0.1, ephemeral port, capturing messages."""

    host = "127.0.0.1"

    def __init__(self, *, reply_code: str | None = None, auth: tuple[str, str] | None = None,
                 tls_cert: tuple[Path, Path] | None = None, implicit_tls: bool = False, port: int = 0):
        """reply_code: answer every DATA with this instead of "250 OK" (e.g. "554 5.7.1 no").

        auth: (user, password) required before MAIL; tls_cert: (cert.pem, key.pem).
        port: 0 picks a free one. After ``stop()``, ``start()`` listens again on the port it had,
        keeping what it captured: between the two, the relay refuses connections.
        """
        if reply_code is not None and not _REPLY.fullmatch(reply_code):
            raise ValueError("reply_code must look like '554 5.7.1 text'")
        if implicit_tls and not tls_cert:
            raise ValueError("implicit_tls needs tls_cert")
        self.reply_code = reply_code
        self._auth = auth
        self._implicit_tls = implicit_tls
        self._tls = None
        if tls_cert:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(str(tls_cert[0]), str(tls_cert[1]))
        self._lock = threading.Condition()
        self._messages: list[ReceivedMail] = []
        self._failures: dict[str, list[list]] = {"MAIL": [], "RCPT": [], "DATA": []}
        self._holds: list[list] = []
        self.held = 0  # messages whose 250 was held back so far
        self._controller: _EphemeralController | None = None
        self._port = port

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> "SmtpSink":
        if self._controller is not None:
            raise RuntimeError("SmtpSink already started")
        kwargs: dict = {}
        if self._auth:
            # AUTH over plaintext is fine on loopback in tests; "required" is
            # enforced at MAIL (see _Handler) to avoid aiosmtpd's warning.
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        if self._tls and self._implicit_tls:
            kwargs["ssl_context"] = self._tls
        elif self._tls:
            kwargs.update(tls_context=self._tls, require_starttls=True)
        controller = _EphemeralController(_Handler(self), hostname=self.host, port=self._port,
                                          ready_timeout=5.0, **kwargs)
        controller.start()
        self._controller = controller
        self._port = controller.port
        return self

    def stop(self) -> None:
        if self._controller is not None:
            controller, self._controller = self._controller, None
            controller.stop()

    def __enter__(self) -> "SmtpSink":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._controller is None:
            raise RuntimeError("SmtpSink not started")
        return self._controller.port

    @property
    def url(self) -> str:
        if self._implicit_tls:
            return f"smtps://{self.host}:{self.port}"
        suffix = "?starttls=true" if self._tls else ""
        return f"smtp://{self.host}:{self.port}{suffix}"

    # --- what tests use ----------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> list[ReceivedMail]:
        """Forget (and return) what arrived so far, so a test can look at what comes next."""
        with self._lock:
            taken, self._messages = list(self._messages), []
            return taken

    def fail_next(self, code_and_text: str, stage: Stage, times: int = 1) -> None:
        """Answer the next `times` commands of `stage` with e.g. "451 4.3.0 try later"."""
        if stage not in self._failures:
            raise ValueError("stage must be MAIL, RCPT or DATA")
        if not re.fullmatch(r"[45]\d\d( .*)?", code_and_text):
            raise ValueError("failure must be a 4xx or 5xx reply like '451 4.3.0 try later'")
        with self._lock:
            self._failures[stage].append([code_and_text, times])

    def hold_next(self, seconds: float, times: int = 1) -> None:
        """Keep the next `times` messages but answer their DATA only after `seconds`: the relay
        has the mail while the sender does not know it yet (to crash the sender right then)."""
        with self._lock:
            self._holds.append([seconds, times])

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """Block until at least `count` mails arrived; fail loudly instead of hanging."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"expected {count} mails, got {len(self._messages)}")
                self._lock.wait(left)
            return list(self._messages)

    # --- called from the server thread ----------------------------------------

    def _take_failure(self, stage: str) -> str | None:
        with self._lock:
            queue = self._failures[stage]
            if not queue:
                return None
            queue[0][1] -= 1
            reply = queue[0][0]
            if queue[0][1] <= 0:
                queue.pop(0)
            return reply

    def _take_hold(self) -> float | None:
        with self._lock:
            if not self._holds:
                return None
            seconds = self._holds[0][0]
            self._holds[0][1] -= 1
            if self._holds[0][1] <= 0:
                self._holds.pop(0)
            self.held += 1
            return seconds

    def _record(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._messages.append(mail)
            self._lock.notify_all()

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self._auth is not None
              and auth_data.login == self._auth[0].encode()
              and auth_data.password == self._auth[1].encode())
        return AuthResult(success=ok, handled=False)


def make_self_signed_cert(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """Write a throw-away certificate and key for `host`; returns (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = Path(directory) / "cert.pem", Path(directory) / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
