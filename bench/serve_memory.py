"""Resident memory of `gateway serve`: idle after start, then its peak under the SMTP load of smtp_accept.py.

Usage: python bench/serve_memory.py [--settle 3] [-n 500] [-c 4] [--rounds 1] [--interval 0.05]
                                    [--database postgresql://postgres@127.0.0.1:5432/test]

`gateway serve` runs as a child process configured by the environment (tests/support/processes.py;
production-shaped, not the sandbox) against the GitHub emulator and the SMTP sink in this process,
on a fresh migrated database (SQLite file unless --database), GitHub write pacing off so its worker
threads run the replies as fast as they can while the receiver takes more.

Read from /proc/<pid>/status (VmRSS now, VmHWM the kernel's high-water mark):
1. idle: after the ports answer, one GET /health, then --settle seconds of nothing;
2. after opening PR #1 through the API (worker, GitHub client and mail delivery used once);
3. under load: N Gmail-shaped replies per round over -c smtplib connections (same client as
   smtp_accept.py); VmRSS sampled every --interval s during the load and while the worker drains
   the queued replies (until every comment is on the emulator or --drain-timeout), then VmHWM.
Target to check: idle < 120 MB (MiB printed; 120 MB = 114.4 MiB). Nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

MIB = 2 ** 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settle", type=float, default=3.0, help="idle seconds after /health (3)")
    parser.add_argument("-n", "--messages", type=int, default=500, help="replies per round (500)")
    parser.add_argument("-c", "--clients", type=int, default=4, help="concurrent SMTP connections (4)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of N replies (1)")
    parser.add_argument("--interval", type=float, default=0.05, help="VmRSS sampling interval, s (0.05)")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="stop sampling the drain after (120 s)")
    c.database_argument(parser)
    args = parser.parse_args()

    import requests

    from tests.support.harness import REPO

    load_before = c.machine()
    rows: list[tuple[str, str]] = []
    with c.temp_dir("bench-memory-") as tmp:
        stack = c.start_stack(Path(tmp), args.database)
        try:
            began = time.perf_counter()
            serve = stack.gateway(["serve"], GATEWAY_GITHUB_WRITE_LIMITS="off")
            ready_s = time.perf_counter() - began
            health = requests.get(f"http://127.0.0.1:{serve.http_port}/health", timeout=10)
            time.sleep(args.settle)
            idle = c.proc_status(serve.pid)
            threads_idle = _threads(serve.pid)
            _, notification = stack.open_pull_request(serve)
            time.sleep(0.5)
            after_pr = c.proc_status(serve.pid)
            sent = accepted = 0
            with c.MemorySampler(serve.pid, args.interval) as sampler:
                load_began = time.perf_counter()
                for r in range(args.rounds):
                    raws = c.reply_messages(notification, args.messages, f"memory round {r}")
                    run = c.send_smtp(serve.smtp_port, raws, notification["Reply-To"], args.clients)
                    sent += len(raws)
                    accepted += len(run.latencies)
                load_s = time.perf_counter() - load_began
                peak_load = sampler.peak
                deadline = time.monotonic() + args.drain_timeout
                while time.monotonic() < deadline and len(stack.emulator.comments(REPO, 1)) < accepted:
                    time.sleep(0.1)
                drain_s = time.perf_counter() - load_began
            after = c.proc_status(serve.pid)
            comments = len(stack.emulator.comments(REPO, 1))
            threads_after = _threads(serve.pid)
        finally:
            stack.close()

    rows += [
        ("machine before / after", f"{load_before}  /  {c.machine()}"),
        ("code", c.code_version()),
        ("database", c.database_label(args.database)),
        ("process", "gateway serve (web + SMTP receiver + worker threads), write pacing off"),
        ("ready after", f"{ready_s:.2f} s; /health {health.status_code}; then {args.settle:g} s idle"),
        ("idle VmRSS", f"{idle['VmRSS'] / MIB:.1f} MiB = {idle['VmRSS'] / 1e6:.1f} MB   (target < 120 MB)"),
        ("idle VmHWM", f"{idle['VmHWM'] / MIB:.1f} MiB (peak so far, start-up included)"),
        ("idle threads", str(threads_idle)),
        ("after opening PR #1: VmRSS", f"{after_pr['VmRSS'] / MIB:.1f} MiB"),
        ("load", f"{sent} replies ({args.rounds} x {args.messages}) over {args.clients} connections, "
                 f"accepted {accepted} in {load_s:.1f} s"),
        ("peak VmRSS while sending", f"{peak_load / MIB:.1f} MiB (sampled every {args.interval:g} s)"),
        ("peak VmRSS incl. drain", f"{sampler.peak / MIB:.1f} MiB ({sampler.samples} samples, "
                                   f"{comments}/{accepted} comments after {drain_s:.1f} s)"),
        ("VmHWM at the end", f"{after['VmHWM'] / MIB:.1f} MiB"),
        ("VmRSS at the end", f"{after['VmRSS'] / MIB:.1f} MiB; threads {threads_after}"),
    ]
    c.print_rows(rows)
    return 0


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
