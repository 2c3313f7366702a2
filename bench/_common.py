"""Shared by the child-process benchmarks (smtp_accept, reply_latency, webhook_ingest, serve_memory).

The gateway runs as a real child process (tests/support/processes.py: `gateway serve|smtp|worker|web`,
configured only by the environment) against a GitHub emulator and an SMTP sink that live in the
benchmark's process, so the benchmark client's CPU is not in the gateway's GIL. Baselines (a bare
aiosmtpd server, a bare Flask app) run as child processes too, and are driven by the same client.

Not a test and not imported by the suite: nothing here asserts.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RECONNECT_EVERY = 50  # messages per SMTP connection (the receiver allows 100 commands per verb)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- figures ------------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(p / 100 * len(ordered)))) - 1]


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """'median (min..max over k)' of per-round figures."""
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return (f"{fmt.format(statistics.median(values))}  (min {fmt.format(min(values))}, "
            f"max {fmt.format(max(values))}, {len(values)} rounds)")


def print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}", flush=True)


def machine() -> str:
    """CPU count and load averages at this moment (the machine is shared)."""
    one, five, fifteen = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load {one:.2f} {five:.2f} {fifteen:.2f}"


def code_version() -> str:
    """The commit this tree is at, and whether it has uncommitted changes (read-only git)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = [line for line in subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "gateway",
                                                  "inbound", "outbound", "github_app"],
                                                 capture_output=True, text=True, timeout=10).stdout.splitlines()]
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"{head or '?'}" + (f" + {len(dirty)} uncommitted file(s) in the app" if dirty else "") + f"  ({ROOT})"


def database_label(url: str) -> str:
    return "postgresql (fresh schema)" if url.startswith("postgresql") else "sqlite (file, WAL)"


def database_argument(parser) -> None:
    parser.add_argument("--database", default="", help="PostgreSQL URL (default: an SQLite file)")


def profile_arguments(parser, what: str = "the gateway") -> None:
    parser.add_argument("--profile", metavar="FILE", help=f"py-spy {what} during the measured phase (collapsed stacks)")
    parser.add_argument("--profile-gil", action="store_true", help="with --profile: only the thread holding the GIL")


def rounds_arguments(parser, unit: str) -> None:
    """Alternating bare/gateway rounds, each server warmed up first."""
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server, alternating (3)")
    parser.add_argument("--warmup", type=int, default=20, help=f"{unit} sent to each server first, not counted")


def alternating_rounds(args, servers: dict[str, tuple[int, int]], measure, profiled_pid: int):
    """``measure(name, pid, port, round)`` for each server in turn, ``args.rounds`` times, so load
    drift hits them alike; under py-spy of ``profiled_pid`` with --profile. Returns (runs by server
    name, the PySpy or None)."""
    runs: dict[str, list] = {name: [] for name in servers}
    profiler = PySpy(profiled_pid, Path(args.profile), gil=args.profile_gil) if args.profile else None
    with profiler or contextlib.nullcontext():
        for r in range(args.rounds):
            for name, (pid, port) in servers.items():
                runs[name].append(measure(name, pid, port, r))
    return runs, profiler


# -- /proc --------------------------------------------------------------------------------------

def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, ... of a live process in bytes."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Vm"):
            name, value = line.split(":", 1)
            found[name] = int(value.split()[0]) * 1024
    return found


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(pid: int, *, with_children: bool = True, system_only: bool = False) -> float:
    """user+system (or system only) CPU of a process and of its live child processes (gunicorn workers)."""
    total = 0.0
    for p in [pid, *(_children(pid) if with_children else [])]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += ((0 if system_only else int(fields[11])) + int(fields[12])) / CLK_TCK  # utime, stime
    return total


class MemorySampler:
    """Samples VmRSS of a process (and its children) every `interval` s in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = proc_status(self.pid).get("VmRSS", 0)
            except OSError:
                return
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# -- child processes ----------------------------------------------------------------------------

from tests.support.processes import free_port, stop_process, wait_listening  # noqa: E402  (ROOT is on sys.path now)

class Child:
    """Any command as a child process (baselines); ready when its ports accept connections."""

    def __init__(self, argv: list[str], *, ports: list[int], log_path: Path, env: dict | None = None,
                 cwd: Path = ROOT):
        self.argv, self.ports, self.log_path = argv, ports, log_path
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.cwd = cwd
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self, timeout: float = 30.0) -> "Child":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log,
                                            stderr=subprocess.STDOUT)
        wait_listening(self.process, self.ports, timeout=timeout, log_path=self.log_path, name=str(self.argv))
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is not None:
            stop_process(self.process, timeout)


def bare_smtp(tmp: Path) -> Child:
    """bench/_bare_smtp.py: aiosmtpd that accepts and discards, same protocol options as the receiver."""
    port = free_port()
    return Child([sys.executable, str(ROOT / "bench/_bare_smtp.py"), str(port)], ports=[port],
                 log_path=tmp / "bare-smtp.log").start()


# -- the world around the gateway ---------------------------------------------------------------

@dataclass
class Stack:
    """A fresh migrated database, the GitHub emulator and the SMTP sink, in this process."""

    tmp: Path
    database_url: str
    emulator: object
    sink: object
    _drop: object
    children: list = field(default_factory=list)

    def environment(self, **overrides: str) -> dict[str, str]:
        from tests.support.processes import gateway_environment

        return gateway_environment(database_url=self.database_url, data_dir=self.tmp,
                                   emulator_url=self.emulator.url, relay_url=self.sink.url, **overrides)

    def gateway(self, command: list[str], **overrides: str):
        """Start `gateway <command>` on free ports; stopped by close()."""
        from tests.support.processes import GatewayProcess

        env = self.environment(GATEWAY_HTTP_PORT=str(free_port()), GATEWAY_SMTP_PORT=str(free_port()),
                               GATEWAY_SMTP_HOSTNAME="gateway.bench", **overrides)
        process = GatewayProcess(command, env, self.tmp / f"gateway-{command[0]}-{len(self.children)}.log")
        self.children.append(process)
        return process.start(ready_timeout=60)

    def child(self, child: Child) -> Child:
        self.children.append(child)
        return child

    def open_pull_request(self, gateway, *, head: str = "fix-typo", timeout: float = 60.0):
        """Open PR #1 through the API of a running `gateway serve`; returns the notification mail."""
        from tests.support.harness import REPO

        if self.emulator.branch_sha(REPO, head) is None:
            self.emulator.create_branch(REPO, head, files={"README.md": "# widgets, fixed\n"})
        response = gateway.api("POST", "/api/pull-requests", json={
            "repo": REPO, "head": head, "title": "Fix the typo in the README", "body": "Agent-made fix.",
            "reporter_email": "Ann Reporter <ann@example.com>"})
        if response.status_code != 202:
            raise RuntimeError(f"POST /api/pull-requests: {response.status_code} {response.text}")
        request_id = response.json()["id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = gateway.api("GET", f"/api/pull-requests/{request_id}").json()
            if status.get("status") == "notified":
                mails = self.sink.wait_for(1, timeout=max(1.0, deadline - time.monotonic()))
                self.sink.clear()
                return status, mails[0].message
            if status.get("status") == "failed":
                raise RuntimeError(f"the PR request failed: {status}")
            time.sleep(0.1)
        raise RuntimeError(f"the PR was not notified in {timeout} s: {status}")

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        self.sink.stop()
        self.emulator.stop()
        self._drop()


def start_stack(tmp: Path, database: str = "") -> Stack:
    """database: '' for an SQLite file in tmp, or a PostgreSQL URL (a fresh schema, migrated here)."""
    if database:
        os.environ["GATEWAY_TEST_DATABASE_URL"] = database  # read when tests.support.databases is imported
    from gateway.migrate import upgrade
    from gateway.store import Database
    from tests.support.databases import fresh_database_url
    from tests.support.processes import start_emulator
    from tests.support.smtp_sink import SmtpSink

    url, drop = fresh_database_url(tmp)
    db = Database(url)
    upgrade(db)
    db.dispose()
    emulator = start_emulator(rate_limit=10 ** 9)  # the primary limit is not what is measured
    if hasattr(emulator, "set_content_limits"):
        emulator.set_content_limits(())
    sink = SmtpSink().start()
    return Stack(tmp=tmp, database_url=url, emulator=emulator, sink=sink, _drop=drop)


def temp_dir(prefix: str):
    return tempfile.TemporaryDirectory(prefix=prefix)


# -- SMTP client --------------------------------------------------------------------------------

def reply_messages(notification, n: int, label: str, text=None) -> list[bytes]:
    """N Gmail-shaped replies to the notification (unique text and Message-ID each), CRLF on the wire.

    text(i) is what the reporter typed; default "Reply {i} of {label}: checked the branch, all good."
    """
    from email.policy import SMTP as SMTP_POLICY

    from tests.support import mail_clients

    text = text or (lambda i: f"Reply {i} of {label}: checked the branch, all good.")
    return [re.sub(rb"(?<!\r)\n", b"\r\n", mail_clients.gmail(notification, text(i)).as_bytes(policy=SMTP_POLICY))
            for i in range(n)]


@dataclass
class SmtpRun:
    latencies: list[float]  # seconds, DATA → 250, accepted messages only
    refused: list[str]
    wall: float
    client_cpu: float  # CPU seconds of this whole process during the run
    server_cpu: float | None = None
    server_sys: float | None = None  # of which in the kernel

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0


def send_smtp(port: int, raws: list[bytes], to: str, clients: int, *, mail_from: str = "ann@example.com",
              server_pid: int | None = None) -> SmtpRun:
    """Send every raw message over `clients` concurrent smtplib connections (RECONNECT_EVERY each)."""
    import smtplib

    latencies: list[float] = []
    refused: list[str] = []
    lock = threading.Lock()
    n = len(raws)

    def client(indices: list[int]) -> None:
        for start in range(0, len(indices), RECONNECT_EVERY):
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
                smtp.ehlo("client.example.org")
                for i in indices[start:start + RECONNECT_EVERY]:
                    took = 0.0
                    code, text = smtp.mail(mail_from)
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

    timing = run_clients(client, n, clients, server_pid)
    return SmtpRun(latencies, refused, timing.wall, timing.client_cpu, timing.server_cpu, timing.server_sys)


@dataclass
class ClientTiming:
    wall: float
    client_cpu: float  # CPU seconds of this whole process during the run
    server_cpu: float | None  # of the server process and its children
    server_sys: float | None  # of which in the kernel


def run_clients(client, n: int, clients: int, server_pid: int | None) -> ClientTiming:
    """``client(indices)`` in ``clients`` threads, items 0..n-1 dealt round-robin; wall and CPU of the run."""
    threads = [threading.Thread(target=client, args=(list(range(k, n, clients)),)) for k in range(clients)]
    cpu0 = time.process_time()
    server0 = (cpu_seconds(server_pid), cpu_seconds(server_pid, system_only=True)) if server_pid else None
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    if server0 is None:
        return ClientTiming(wall, time.process_time() - cpu0, None, None)
    return ClientTiming(wall, time.process_time() - cpu0, cpu_seconds(server_pid) - server0[0],
                        cpu_seconds(server_pid, system_only=True) - server0[1])


# -- profiling ----------------------------------------------------------------------------------

class PySpy:
    """`py-spy record` of a child process (and its children) while the block runs; --profile in the benches.

    Writes collapsed stacks (``--format raw``) to `path`; `summary()` turns them into the frames
    that hold the most samples. Needs py-spy (pip install py-spy) and ptrace rights on the child.
    """

    def __init__(self, pid: int, path: Path, rate: int = 200, gil: bool = False):
        self.pid, self.path, self.rate, self.gil = pid, Path(path), rate, gil
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "PySpy":
        import shutil

        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.process = subprocess.Popen([exe, "record", "--pid", str(self.pid), "--rate", str(self.rate),
                                         "--format", "raw", "--subprocesses", "--nonblocking",
                                         *(["--gil"] if self.gil else []), "-o", str(self.path)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # attach before the measured phase starts
        return self

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def summary(self, top: int = 25, focus: tuple[str, ...] = ("gateway/", "inbound/", "outbound/",
                                                               "github_app/")) -> str:
        return summarize_collapsed(self.path, top, focus)


def summarize_collapsed(path: Path, top: int = 25, focus: tuple[str, ...] = ()) -> str:
    """Inclusive share of samples per frame (each frame counted once per stack), self share per leaf."""
    from collections import Counter

    inclusive: Counter = Counter()
    leaf: Counter = Counter()
    total = 0
    for line in Path(path).read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if f]
        for frame in set(_short(f) for f in frames):
            inclusive[frame] += n
        if frames:
            leaf[_short(frames[-1])] += n
    if not total:
        return "no samples"
    out = [f"{total} samples", "inclusive (on the stack), " + ("frames of " + ", ".join(focus) if focus else "all")
           + ":"]
    chosen = [(frame, n) for frame, n in inclusive.most_common() if not focus or any(f in frame for f in focus)]
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in chosen[:top]]
    out.append("self (leaf frame):")
    for frame, n in leaf.most_common(top):
        out.append(f"  {100 * n / total:5.1f}%  {frame}")
    return "\n".join(out)


def _short(frame: str) -> str:
    """'func (/long/path/site-packages/pkg/mod.py:12)' -> 'func (pkg/mod.py)', line numbers dropped."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit(":", 1)[0]
    if file.startswith(str(ROOT) + "/"):
        file = file[len(str(ROOT)) + 1:]
    else:
        file = re.sub(r"^.*/(?:site-packages|python3\.\d+)/", "", file)
    return f"{name} ({file})"
