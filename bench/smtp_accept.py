"""SMTP acceptance rate of the gateway's receiver against a bare aiosmtpd server, same client, same run.

Usage: python bench/smtp_accept.py [-n 500] [-c 4] [--rounds 3] [--warmup 20] [--command smtp|serve] [--processes 1]
                                   [--database postgresql://postgres@127.0.0.1:5432/test]
                                   [--profile FILE [--profile-gil]]   (py-spy the gateway during the rounds)

Both servers are child processes on 127.0.0.1:
- gateway: `gateway smtp` (default; or `gateway serve`, whose worker thread then also runs the queued
  replies during the rounds) configured by the environment (tests/support/processes.py), on a fresh
  migrated database (SQLite file unless --database), with PR #1 opened first through `gateway serve`
  so the replies go to a live thread. Every accepted reply went through: signed reply token
  verified, thread looked up (at RCPT from a 5 s memory of live threads), headers parsed, sender
  checked as a participant, raw message stored and its process_reply job queued in a transaction
  committed to disk (fsync), then 250. `gateway smtp` is a protocol process (SMTP, RCPT checks)
  and a writer process (reading, deciding, storing: gateway/smtp_writer.py); messages whose DATA
  ends while a commit is under way share the next one. "server CPU" counts both processes.
- bare: bench/_bare_smtp.py, aiosmtpd with a handler that answers 250 and discards, same
  protocol options (SIZE, SMTPUTF8, no decoding, fixed hostname, 100 commands per verb).

The client is the same for both: `-c` threads in this process, smtplib, each reusing its connection
for up to 50 messages; MAIL, RCPT, DATA per message; the messages are Gmail-shaped replies to the
notification (tests/support/mail_clients.py, ~2.5 KB, unique text and Message-ID), built before the
clock starts. Rounds alternate bare, gateway, bare, gateway, ... so load drift hits both.
"accepted/s" is the accepted messages of a round over its wall time; "server CPU" is the child's
user+system CPU during the round divided by the messages (ms per message; 1000 ms/s per core).
Target to check: gateway/bare >= 0.5. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=500, help="messages per round and server (500)")
    parser.add_argument("-c", "--clients", type=int, default=4, help="concurrent SMTP connections (4)")
    c.rounds_arguments(parser, "messages")
    parser.add_argument("--command", choices=("smtp", "serve"), default="smtp",
                        help="gateway process under test (default smtp: the receiver alone)")
    parser.add_argument("--processes", type=int, default=1,
                        help="with --command smtp: protocol processes besides the writer (1)")
    c.database_argument(parser)
    c.profile_arguments(parser)
    args = parser.parse_args()

    from sqlalchemy import func, select

    from gateway.store import Database, InboundMessage, Job

    load_before = c.machine()
    with c.temp_dir("bench-smtp-accept-") as tmp:
        stack = c.start_stack(Path(tmp), args.database)
        try:
            opener = stack.gateway(["serve"], GATEWAY_GITHUB_WRITE_LIMITS="off")
            _, notification = stack.open_pull_request(opener)
            if args.command == "smtp":
                opener.stop()
                gateway = stack.gateway(["smtp", "--processes", str(args.processes)])
            else:
                gateway = opener
            bare = stack.child(c.bare_smtp(Path(tmp)))
            to = notification["Reply-To"]
            servers = {"bare aiosmtpd": (bare.pid, bare.ports[0]),
                       f"gateway {args.command}": (gateway.pid, gateway.smtp_port)}
            for name, (pid, port) in servers.items():
                warm = c.send_smtp(port, c.reply_messages(notification, args.warmup, f"warm-up {name}"), to,
                                   min(args.clients, max(1, args.warmup)))
                if warm.refused:
                    print(f"{name} refused warm-up messages: {Counter(warm.refused).most_common(2)}",
                          file=sys.stderr)
                    return 1
            sizes = []

            def measure(name: str, pid: int, port: int, r: int) -> c.SmtpRun:
                raws = c.reply_messages(notification, args.messages, f"round {r} {name}")
                sizes.append(len(raws[0]))
                return c.send_smtp(port, raws, to, args.clients, server_pid=pid)

            runs, profiler = c.alternating_rounds(args, servers, measure, gateway.pid)
            rss = c.proc_status(gateway.pid)
            db = Database(stack.database_url)
            with db.session() as session:
                verdicts = Counter(session.scalars(select(InboundMessage.verdict)))
                queued_jobs = session.scalar(select(func.count()).select_from(Job)
                                             .where(Job.kind == "process_reply"))
            db.dispose()
        finally:
            stack.close()

    rows = [
        ("machine before / after", f"{load_before}  /  {c.machine()}"),
        ("code", c.code_version()),
        ("database", c.database_label(args.database)),
        ("gateway process", f"gateway {args.command}" + (
            " (its worker thread runs jobs meanwhile)" if args.command == "serve" else
            f" --processes {args.processes} (receiver only: protocol processes + writer)")),
        ("messages x rounds / clients", f"{args.messages} x {args.rounds} per server (+{args.warmup} warm-up) / "
                                        f"{args.clients} connections, reconnect every {c.RECONNECT_EVERY}"),
        ("message size", f"{max(sizes)} bytes (Gmail-shaped reply, text + HTML)"),
    ]
    medians = {}
    for name, server_runs in runs.items():
        rates = [run.rate for run in server_runs]
        medians[name] = statistics.median(rates)
        ms = [x * 1000 for run in server_runs for x in run.latencies] or [0.0]
        refused = sum(len(run.refused) for run in server_runs)
        per_msg = [run.server_cpu / max(1, len(run.latencies)) * 1000 for run in server_runs]
        per_msg_sys = [run.server_sys / max(1, len(run.latencies)) * 1000 for run in server_runs]
        client = [run.client_cpu / max(1, len(run.latencies)) * 1000 for run in server_runs]
        rows += [
            (f"{name}: accepted/s", c.spread(rates)),
            (f"{name}: per round", ", ".join(f"{x:.1f}" for x in rates)),
            (f"{name}: DATA->250 p50/p95/p99/max",
             f"{c.percentile(ms, 50):.1f} / {c.percentile(ms, 95):.1f} / {c.percentile(ms, 99):.1f} / "
             f"{max(ms):.1f} ms"),
            (f"{name}: server CPU per message", c.spread(per_msg, "{:.2f} ms")),
            (f"{name}:   of which system", c.spread(per_msg_sys, "{:.2f} ms")),
            (f"{name}: client CPU per message", c.spread(client, "{:.2f} ms")),
            (f"{name}: refused", str(refused)),
        ]
    bare_name, gw_name = list(runs)
    ratios = [g.rate / b.rate for b, g in zip(runs[bare_name], runs[gw_name]) if b.rate]
    rows += [
        ("ratio gateway/bare (medians)", f"{medians[gw_name] / medians[bare_name]:.2f}   (target >= 0.5)"),
        ("ratio per round", ", ".join(f"{x:.2f}" for x in ratios)),
        ("gateway inbound verdicts", ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items()))),
        ("gateway process_reply jobs", str(queued_jobs)),
        ("gateway RSS now / peak", f"{rss['VmRSS'] / 2**20:.0f} / {rss['VmHWM'] / 2**20:.0f} MiB"),
    ]
    c.print_rows(rows)
    if profiler:
        print(f"\npy-spy of the gateway during the rounds ({args.profile}):\n{profiler.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
