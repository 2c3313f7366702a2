"""Reply latency: from the receiver's 250 to the comment existing on GitHub, at a fixed open-loop rate.

Usage: python bench/reply_latency.py [--rate 10] [-n 300] [--senders 4] [--poll SECONDS]
                                     [--split] [--database postgresql://postgres@127.0.0.1:5432/test]
                                     [--profile FILE [--profile-gil]]   (py-spy; FILE.<command> per process)

The gateway runs as `gateway serve` (default: receiver, web and worker threads in one process) or,
with --split, as `gateway smtp` + `gateway worker` (two processes: the worker learns of a new job
by PostgreSQL NOTIFY if the code has it, else by polling), configured by the environment
(tests/support/processes.py) against the GitHub emulator and the SMTP sink in this process, on a
fresh migrated database (SQLite file unless --database). GitHub write pacing is off
(GATEWAY_GITHUB_WRITE_LIMITS=off) and so are the emulator's content limits when it has them
(``set_content_limits(())``): what is measured is the gateway, not a limit.

PR #1 is opened first; then N Gmail-shaped replies (unique text each) are sent at `--rate` per
second, open loop: message i is due at start + i/rate whatever happened to the ones before,
handed to one of `--senders` smtplib connections (reused, 50 messages each). The clock stops
when the emulator stores the comment: its comment table is wrapped so that the insert itself
records ``time.perf_counter()`` (same process, same clock as the client's 250), in the
emulator's request thread before it answers the gateway. Latency = comment stored - 250 received;
a negative value means the comment existed before the client had read its 250 (in `serve` the
worker thread got the GIL before the receiver's event loop could send the reply).
"send slip" is how late a message started against its schedule (all senders busy); a large slip
means the figures include client queueing. Receipts reaching the sink are counted, not timed.
Targets to check (SQLite): p50 < 100 ms, p99 < 500 ms. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import contextlib
import queue
import re
import smtplib
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402


class TimedComments(dict):
    """The emulator's comment table, noting when each comment naming one of our messages is stored."""

    def __init__(self, existing: dict, pattern: re.Pattern):
        super().__init__(existing)
        self.pattern = pattern
        self.stored: dict[int, float] = {}

    def __setitem__(self, key, comment) -> None:
        now = time.perf_counter()
        super().__setitem__(key, comment)
        match = self.pattern.search(getattr(comment, "body", "") or "")
        if match:
            self.stored.setdefault(int(match.group(1)), now)


def send_open_loop(port: int, raws: list[bytes], to: str, rate: float, senders: int):
    """Returns (accepted_at: {i: perf_counter of the 250}, accept latencies s, slips s, refused)."""
    work: queue.Queue = queue.Queue()
    accepted_at: dict[int, float] = {}
    accept_s: list[float] = []
    slips: list[float] = []
    refused: list[str] = []
    lock = threading.Lock()

    def sender() -> None:
        smtp, used = None, 0
        while True:
            item = work.get()
            if item is None:
                break
            i, due = item
            if smtp is None or used >= c.RECONNECT_EVERY:
                if smtp is not None:
                    smtp.quit()
                smtp, used = smtplib.SMTP("127.0.0.1", port, timeout=60), 0
                smtp.ehlo("client.example.org")
            began = time.perf_counter()
            used += 1
            code, text = smtp.mail("ann@example.com")
            if code == 250:
                code, text = smtp.rcpt(to)
            if code == 250:
                try:
                    code, text = smtp.data(raws[i])
                except smtplib.SMTPDataError as exc:
                    code, text = exc.smtp_code, exc.smtp_error
            done = time.perf_counter()
            with lock:
                slips.append(began - due)
                if code == 250:
                    accepted_at[i] = done
                    accept_s.append(done - began)
                else:
                    refused.append(f"{code} {text.decode(errors='replace')}")
            if code != 250:
                smtp.rset()
        if smtp is not None:
            smtp.quit()

    threads = [threading.Thread(target=sender, name=f"sender-{k}") for k in range(senders)]
    for t in threads:
        t.start()
    start = time.perf_counter() + 0.2
    for i in range(len(raws)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        work.put((i, due))
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join()
    return accepted_at, accept_s, slips, refused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10.0, help="replies per second, open loop (10)")
    parser.add_argument("-n", "--messages", type=int, default=300, help="replies to send (300)")
    parser.add_argument("--senders", type=int, default=4, help="SMTP connections the sends are spread over (4)")
    parser.add_argument("--poll", default="", help="GATEWAY_WORKER_POLL_SECONDS for the gateway (default: unset)")
    parser.add_argument("--split", action="store_true", help="gateway smtp + gateway worker instead of serve")
    parser.add_argument("--timeout", type=float, default=60.0, help="wait this long after the last 250 (60 s)")
    c.database_argument(parser)
    c.profile_arguments(parser, "the gateway process(es)")
    args = parser.parse_args()

    from sqlalchemy import select

    from gateway.store import Database, InboundMessage, Job

    overrides = {"GATEWAY_GITHUB_WRITE_LIMITS": "off"}
    if args.poll:
        overrides["GATEWAY_WORKER_POLL_SECONDS"] = args.poll
    from gateway.runner import POLL_SECONDS, SQLITE_POLL_SECONDS

    poll_used = (f"{args.poll} s (GATEWAY_WORKER_POLL_SECONDS)" if args.poll else
                 f"unset: {POLL_SECONDS if args.database else SQLITE_POLL_SECONDS} s, the default on "
                 f"{'PostgreSQL' if args.database else 'SQLite'} (jobs in the same process wake it at once)")
    load_before = c.machine()
    run_id = uuid.uuid4().hex[:8]
    with c.temp_dir("bench-latency-") as tmp:
        stack = c.start_stack(Path(tmp), args.database)
        try:
            emulator_limits = "off (set_content_limits(()))" if hasattr(stack.emulator, "set_content_limits") \
                else "emulator has none"
            serve = stack.gateway(["serve"], **overrides)
            _, notification = stack.open_pull_request(serve)
            if args.split:
                serve.stop()
                receiver = stack.gateway(["smtp"], **overrides)
                stack.gateway(["worker"], **overrides)
            else:
                receiver = serve
            timed = TimedComments(stack.emulator.state.comments, re.compile(rf"latency-{run_id}-(\d+)\b"))
            stack.emulator.state.comments = timed
            raws = c.reply_messages(notification, args.messages, "",
                                    text=lambda i: f"Reply latency-{run_id}-{i}: checked the branch, all good.")
            cpu0 = {p.pid: c.cpu_seconds(p.pid) for p in stack.children if p.process.poll() is None}
            profilers = [c.PySpy(p.pid, Path(f"{args.profile}.{p.command[0]}"), gil=args.profile_gil)
                         for p in stack.children if args.profile and p.process.poll() is None]
            with contextlib.ExitStack() as profiling:
                for profiler in profilers:
                    profiling.enter_context(profiler)
                began = time.perf_counter()
                accepted_at, accept_s, slips, refused = send_open_loop(
                    receiver.smtp_port, raws, notification["Reply-To"], args.rate, args.senders)
                send_wall = time.perf_counter() - began
                deadline = time.monotonic() + args.timeout
                while time.monotonic() < deadline and not set(accepted_at) <= set(timed.stored):
                    time.sleep(0.01)
            cpu = {pid: c.cpu_seconds(pid) - before for pid, before in cpu0.items()}
            try:  # receipts follow the comments; counted, not timed
                stack.sink.wait_for(len(accepted_at), timeout=10)
            except TimeoutError:
                pass
            receipts = len(stack.sink.messages)
            db = Database(stack.database_url)
            with db.session() as session:
                verdicts = Counter(session.scalars(select(InboundMessage.verdict)))
                jobs = Counter(session.scalars(select(Job.status).where(Job.kind == "process_reply")))
                retried = sum(1 for a in session.scalars(select(Job.attempts)) if a > 1)
            db.dispose()
            commands = {p.pid: " ".join(p.command) for p in stack.children if hasattr(p, "command")}
        finally:
            stack.close()

    lat = [(timed.stored[i] - t) * 1000 for i, t in accepted_at.items() if i in timed.stored]
    missing = len(accepted_at) - len(lat)
    lat_or_0 = lat or [0.0]
    acc = [x * 1000 for x in accept_s] or [0.0]
    slip = [x * 1000 for x in slips] or [0.0]
    rows = [
        ("machine before / after", f"{load_before}  /  {c.machine()}"),
        ("code", c.code_version()),
        ("database", c.database_label(args.database)),
        ("gateway", "gateway smtp + gateway worker (2 processes)" if args.split else "gateway serve (1 process)"),
        ("worker poll", poll_used),
        ("GitHub write limits", "off (GATEWAY_GITHUB_WRITE_LIMITS=off); emulator content limits: " + emulator_limits),
        ("rate / messages / senders", f"{args.rate:g}/s open loop / {args.messages} / {args.senders} connections"),
        ("achieved send rate", f"{len(slips) / send_wall:.1f}/s over {send_wall:.1f} s"),
        ("send slip p50 / max", f"{c.percentile(slip, 50):.1f} / {max(slip):.1f} ms"),
        ("accepted / refused", f"{len(accepted_at)} / {len(refused)}"),
        ("DATA->250 p50 / p99", f"{c.percentile(acc, 50):.1f} / {c.percentile(acc, 99):.1f} ms"),
        ("250->comment p50", f"{c.percentile(lat_or_0, 50):.1f} ms   (target < 100 ms on SQLite)"),
        ("250->comment p95", f"{c.percentile(lat_or_0, 95):.1f} ms"),
        ("250->comment p99", f"{c.percentile(lat_or_0, 99):.1f} ms   (target < 500 ms on SQLite)"),
        ("250->comment max / min", f"{max(lat_or_0):.1f} / {min(lat_or_0):.1f} ms"),
        ("comments missing after timeout", f"{missing} (waited up to {args.timeout:g} s)"),
        ("receipts in sink", str(receipts)),
        ("inbound verdicts", ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items()))),
        ("process_reply jobs", ", ".join(f"{k} {v}" for k, v in sorted(jobs.items())) + f"; retried (any kind) {retried}"),
    ]
    for pid, seconds in cpu.items():
        rows.append((f"CPU of {commands.get(pid, pid)}", f"{seconds:.1f} s ({seconds / max(1, len(lat)) * 1000:.1f} ms per reply)"))
    c.print_rows(rows)
    for answer, count in Counter(refused).most_common(3):
        print(f"refused: {count} x {answer}")
    for profiler in profilers:
        print(f"\npy-spy of {profiler.path.suffix[1:]} while sending ({profiler.path}):\n{profiler.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
