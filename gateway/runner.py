"""Starts the gateway's three processes (web, SMTP receiver, worker), alone or together.

`gateway serve` runs all three in one process; `gateway web|smtp|worker` run one
each (see Procfile). Everything they share lives in the database.
"""
from __future__ import annotations

import logging
import signal
import threading

from werkzeug.serving import make_server

from gateway.flows import job_kinds
from gateway.flows.context import FlowContext
from gateway.flows.reply import ReplyPipeline
from gateway.queue import Worker
from gateway.web.app import create_app
from inbound.server import Receiver, ReceiverOptions

log = logging.getLogger("gateway")


def make_worker(ctx: FlowContext, **kwargs) -> Worker:
    return Worker(ctx.db, job_kinds(ctx), clock=ctx.clock, **kwargs)


def make_receiver(ctx: FlowContext, *, port: int | None = None) -> Receiver:
    s = ctx.settings
    options = ReceiverOptions(host=s.smtp_host, port=s.smtp_port if port is None else port,
                              max_message_bytes=s.max_message_bytes, max_recipients=s.max_recipients,
                              tls_cert_file=s.smtp_tls_cert, tls_key_file=s.smtp_tls_key,
                              proxy_protocol=s.smtp_proxy_protocol, hostname=s.smtp_hostname)
    return Receiver(ReplyPipeline(ctx), options)


class DevWebServer:
    """The Flask app on werkzeug's threaded server, for `serve`, the demo and tests."""

    def __init__(self, ctx: FlowContext, host: str, port: int):
        self.server = make_server(host, port, create_app(ctx), threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, name="web", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


class LocalGateway:
    """Web app, SMTP receiver and (optionally) a worker thread, started and stopped together.

    `gateway serve`, `gateway demo` and the end-to-end tests all run the gateway this way;
    ports default to the settings, 0 picks free ones (read them back from .web / .receiver).
    """

    def __init__(self, ctx: FlowContext, *, http_port: int | None = None, smtp_port: int | None = None,
                 worker: bool = True, poll_interval: float = 0.5):
        s = ctx.settings
        self.web = DevWebServer(ctx, s.http_host, s.http_port if http_port is None else http_port)
        self.receiver = make_receiver(ctx, port=smtp_port)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=make_worker(ctx, poll_interval=poll_interval).run_forever,
                                        args=(self._stop,), name="worker", daemon=True) if worker else None

    def start(self) -> None:
        self.web.start()
        self.receiver.start()
        if self._worker is not None:
            self._worker.start()

    def stop(self) -> None:
        self._stop.set()
        self.receiver.stop()
        self.web.stop()
        if self._worker is not None:
            self._worker.join(timeout=30)


def stop_on_signal() -> threading.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def run_all(ctx: FlowContext, on_ready=None) -> None:
    """Web, SMTP and worker in one process until SIGINT/SIGTERM."""
    gateway = LocalGateway(ctx)
    stop = stop_on_signal()
    gateway.start()
    if on_ready:
        on_ready(gateway.web, gateway.receiver)
    try:
        stop.wait()
    finally:
        log.info("shutting down")
        gateway.stop()


def run_worker(ctx: FlowContext) -> None:
    make_worker(ctx).run_forever(stop_on_signal())
