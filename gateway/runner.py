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


def wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def run_all(ctx: FlowContext, on_ready=None) -> None:
    """Web, SMTP and worker in one process until SIGINT/SIGTERM."""
    web = DevWebServer(ctx, ctx.settings.http_host, ctx.settings.http_port)
    receiver = make_receiver(ctx)
    worker = make_worker(ctx)
    stop = threading.Event()
    worker_thread = threading.Thread(target=worker.run_forever, args=(stop,), name="worker", daemon=True)
    web.start()
    receiver.start()
    worker_thread.start()
    if on_ready:
        on_ready(web, receiver)
    try:
        wait_for_signal()
    finally:
        log.info("shutting down")
        stop.set()
        receiver.stop()
        web.stop()
        worker_thread.join(timeout=30)


def run_worker(ctx: FlowContext) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    make_worker(ctx).run_forever(stop)
