"""Drain under GitHub's limits: how close a burst of replies gets to the best GitHub's limits allow.

Usage: python bench/drain_limits.py [-n 500] [--scale 12] [--threads 4] [--clients 4] [--prs 4]
                                    [--database postgresql://postgres@127.0.0.1:5432/test]

GitHub refuses content-creating requests beyond 80 a minute and 500 an hour per installation
(secondary limits). The emulator enforces exactly that and the gateway paces its writes to stay
under it (github_app/pacing.py). Both windows are divided by --scale, emulator and pacing alike
(default 12: 80 per 5 s, 500 per 300 s), so the run takes well under a minute instead of 6.

Setup opens --prs pull requests through `gateway serve` (a child process) and takes their
notification mails; then the limit windows start empty on both sides (the emulator's counters and
the pacer's write log are cleared, so the setup's own writes do not count). The burst is N
Gmail-shaped replies spread over those threads, sent over SMTP by --clients threads.

Figures:
- "burst drained": from the first reply sent until all N comments exist on the emulator.
- "writes span": from the first comment write the emulator accepted to the last.
- "best the limits allow": the earliest schedule of N writes under every window (greedy, starting
  empty: 80 at once, 80 more a window later, ...), from the first write to the N-th. "fraction" is
  best / writes span; "even pace" is the same against N spread evenly at the tightest limit's rate.
- "limit hits": requests the emulator refused with a secondary-limit 403 (the goal is none).
Nothing is asserted: read the figures.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (code_version, database_argument, database_label, machine, print_rows,  # noqa: E402
                     reply_messages, send_smtp, start_stack)

from gateway.config import write_limits_setting  # noqa: E402
from github_app.pacing import DEFAULT_LIMITS as GITHUB_LIMITS  # noqa: E402


def best_schedule(n: int, limits: tuple[tuple[int, float], ...]) -> list[float]:
    """Earliest times of n writes under sliding-window limits, starting with empty windows."""
    times: list[float] = []
    for i in range(n):
        earliest = 0.0
        for count, window in limits:
            if i >= count:
                earliest = max(earliest, times[i - count] + window)
        times.append(max(earliest, times[-1] if times else 0.0))
    return times


def comments_with(emulator, repo: str, numbers: list[int], needle: str) -> int:
    return sum(1 for number in numbers for c in emulator.comments(repo, number) if needle in c["body"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="replies in the burst")
    parser.add_argument("--scale", type=float, default=12.0, help="divide GitHub's limit windows by this")
    parser.add_argument("--threads", type=int, default=4, help="GATEWAY_WORKER_THREADS of the gateway")
    parser.add_argument("--clients", type=int, default=4, help="concurrent SMTP clients")
    parser.add_argument("--prs", type=int, default=4, help="threads (pull requests) the replies go to")
    database_argument(parser)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    from sqlalchemy import delete

    from gateway.store import Database, GitHubWrite
    from tests.support.harness import INSTALLATION_ID, REPO

    limits = tuple((count, window / args.scale) for count, window in GITHUB_LIMITS)
    limits_setting = write_limits_setting(limits)
    with tempfile.TemporaryDirectory(prefix="drain-") as tmp:
        stack = start_stack(Path(tmp), args.database)
        try:
            gateway = stack.gateway(["serve"], GATEWAY_GITHUB_WRITE_LIMITS=limits_setting,
                                    GATEWAY_WORKER_THREADS=str(args.threads))
            notifications, numbers = [], []
            for k in range(args.prs):
                status, mail = stack.open_pull_request(gateway, head=f"burst-{k}")
                notifications.append(mail)
                numbers.append(status["number"])
            # The burst starts with empty windows on both sides.
            stack.emulator.set_content_limits(limits)
            stack.emulator.reset_limits()
            db = Database(stack.database_url)
            with db.session() as session:
                session.execute(delete(GitHubWrite))
            db.dispose()

            label = f"burst {time.time():.0f}"
            per_thread = [reply_messages(mail, args.n // args.prs + (1 if k < args.n % args.prs else 0),
                                         f"{label} thread {k}") for k, mail in enumerate(notifications)]
            # Every thread's replies at once, as a burst from several reporters would arrive.
            results = [None] * args.prs

            def send(k: int) -> None:
                results[k] = send_smtp(gateway.smtp_port, per_thread[k], notifications[k]["Reply-To"],
                                       max(1, args.clients // args.prs))

            senders = [threading.Thread(target=send, args=(k,)) for k in range(args.prs)]
            started = time.perf_counter()
            for t in senders:
                t.start()
            for t in senders:
                t.join()
            accepted_at = time.perf_counter() - started
            accepted = sum(len(r.latencies) for r in results)
            deadline = time.monotonic() + args.timeout
            posted = 0
            while time.monotonic() < deadline:
                posted = comments_with(stack.emulator, REPO, numbers, label)
                if posted >= accepted:
                    break
                time.sleep(0.05)
            drained = time.perf_counter() - started
            writes = stack.emulator.content_writes(INSTALLATION_ID)
            hits = stack.emulator.limit_hits_for(INSTALLATION_ID)
            span = writes[-1] - writes[0] if len(writes) > 1 else 0.0
            best = best_schedule(len(writes), limits)
            best_span = best[-1] - best[0] if best else 0.0
            even_span = (len(writes) - 1) * min(window / count for count, window in limits)
            peak = {}
            for count, window in limits:
                j, most = 0, 0
                for i, at in enumerate(writes):
                    while writes[j] <= at - window:
                        j += 1
                    most = max(most, i - j + 1)
                peak[(count, window)] = most
        finally:
            stack.close()

    print_rows([
        ("machine", machine()),
        ("code", code_version()),
        ("database", database_label(args.database)),
        ("limits (emulator and pacing)", f"{limits_setting}  (GitHub's {write_limits_setting(GITHUB_LIMITS)} with windows / {args.scale:g})"),
        ("burst", f"{args.n} replies to {args.prs} PRs, {args.clients} SMTP clients, "
                  f"{args.threads} worker threads"),
        ("accepted (250)", f"{accepted} in {accepted_at:.2f} s"),
        ("comments posted", f"{posted}"),
        ("burst drained", f"{drained:.2f} s after the first reply was sent"),
        ("writes accepted by GitHub", f"{len(writes)} over {span:.2f} s"),
        ("best the limits allow", f"{best_span:.2f} s  -> fraction {best_span / span:.3f}" if span else "-"),
        ("even pace at the limit", f"{even_span:.2f} s  -> fraction {even_span / span:.3f}" if span else "-"),
        ("most writes in any window", ", ".join(f"{most}/{count} in {window:g} s"
                                                for (count, window), most in peak.items())),
        ("limit hits (secondary 403)", str(hits)),
    ])


if __name__ == "__main__":
    main()
