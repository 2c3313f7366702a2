"""Webhook ingestion rate of the gateway against a bare Flask endpoint, same server setup, same client, same run.

Usage: python bench/webhook_ingest.py [-n 1000] [-c 4] [--rounds 3] [--warmup 20] [--web-workers 2]
                                      [--server gunicorn|werkzeug]
                                      [--database postgresql://postgres@127.0.0.1:5432/test]
                                      [--profile FILE [--profile-gil]]   (py-spy the gateway during the rounds)

Both servers are child processes on 127.0.0.1, served the same way:
- gunicorn (default, the production path): the gateway as `gateway web --workers W` (gateway/cli.py:
  gunicorn sync workers, access log to stdout) and bench/_bare_flask.py configured identically.
  gunicorn's sync workers close the connection after every response, so every request is a new
  TCP connection for both (the client offers keep-alive; the servers decline it).
- werkzeug: the gateway as `gateway serve` (werkzeug's threaded dev server; its SMTP receiver and
  worker thread are up too, idle but for the jobs the deliveries queue) and the bare app on
  ``make_server(threaded=True)``.

The gateway gets a fresh migrated database (SQLite file unless --database) and PR #1 opened first
through `gateway serve`, so the deliveries are about a PR that has a mail thread. Each delivery is
an `issue_comment` / `created` event by a maintainer on PR #1 (tests/support/webhook_payloads.py,
~2.9 KB JSON, unique comment id and text), POSTed to /webhooks/github with GitHub's headers, a valid
X-Hub-Signature-256 and a unique X-GitHub-Delivery; the gateway verifies the signature, checks
the delivery id, stores the delivery and queues its handle_github_event job in one transaction,
and answers 202. No worker runs in gunicorn mode: the jobs stay queued (ingestion only).
Bodies and signatures are built before the clock starts. The client is `-c` threads in this
process, each an http.client connection (re-opened whenever the server closes it). Rounds
alternate bare, gateway, ... "server CPU" is the child's (and its gunicorn workers') user+system
CPU per request. (wrk is not used: not installed here, and every delivery needs its own id.)
Target to check: gateway/bare >= 0.5. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402


@dataclass
class HttpRun:
    latencies: list[float]
    failed: list[str]
    wall: float
    client_cpu: float
    server_cpu: float
    server_sys: float
    connections: int

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0


def deliveries(n: int, label: str) -> list[tuple[bytes, dict[str, str]]]:
    """N signed issue_comment deliveries on PR #1, each with its own delivery id."""
    from tests.support import webhook_payloads as wp
    from tests.support.harness import APP_ID, WEBHOOK_SECRET

    built = []
    for i in range(n):
        body = json.dumps(wp.issue_comment(1, f"Webhook {i} of {label}: looks good to me, one nit below.",
                                           login="maria-maintainer")).encode()
        built.append((body, {
            "Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/5f3c1a2",
            "X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "4242", "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-GitHub-Hook-Installation-Target-ID": str(APP_ID),
            "X-Hub-Signature-256": wp.signature(WEBHOOK_SECRET, body)}))
    return built


def post_all(port: int, requests_: list[tuple[bytes, dict]], clients: int, server_pid: int) -> HttpRun:
    latencies: list[float] = []
    failed: list[str] = []
    opened = [0]
    lock = threading.Lock()

    class Counting(http.client.HTTPConnection):
        def connect(self):
            super().connect()
            with lock:
                opened[0] += 1

    def client(indices: list[int]) -> None:
        conn = Counting("127.0.0.1", port, timeout=60)
        for i in indices:
            body, headers = requests_[i]
            began = time.perf_counter()
            try:
                conn.request("POST", "/webhooks/github", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                status = f"{type(exc).__name__}: {exc}"
            took = time.perf_counter() - began
            with lock:
                if status == 202:
                    latencies.append(took)
                else:
                    failed.append(str(status))
        conn.close()

    timing = c.run_clients(client, len(requests_), clients, server_pid)
    return HttpRun(latencies, failed, timing.wall, timing.client_cpu, timing.server_cpu, timing.server_sys,
                   opened[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=1000, help="deliveries per round and server (1000)")
    parser.add_argument("-c", "--clients", type=int, default=4, help="concurrent client connections (4)")
    c.rounds_arguments(parser, "requests")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers for both (2, gateway web's default)")
    parser.add_argument("--server", choices=("gunicorn", "werkzeug"), default="gunicorn")
    c.database_argument(parser)
    c.profile_arguments(parser, "the gateway (and its gunicorn workers)")
    args = parser.parse_args()

    from sqlalchemy import func, select

    from gateway.store import Database, Job, WebhookDelivery

    load_before = c.machine()
    with c.temp_dir("bench-webhook-") as tmp:
        stack = c.start_stack(Path(tmp), args.database)
        try:
            opener = stack.gateway(["serve"], GATEWAY_GITHUB_WRITE_LIMITS="off")
            stack.open_pull_request(opener)
            if args.server == "gunicorn":
                opener.stop()
                gateway = stack.gateway(["web", "--workers", str(args.web_workers)])
            else:
                gateway = opener
            port = c.free_port()
            argv = [sys.executable, str(c.ROOT / "bench/_bare_flask.py"), args.server, str(port),
                    str(args.web_workers)]
            bare = stack.child(c.Child(argv, ports=[port], log_path=Path(tmp) / "bare-flask.log").start())
            servers = {f"bare Flask ({args.server})": (bare.pid, port),
                       f"gateway {'web' if args.server == 'gunicorn' else 'serve'}": (gateway.pid, gateway.http_port)}
            time.sleep(1.0)  # gunicorn workers import the app after the port is bound
            for name, (pid, p) in servers.items():
                warm = post_all(p, deliveries(args.warmup, f"warm-up {name}"), min(args.clients, args.warmup), pid)
                if warm.failed:
                    print(f"{name} failed warm-up requests: {Counter(warm.failed).most_common(2)}", file=sys.stderr)
                    return 1
            runs, profiler = c.alternating_rounds(args, servers, lambda name, pid, p, r: post_all(
                p, deliveries(args.requests, f"round {r} {name}"), args.clients, pid), gateway.pid)
            body_size = len(deliveries(1, "size")[0][0])
            rss = c.proc_status(gateway.pid)
            db = Database(stack.database_url)
            with db.session() as session:
                stored = session.scalar(select(func.count()).select_from(WebhookDelivery))
                jobs = Counter(session.execute(select(Job.status).where(Job.kind == "handle_github_event")).scalars())
            db.dispose()
        finally:
            stack.close()

    rows = [
        ("machine before / after", f"{load_before}  /  {c.machine()}"),
        ("code", c.code_version()),
        ("database", c.database_label(args.database)),
        ("served by", f"gunicorn {args.web_workers} sync workers, both (gateway web)" if args.server == "gunicorn"
         else "werkzeug threaded dev server, both (gateway serve)"),
        ("requests x rounds / clients", f"{args.requests} x {args.rounds} per server (+{args.warmup} warm-up) / "
                                        f"{args.clients} threads, http.client"),
        ("event", f"issue_comment.created on PR #1 (which has a mail thread), {body_size} bytes JSON, signed"),
    ]
    medians = {}
    for name, server_runs in runs.items():
        rates = [run.rate for run in server_runs]
        medians[name] = statistics.median(rates)
        ms = [x * 1000 for run in server_runs for x in run.latencies] or [0.0]
        rows += [
            (f"{name}: requests/s", c.spread(rates)),
            (f"{name}: per round", ", ".join(f"{x:.1f}" for x in rates)),
            (f"{name}: latency p50/p95/p99/max",
             f"{c.percentile(ms, 50):.1f} / {c.percentile(ms, 95):.1f} / {c.percentile(ms, 99):.1f} / "
             f"{max(ms):.1f} ms"),
            (f"{name}: server CPU per request",
             c.spread([run.server_cpu / max(1, len(run.latencies)) * 1000 for run in server_runs], "{:.2f} ms")),
            (f"{name}:   of which system",
             c.spread([run.server_sys / max(1, len(run.latencies)) * 1000 for run in server_runs], "{:.2f} ms")),
            (f"{name}: client CPU per request",
             c.spread([run.client_cpu / max(1, len(run.latencies)) * 1000 for run in server_runs], "{:.2f} ms")),
            (f"{name}: connections / requests",
             f"{sum(run.connections for run in server_runs)} / {sum(len(run.latencies) + len(run.failed) for run in server_runs)}"),
            (f"{name}: failed", ", ".join(f"{v} x {k}" for k, v in Counter(
                f for run in server_runs for f in run.failed).most_common(3)) or "0"),
        ]
    bare_name, gw_name = list(runs)
    ratios = [g.rate / b.rate for b, g in zip(runs[bare_name], runs[gw_name]) if b.rate]
    rows += [
        ("ratio gateway/bare (medians)", f"{medians[gw_name] / medians[bare_name]:.2f}   (target >= 0.5)"),
        ("ratio per round", ", ".join(f"{x:.2f}" for x in ratios)),
        ("gateway deliveries stored", str(stored)),
        ("gateway handle_github_event jobs", ", ".join(f"{k} {v}" for k, v in sorted(jobs.items()))),
        ("gateway master RSS now", f"{rss['VmRSS'] / 2**20:.0f} MiB"),
    ]
    c.print_rows(rows)
    if profiler:
        print(f"\npy-spy of the gateway during the rounds ({args.profile}):\n{profiler.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
