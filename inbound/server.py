"""The SMTP receiver: aiosmtpd listening on a port, configured for the gateway.

Sole purpose: run the protocol edge — bind, announce and enforce SIZE, offer
STARTTLS when a certificate is configured, speak SMTPUTF8, accept a PROXY
protocol header from a load balancer, limit commands and idle time — and
hand every transaction to GatewayHandler.  ``gateway smtp`` calls
``serve_forever``; tests call ``start``/``stop``.

Not for: deciding anything about a message (the pipeline behind the handler
does) or the SMTP replies to RCPT/DATA (``inbound.handler``).

aiosmtpd details that shaped this module (aiosmtpd 1.4.6):

- Its size replies carry no enhanced status code (``552 Error: message size
  exceeds fixed maximum message size`` for ``MAIL FROM ... SIZE=``, ``552
  Error: Too much mail data`` after DATA); they are rewritten to ``552 5.3.4``.
- Its ``Controller`` cannot bind port 0: it probes ``self.port`` to wake the
  server, so the real port is read from the socket before the probe.
- With ``proxy_protocol_timeout`` set, a connection is dropped unless the
  handler's ``handle_PROXY`` returns true (GatewayHandler accepts valid
  headers); the probe therefore sends ``PROXY UNKNOWN``.
- ``command_call_limit`` counts each command verb separately (100 NOOPs, 100
  RCPTs, ...), then answers ``421 4.7.0`` and closes.
- The idle timeout closes the socket silently; we send ``421 4.4.2`` first
  (once the banner is out; a load balancer that never sends its PROXY
  header is just disconnected).
- A failure to bind surfaces only after ``ready_timeout`` (5 s); we wake
  ``start`` at once instead.
- It resolves ``socket.getfqdn()`` for every connection unless given a
  hostname, so the hostname is resolved once here.
"""

from __future__ import annotations

import logging
import signal
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from gateway.domain import TOO_BIG
from inbound.handler import DeliverMany, GatewayHandler, Pipeline, peer_address, smtp_reply

log = logging.getLogger("gateway.inbound")

IDLE_TIMEOUT_REPLY = b"421 4.4.2 Idle timeout, closing connection\r\n"


@dataclass(frozen=True)
class ReceiverOptions:
    host: str = "127.0.0.1"
    port: int = 2525  # 0: any free port (see Receiver.port)
    max_message_bytes: int = 10 * 1024 * 1024
    max_recipients: int = 10
    max_commands: int = 100  # per connection and per command verb
    idle_timeout: float = 300
    tls_cert_file: Path | None = None  # STARTTLS is offered (not required) when both are set
    tls_key_file: Path | None = None
    proxy_protocol: bool = False
    proxy_protocol_timeout: float = 5
    hostname: str | None = None  # banner / EHLO name; default: this host's FQDN
    reuse_port: bool = False  # SO_REUSEPORT: several receiver processes share the port (kernel balances)


class _GatewaySMTP(SMTP):
    """aiosmtpd's SMTP with enhanced status codes where it sends none."""

    _REWRITES = {
        "552 Error: message size exceeds fixed maximum message size": smtp_reply(TOO_BIG).smtp(),
        "552 Error: Too much mail data": smtp_reply(TOO_BIG).smtp(),
    }

    _greeted = False  # the 220 banner went out (not before a PROXY header arrived)

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and status.startswith("220 "):
            self._greeted = True
        if isinstance(status, str) and status in self._REWRITES:
            envelope = self.envelope
            log.warning(
                "SIZE peer=%s mail_from=<%s> rcpt=%s decision=%r reason=%s",
                peer_address(self.session),
                getattr(envelope, "mail_from", "") or "",
                ",".join(getattr(envelope, "rcpt_tos", []) or []),
                self._REWRITES[status],
                status,
            )
            status = self._REWRITES[status]
        await super().push(status)

    def _timeout_cb(self) -> None:
        transport = self.transport
        if self._greeted and transport is not None and not transport.is_closing():
            log.info("peer=%s idle timeout", peer_address(self.session))
            try:
                transport.write(IDLE_TIMEOUT_REPLY)
            except Exception:  # the socket may already be gone
                pass
        super()._timeout_cb()


class _Controller(Controller):
    def __init__(self, handler: GatewayHandler, *, host: str, port: int, proxy_protocol: bool,
                 reuse_port: bool = False, **smtp_kwargs: Any):
        super().__init__(handler, hostname=host, port=port, **smtp_kwargs)
        self._proxy_protocol = proxy_protocol
        self._reuse_port = reuse_port

    def factory(self) -> SMTP:
        return _GatewaySMTP(self.handler, **self.SMTP_kwargs)

    def _create_server(self):
        return self._bind()

    async def _bind(self):
        server = await self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context,
            reuse_port=self._reuse_port or None,
        )
        # With port 0 the kernel chose; remember which, for the probe and for callers.
        self.port = server.sockets[0].getsockname()[1]
        return server

    def _run(self, ready_event: threading.Event) -> None:
        try:
            super()._run(ready_event)
        finally:
            if self._thread_exception is not None:
                ready_event.set()  # let start() raise now, not after ready_timeout

    def _trigger_server(self) -> None:
        if self._thread_exception is not None:  # binding failed
            raise self._thread_exception
        host = self.hostname
        if host in ("", "0.0.0.0", None):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        with socket.create_connection((host, self.port), 1.0) as probe:
            if self._proxy_protocol:
                probe.sendall(b"PROXY UNKNOWN\r\n")
            probe.recv(1024)


class Receiver:
    """The gateway's SMTP server, on its own thread and event loop."""

    def __init__(self, pipeline: Pipeline, options: ReceiverOptions, *, deliver_many: DeliverMany | None = None):
        self.pipeline = pipeline
        self.options = options
        self.deliver_many = deliver_many  # None: pipeline.deliver_many in a thread (see GatewayHandler)
        self.port = options.port
        self._controller: _Controller | None = None
        self._handler: GatewayHandler | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Bind and serve in a background thread; ``self.port`` is then the real port."""
        if self._controller is not None:
            raise RuntimeError("receiver already started")
        options = self.options
        self._executor = ThreadPoolExecutor(thread_name_prefix="gateway-smtp-pipeline")
        handler = GatewayHandler(self.pipeline, max_recipients=options.max_recipients, executor=self._executor,
                                 deliver_many=self.deliver_many)
        tls_context = self._tls_context()
        smtp_kwargs: dict[str, Any] = dict(
            server_hostname=options.hostname or socket.getfqdn(),
            ident="ESMTP",
            data_size_limit=options.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            command_call_limit=options.max_commands,
            timeout=options.idle_timeout,
            tls_context=tls_context,
            require_starttls=False,
            # Mail for our own domain needs no AUTH; refuse it outright
            # instead of checking credentials that cannot exist.
            auth_exclude_mechanism=["LOGIN", "PLAIN"],
        )
        if options.proxy_protocol:
            smtp_kwargs["proxy_protocol_timeout"] = options.proxy_protocol_timeout
        controller = _Controller(
            handler, host=options.host, port=options.port, proxy_protocol=options.proxy_protocol,
            reuse_port=options.reuse_port, **smtp_kwargs
        )
        try:
            controller.start()
        except BaseException:
            controller.stop(no_assert=True)
            if not controller.loop.is_closed():  # the thread gave up before running it
                controller.loop.close()
            self._executor.shutdown(wait=True)
            self._executor = None
            raise
        self._handler = handler
        self._controller = controller
        self.port = controller.port
        log.info(
            "SMTP receiver on %s:%d (SIZE %d, STARTTLS %s, PROXY protocol %s)",
            options.host,
            self.port,
            options.max_message_bytes,
            "offered" if tls_context else "off",
            "expected" if options.proxy_protocol else "off",
        )

    def stop(self, grace: float = 5.0) -> None:
        """Stop listening, give transactions in the pipeline up to ``grace`` seconds, close.

        A client cut off before our 250 retries later; the pipeline sees the
        message twice (the reply flow drops the repeat by Message-ID), which
        is why in-flight transactions are allowed to finish first.
        """
        controller, self._controller = self._controller, None
        handler, self._handler = self._handler, None
        if controller is not None:
            server = controller.server
            if server is not None:
                controller.loop.call_soon_threadsafe(server.close)
            deadline = time.monotonic() + grace
            while handler is not None and handler.in_flight and time.monotonic() < deadline:
                time.sleep(0.02)
            controller.stop()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def serve_forever(self) -> None:
        """Start, wait for SIGTERM or SIGINT, stop.  Call from the main thread."""
        stopping = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("SMTP receiver stopping on %s", signal.Signals(signum).name)
            stopping.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not stopping.wait(1.0):
                pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _tls_context(self) -> ssl.SSLContext | None:
        cert, key = self.options.tls_cert_file, self.options.tls_key_file
        if not (cert and key):
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(cert), str(key))
        return context
