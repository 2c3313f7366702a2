"""Starts the gateway's three processes (web, SMTP receiver, worker), alone or together.

`gateway serve` runs all three in one process; `gateway web|smtp|worker` run one
each (see Procfile). Everything they share lives in the database.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import timedelta

from werkzeug.serving import make_server

from gateway.flows import job_kinds
from gateway.flows.context import FlowContext
from gateway.flows.receive_reply import ReplyDoor
from gateway.flows.retention import keep_pruning
from gateway.queue import Worker, listen_for_jobs
from gateway.web.app import create_app
from inbound.handler import DeliverMany
from inbound.server import Receiver, ReceiverOptions

log = logging.getLogger("gateway")
POLL_SECONDS = 1.0
SQLITE_POLL_SECONDS = 0.1


def make_worker(ctx: FlowContext, **kwargs) -> Worker:
    s = ctx.settings
    # Jobs committed by another process wake a PostgreSQL worker (NOTIFY); on SQLite it must look.
    poll = s.worker_poll_seconds or (SQLITE_POLL_SECONDS if ctx.db.is_sqlite else POLL_SECONDS)
    options = {"lease": timedelta(seconds=s.job_lease_seconds), "poll_interval": poll,
               "backoff_cap": s.job_backoff_cap_seconds, **kwargs}
    return Worker(ctx.db, job_kinds(ctx), clock=ctx.clock, **options)


class WorkerThreads:
    """``GATEWAY_WORKER_THREADS`` workers sharing one wake-up bell, each claiming its own jobs.

    Starting them also makes sure the hourly history pruning is queued (flows.retention).
    """

    def __init__(self, ctx: FlowContext, *, threads: int | None = None, **worker_options):
        self._ctx = ctx
        self._stop = threading.Event()
        count = ctx.settings.worker_threads if threads is None else threads
        bell = listen_for_jobs(ctx.db)
        self.workers = [make_worker(ctx, bell=bell, **worker_options) for _ in range(count)]  # each its own id
        self._threads = [threading.Thread(target=worker.run_forever, args=(self._stop,), name=f"worker-{n}",
                                          daemon=True)
                         for n, worker in enumerate(self.workers)]

    def start(self) -> None:
        try:
            keep_pruning(self._ctx)
        except Exception:  # the database is down: the workers wait for it; the next start queues it
            log.exception("could not queue the history pruning")
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Let running jobs finish; a job still running at the timeout is retaken after its lease."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def make_receiver(ctx: FlowContext, *, port: int | None = None, reuse_port: bool = False,
                  deliver_many: DeliverMany | None = None) -> Receiver:
    s = ctx.settings
    options = ReceiverOptions(host=s.smtp_host, port=s.smtp_port if port is None else port,
                              max_message_bytes=s.max_message_bytes, max_recipients=s.max_recipients,
                              tls_cert_file=s.smtp_tls_cert, tls_key_file=s.smtp_tls_key,
                              proxy_protocol=s.smtp_proxy_protocol, hostname=s.smtp_hostname,
                              reuse_port=reuse_port)
    return Receiver(ReplyDoor(ctx), options, deliver_many=deliver_many)


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
                 worker: bool = True):
        s = ctx.settings
        self.web = DevWebServer(ctx, s.http_host, s.http_port if http_port is None else http_port)
        self.receiver = make_receiver(ctx, port=smtp_port)
        self._workers = WorkerThreads(ctx) if worker else None

    def start(self) -> None:
        self.web.start()
        self.receiver.start()
        if self._workers is not None:
            self._workers.start()

    def stop(self) -> None:
        self.receiver.stop()
        self.web.stop()
        if self._workers is not None:
            self._workers.stop()


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
    """``GATEWAY_WORKER_THREADS`` workers until SIGINT/SIGTERM."""
    workers = WorkerThreads(ctx)
    stop = stop_on_signal()
    workers.start()
    stop.wait()
    log.info("shutting down")
    workers.stop()
