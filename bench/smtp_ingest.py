"""SMTP ingest and reply-to-comment throughput of the whole gateway, in-process, on real sockets.

Usage: python bench/smtp_ingest.py [-n 300] [-c 4] [--workers 1] [--no-pacing]
                                   [--database postgresql://postgres@127.0.0.1:5432/test]

Starts everything the end-to-end tests start (tests/support/harness.py: GitHub emulator, SMTP
sink as relay, web app, SMTP receiver; a fresh migrated database, SQLite unless --database),
opens one PR and takes the notification mail, then runs two phases one after the other:

1. ingest: N Gmail-shaped replies (unique text each) sent over SMTP by C client threads, each
   reusing its connection for up to 50 messages (aiosmtpd allows 100 commands per verb).
   "accept latency" is one smtplib ``data()`` call: DATA → 354 → body → 250, which includes
   storing the raw message and queueing its job. "accepted/s" is N over the wall time of the phase.
2. drain: W worker threads loop on ``run_until_idle()`` until no job is queued or running.
   "comments on PR" / "receipts in sink" are the times (from the start of the drain) at which all
   N comments were visible on the emulator's PR and all N receipts had reached the sink.

GitHub write pacing (github_app/pacing.py: GitHub's 80 writes a minute, 500 an hour, per installation)
bounds the drain at about 1.3 comments/s; --no-pacing switches pacing and the emulator's limits off to measure
the gateway itself. Peak RSS is the whole process (gateway, emulator, sink and the clients).
Nothing here is asserted: read the figures, compare runs on the same machine.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECONNECT_EVERY = 50


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(p / 100 * len(ordered)))) - 1]


def send_replies(harness, notification, n: int, clients: int, run_id: str):
    """Phase 1: returns (latencies in seconds of accepted messages, non-250 answers, wall seconds)."""
    import re, smtplib, threading  # noqa: E401
    from email.policy import SMTP as SMTP_POLICY

    from tests.support import mail_clients

    to = notification["Reply-To"]
    raws = [re.sub(rb"(?<!\r)\n", b"\r\n", mail_clients.gmail(
        notification, f"Reply {i} of run {run_id}: checked the branch, all good.").as_bytes(policy=SMTP_POLICY))
        for i in range(n)]
    latencies: list[float] = []
    refused: list[str] = []
    lock = threading.Lock()

    def client(indices: list[int]) -> None:
        for start in range(0, len(indices), RECONNECT_EVERY):
            with smtplib.SMTP("127.0.0.1", harness.receiver.port, timeout=60) as smtp:
                smtp.ehlo("client.example.org")
                for i in indices[start:start + RECONNECT_EVERY]:
                    code, text = smtp.mail("ann@example.com")
                    if code == 250:
                        code, text = smtp.rcpt(to)
                    if code == 250:
                        began = time.perf_counter()
                        try:
                            code, text = smtp.data(raws[i])
                        except smtplib.SMTPDataError as exc:  # anything but 354 after DATA
                            code, text = exc.smtp_code, exc.smtp_error
                        took = time.perf_counter() - began
                    with lock:
                        if code == 250:
                            latencies.append(took)
                        else:
                            refused.append(f"{code} {text.decode(errors='replace')}")
                    if code != 250:
                        smtp.rset()

    threads = [threading.Thread(target=client, args=(list(range(k, n, clients)),)) for k in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, refused, time.perf_counter() - began


def drain(harness, workers: int, expected: int, timeout: float):
    """Phase 2: returns (seconds until all comments, until all receipts, until the queue was empty)."""
    import threading

    from sqlalchemy import func, select

    from gateway.runner import make_worker
    from gateway.store import Job
    from tests.support.harness import REPO

    def pending() -> int:
        with harness.ctx.db.session() as session:
            return session.scalar(select(func.count()).select_from(Job)
                                  .where(Job.status.in_(("queued", "running"))))

    deadline = time.monotonic() + timeout
    began = time.perf_counter()
    done = {"comments": None, "receipts": None, "queue": None}

    def work() -> None:
        worker = make_worker(harness.ctx)
        while time.monotonic() < deadline:
            if worker.run_until_idle() == 0:
                if pending() == 0:
                    return
                time.sleep(0.05)  # jobs waiting for their run_after (pacing, retries)

    threads = [threading.Thread(target=work, name=f"bench-worker-{i}") for i in range(workers)]
    for t in threads:
        t.start()
    while time.monotonic() < deadline and None in done.values():
        now = time.perf_counter() - began
        if done["comments"] is None and len(harness.emulator.comments(REPO, 1)) >= expected:
            done["comments"] = now
        if done["receipts"] is None and len(harness.sink.messages) >= expected:
            done["receipts"] = now
        if done["queue"] is None and not any(t.is_alive() for t in threads):
            done["queue"] = now
        time.sleep(0.02)
    for t in threads:
        t.join()
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=300, help="replies to send (default 300)")
    parser.add_argument("-c", "--clients", type=int, default=4, help="concurrent SMTP connections (default 4)")
    parser.add_argument("--workers", type=int, default=1, help="worker threads for the drain (default 1)")
    parser.add_argument("--no-pacing", action="store_true", help="GitHub write pacing and the emulator's limits off")
    parser.add_argument("--database", default="", help="PostgreSQL URL (default: an SQLite file)")
    parser.add_argument("--timeout", type=float, default=900, help="give up the drain after this many s")
    args = parser.parse_args()
    if args.database:
        os.environ["GATEWAY_TEST_DATABASE_URL"] = args.database  # read when tests.support.databases is imported

    import logging
    import resource, statistics, tempfile, uuid  # noqa: E401
    from collections import Counter

    from sqlalchemy import select

    from gateway.store import InboundMessage, Job
    from tests.support.databases import migrated_database
    from tests.support.harness import REPO, start_harness

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log lines between the figures
    with tempfile.TemporaryDirectory(prefix="bench-smtp-") as tmp:
        db, close_db = migrated_database(Path(tmp))
        harness = start_harness(db, Path(tmp))
        try:
            if args.no_pacing:
                harness.ctx.github.pacer.limits = ()
                harness.emulator.set_content_limits(())
            status = harness.open_pull_request()
            if status.get("status") != "notified":
                print(f"could not open the PR: {status}", file=sys.stderr)
                return 1
            notification = harness.sink.clear()[0].message
            latencies, refused, ingest_s = send_replies(harness, notification, args.messages, args.clients,
                                                        uuid.uuid4().hex[:8])
            accepted = len(latencies)
            done = drain(harness, args.workers, accepted, args.timeout)
            with db.session() as session:
                verdicts = Counter(session.scalars(select(InboundMessage.verdict)))
                jobs = session.scalars(select(Job)).all()
                retried = sum(1 for j in jobs if j.attempts > 1)
                job_states = Counter(j.status for j in jobs)
            comments = len(harness.emulator.comments(REPO, 1))
            receipts = len(harness.sink.messages)
        finally:
            harness.close()
            close_db()

    ms = [x * 1000 for x in latencies] or [0.0]
    secs = lambda v: f"{v:.2f} s" if v is not None else f"not reached in {args.timeout:.0f} s"
    rate = lambda v: f"{accepted / v:.1f} /s" if v else "-"
    rows = [
        ("database", "postgresql" if args.database else "sqlite"),
        ("pacing", "off (--no-pacing)" if args.no_pacing else "on (80/min, 500/h per installation)"),
        ("messages / clients / workers", f"{args.messages} / {args.clients} / {args.workers}"),
        ("accepted (250) / refused", f"{accepted} / {len(refused)}"),
        ("accept latency p50", f"{percentile(ms, 50):.1f} ms"),
        ("accept latency p95", f"{percentile(ms, 95):.1f} ms"),
        ("accept latency p99", f"{percentile(ms, 99):.1f} ms"),
        ("accept latency max", f"{max(ms):.1f} ms  (mean {statistics.fmean(ms):.1f} ms)"),
        ("ingest wall time", f"{ingest_s:.2f} s"),
        ("accepted per second", rate(ingest_s)),
        ("drain: all comments on PR", secs(done["comments"])),
        ("drain: all receipts in sink", secs(done["receipts"])),
        ("drain: queue empty", secs(done["queue"])),
        ("comments per second", rate(done["comments"])),
        ("comments / receipts seen", f"{comments} / {receipts}"),
        ("inbound verdicts", ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items()))),
        ("jobs", ", ".join(f"{k} {v}" for k, v in sorted(job_states.items())) + f"; retried {retried}"),
        ("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for answer in Counter(refused).most_common(3):
        print(f"refused: {answer[1]} x {answer[0]}")
    complete = comments >= accepted and receipts >= accepted and not refused
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
