"""Scale: do the gateway's per-message costs grow with history? Each operation on an empty database, then on a year's worth.

Usage: python bench/scale.py [--backend sqlite|postgresql|both] [--scale 1.0] [--repeat 200] [--warmup 10]
                             [--postgres-url postgresql://postgres@127.0.0.1:5432/gateway_scale]

For each backend: a new database (SQLite: a file in a temp dir; PostgreSQL: the database named in
--postgres-url, created here and dropped at the end; never `test` or `postgres`), schema by the
project's Alembic migrations. Then:

1. "empty": only what the timed calls need (one thread with 2 participants and one due job per
   call, --warmup + --repeat of each); each operation is timed --repeat times (after --warmup).
2. "filled": set-based SQL (SQLite: a recursive CTE, PostgreSQL: generate_series; no ORM) adds,
   at --scale 1.0, 1,000,000 finished jobs ('done'), 100,000 threads (1 or 2 participants; 1 %
   revoked), 1,000,000 inbound messages spread over them (94 % 'posted', the rest empty,
   duplicate, auto-reply, bounce, not-participant, failed; each with a Message-ID; raw bodies of
   ~200 bytes), 50,000 due queued jobs (run_after within the last hour) and 200,000 webhook
   deliveries (small payloads), over 20 installations (one suspended, with no due job). PostgreSQL
   then gets VACUUM ANALYZE, as autovacuum would have done by then; SQLite gets no ANALYZE (the
   gateway never runs it). Both are checkpointed and flushed to disk, and one pass of the
   operations is made and printed but not compared (the fill's write-back and cold pages are not
   what a running service sees). The same operations are timed again, each call on a different
   random live thread of the fill.

The operations are the gateway's own calls, in one marked section below (OPERATIONS):
  job claim         Worker.claim() (the claimed job is then finished, untimed, so the next claim
                    takes another due job)
  RCPT check        ReplyDoor.check_recipient(reply address of a live thread); a new door
                    per call, so its 5 s live-thread memory never answers instead of the database
  DATA decision     ReplyDoor.deliver_many([Envelope]) of a Gmail-shaped reply by a participant
                    to the thread's signed reply address: records an inbound row, queues a job
  webhook delivery  github_events.receive() of an issue_comment event with a new delivery id
Only the call is timed (building messages and payloads is not). Figures: p50/p95 in ms, the ratio
of the p50s (filled / empty) and whether it is <= 1.5. Then the plan of every distinct statement
each operation ran during one more call on the filled database (captured with a SQLAlchemy
before_cursor_execute listener, and by wrapping DriverStatement.execute/executemany for the
raw-cursor path): SQLite `EXPLAIN QUERY PLAN`, PostgreSQL `EXPLAIN (ANALYZE, BUFFERS)` in a
transaction that is rolled back. Plan lines with a full scan or a sort are marked `<<`.
An INSERT is explained with the values it was captured with, so the webhook's INSERT ... ON
CONFLICT meets its own row there (the duplicate path).
On PostgreSQL the gateway's own executions may use a generic plan once psycopg prepares a
statement (after 5 runs); EXPLAIN with the captured values shows the custom plan.
Nothing is asserted: read the figures.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import code_version, machine, percentile, print_rows  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/gateway_scale"
RATIO_LIMIT = 1.5
INSTALLATIONS = 20          # ids 1000..1019; the last one is suspended
SUSPENDED_INSTALLATION = 1000 + INSTALLATIONS - 1
FILL = {                    # rows at --scale 1.0
    "threads": 100_000,
    "inbound messages": 1_000_000,
    "done jobs": 1_000_000,
    "due jobs": 50_000,
    "webhook deliveries": 200_000,
}
YEAR = 365 * 24 * 3600


# == THE OPERATIONS ===============================================================================
# The only place that names the gateway's flow API (ReplyDoor, Worker, receive, Envelope).
# `prepare(i)` builds the argument of call i (untimed), `call(arg)` is the timed call, `check(result)`
# returns a problem or None, `after(result)` tidies up (untimed).

def operations(fx: "Fixture") -> dict[str, "Operation"]:
    from gateway.flows.github_events import receive
    from gateway.flows.receive_reply import ReplyDoor
    from gateway.runner import make_worker
    from inbound.handler import Envelope

    worker = make_worker(fx.ctx)

    def finish(job) -> None:
        if job is not None:
            worker._finish(job, "done", None)  # what run_once records after a job ran

    def reply(i: int):
        target = fx.target(i)
        raw = fx.reply_message(target, i)
        envelope = Envelope(mail_from=target.email, rcpt_tos=(fx.reply_address(target),), content=raw,
                            peer="127.0.0.1", helo="client.example.org")
        return ReplyDoor(fx.ctx), [envelope]

    def webhook(i: int):
        payload, body = fx.webhook_event(fx.target(i), i)
        return {"event": "issue_comment", "delivery_id": str(uuid.uuid4()), "payload": payload, "body": body}

    return {
        "job claim": Operation(
            prepare=lambda i: None,
            call=lambda _: worker.claim(),
            check=lambda job: None if job is not None else "no due job was claimed",
            after=finish),
        "RCPT check": Operation(
            prepare=lambda i: (ReplyDoor(fx.ctx), fx.reply_address(fx.target(i))),
            call=lambda arg: arg[0].check_recipient(arg[1]),
            check=lambda answer: None if answer.accepted else f"refused: {answer.outcome} ({answer.reason})"),
        "DATA decision": Operation(
            prepare=reply,
            call=lambda arg: arg[0].deliver_many(arg[1]),
            check=lambda answers: None if answers[0].accepted and answers[0].reason == "queued"
            else f"not queued: {answers[0].outcome} ({answers[0].reason})"),
        "webhook delivery": Operation(
            prepare=webhook,
            call=lambda kwargs: receive(fx.ctx, **kwargs),
            check=lambda outcome: None if outcome == "queued" else f"outcome {outcome!r}"),
    }

# == end of THE OPERATIONS ========================================================================


@dataclass
class Operation:
    prepare: Callable[[int], Any]
    call: Callable[[Any], Any]
    check: Callable[[Any], str | None] = lambda result: None
    after: Callable[[Any], None] = lambda result: None


@dataclass
class Timing:
    latencies_ms: list[float]
    problems: list[str] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50) if self.latencies_ms else float("nan")

    @property
    def p95(self) -> float:
        return percentile(self.latencies_ms, 95) if self.latencies_ms else float("nan")


# -- the data ------------------------------------------------------------------------------------

def letters(i: int) -> str:
    """The digits of i (7, zero-padded) as a..j: thread ids must be [a-z2-7] (gateway.signing)."""
    return f"{i:07d}".translate(str.maketrans("0123456789", "abcdefghij"))


@dataclass(frozen=True)
class Target:
    """A live thread a timed call is about, as the fill (or the seed) wrote it."""

    thread_id: str
    email: str
    name: str
    repo: str
    pr_number: int
    title: str


def thread_target(prefix: str, repo_prefix: str, i: int) -> Target:
    return Target(thread_id=prefix + letters(i), email=f"reporter{i}@example.com", name=f"Reporter {i}",
                  repo=f"{repo_prefix}{i % 50}/repo{i % 500}", pr_number=i, title=f"Fix number {i}")


class Dialect:
    """The few SQL spellings that differ between SQLite and PostgreSQL in the fill."""

    def __init__(self, name: str, now: datetime):
        self.name = name
        self.now = now.astimezone(timezone.utc).replace(microsecond=0)

    def rows(self, n: int) -> tuple[str, str]:
        """(prefix, source): ``{prefix}INSERT INTO t (...) SELECT ... FROM {source}`` with i = 1..n."""
        if self.name == "sqlite":
            return f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {int(n)}) ", "n"
        return "", f"generate_series(1::bigint, {int(n)}) AS n(i)"  # bigint: i * 7919 overflows int4

    def ago(self, seconds: str) -> str:
        """A timestamp `seconds` (an SQL integer expression) before now, as the column type stores it."""
        if self.name == "sqlite":  # SQLAlchemy's SQLite DATETIME storage format, UTC
            return f"(datetime('{self.now:%Y-%m-%d %H:%M:%S}', '-' || ({seconds}) || ' seconds') || '.000000')"
        return f"(timestamptz '{self.now.isoformat()}' - ({seconds}) * interval '1 second')"

    def letters(self, expr: str) -> str:
        if self.name == "sqlite":
            sql = f"printf('%07d', {expr})"
            for digit in range(10):
                sql = f"replace({sql}, '{digit}', '{'abcdefghij'[digit]}')"
            return sql
        return f"translate(lpad(({expr})::text, 7, '0'), '0123456789', 'abcdefghij')"

    def uuid(self) -> str:
        if self.name == "sqlite":
            return ("lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2)"
                    " || '-' || hex(randomblob(2)) || '-' || hex(randomblob(6)))")
        return "gen_random_uuid()::text"

    def blob(self, data: bytes) -> str:
        return f"X'{data.hex()}'" if self.name == "sqlite" else f"decode('{data.hex()}', 'hex')"

    def null_time(self) -> str:
        return "NULL" if self.name == "sqlite" else "NULL::timestamptz"


RAW = (b"From: Reporter <reporter@example.com>\r\nTo: reply@reply.example.com\r\nSubject: Re: Fix\r\n"
       b"Message-ID: <m@mail.example.com>\r\n\r\nThanks, that fixes it for me.\r\n\r\n> earlier text\r\n")
VERDICT = ("CASE i % 100 WHEN 0 THEN 'empty' WHEN 1 THEN 'duplicate' WHEN 2 THEN 'ignored-auto-reply' "
           "WHEN 3 THEN 'bounce' WHEN 4 THEN 'rejected-not-participant' WHEN 5 THEN 'failed' ELSE 'posted' END")


def thread_statements(d: Dialect, count: int, prefix: str, repo_prefix: str, *, revoked_every: int | None,
                      span: int) -> list[tuple[str, str]]:
    """Threads i = 1..count with 1 participant each, a second on even i; created over `span` s."""
    pre, src = d.rows(count)
    tid = f"'{prefix}' || {d.letters('i')}"
    created = d.ago(f"({count} - i) * {span // max(1, count)}")
    revoked = (f"CASE WHEN i % {revoked_every} = 0 THEN {d.ago('60')} ELSE {d.null_time()} END"
               if revoked_every else d.null_time())
    return [
        ("threads", f"{pre}INSERT INTO threads (id, repo, pr_number, pr_url, title, installation_id, root_message_id,"
         f" message_seq, revoked_at, created_at) SELECT {tid}, '{repo_prefix}' || (i % 50) || '/repo' || (i % 500), i,"
         f" 'https://github.com/{repo_prefix}' || (i % 50) || '/repo' || (i % 500) || '/pull/' || i, 'Fix number ' || i,"
         f" 1000 + i % {INSTALLATIONS - 1}, '<' || {tid} || '.0.1700000000.aaaaaaaaaaaaaaaa@reply.example.com>', 3,"
         f" {revoked}, {created} FROM {src}"),
        ("participants", f"{pre}INSERT INTO participants (thread_id, email, name, role, created_at)"
         f" SELECT {tid}, 'reporter' || i || '@example.com', 'Reporter ' || i, 'reporter', {created} FROM {src}"),
        ("participants", f"{pre}INSERT INTO participants (thread_id, email, name, role, created_at)"
         f" SELECT {tid}, 'maintainer' || i || '@example.org', 'Maintainer ' || i, 'cc', {created} FROM {src}"
         f" WHERE i % 2 = 0"),
    ]


def due_job_statement(d: Dialect, count: int, *, span: int) -> tuple[str, str]:
    """`count` queued process_reply jobs due within the last `span` seconds (none of the suspended installation)."""
    pre, src = d.rows(count)
    run_after = d.ago(f"({count} - i) * {span} / {max(1, count)} + 1")
    return ("jobs (due)", f"{pre}INSERT INTO jobs (kind, payload, status, attempts, max_attempts, run_after,"
            f" installation_id, created_at, updated_at) SELECT 'process_reply', '{{\"inbound_id\": ' || i || '}}',"
            f" 'queued', 0, 8, {run_after}, 1000 + i % {INSTALLATIONS - 1}, {run_after}, {run_after} FROM {src}")


def fill_statements(d: Dialect, scale: float) -> list[tuple[str, str]]:
    """Set-based INSERT ... SELECT statements for a year of history, in order (threads first)."""
    n = {name: max(1, round(count * scale)) for name, count in FILL.items()}
    threads, inbound, done, webhooks = n["threads"], n["inbound messages"], n["done jobs"], n["webhook deliveries"]
    statements = thread_statements(d, threads, "thr", "org", revoked_every=100, span=YEAR)
    pre, src = d.rows(inbound)
    t = f"(1 + (i * 7919) % {threads})"  # a prime stride: each thread gets replies all through the year
    tid = f"'thr' || {d.letters(t)}"
    received = d.ago(f"({inbound} - i) * {YEAR // inbound}")
    statements.append(("inbound_messages", f"{pre}INSERT INTO inbound_messages (thread_id, message_id, envelope_from,"
                       f" recipients, from_address, subject, peer, channel, size, raw, verdict, reason, comment_id,"
                       f" comment_url, received_at, processed_at) SELECT {tid}, '<m' || i || '.' || {t} ||"
                       f" '@mail.example.com>', 'reporter' || {t} || '@example.com', 'reply+' || {tid} ||"
                       f" '.1700000000.aaaaaaaaaaaaaaaa@reply.example.com', 'reporter' || {t} || '@example.com',"
                       f" 'Re: Fix number ' || {t}, '203.0.113.' || (i % 250), 'smtp', {len(RAW)}, {d.blob(RAW)},"
                       f" {VERDICT}, NULL, CASE WHEN i % 100 >= 6 THEN i END, CASE WHEN i % 100 >= 6 THEN"
                       f" 'https://github.com/org/repo/pull/' || {t} || '#issuecomment-' || i END, {received},"
                       f" {received} FROM {src}"))
    pre, src = d.rows(done)
    at = d.ago(f"({done} - i) * {YEAR // done} + 3600")
    kind = ("CASE i % 10 WHEN 0 THEN 'open_pull_request' WHEN 1 THEN 'handle_github_event' WHEN 2 THEN"
            " 'handle_github_event' WHEN 3 THEN 'process_reply' WHEN 4 THEN 'process_reply' ELSE 'deliver_mail' END")
    statements.append(("jobs (done)", f"{pre}INSERT INTO jobs (kind, payload, status, attempts, max_attempts, run_after,"
                       f" installation_id, created_at, updated_at, finished_at) SELECT {kind}, '{{\"id\": ' || i || '}}',"
                       f" 'done', 1, 8, {at}, CASE WHEN i % 10 IN (1, 2) THEN NULL ELSE 1000 + i % {INSTALLATIONS} END,"
                       f" {at}, {at}, {at} FROM {src}"))
    statements.append(due_job_statement(d, n["due jobs"], span=3600))
    pre, src = d.rows(webhooks)
    at = d.ago(f"({webhooks} - i) * {YEAR // webhooks}")
    statements.append(("webhook_deliveries", f"{pre}INSERT INTO webhook_deliveries (delivery_id, event, action, payload,"
                       f" outcome, received_at) SELECT {d.uuid()}, CASE i % 3 WHEN 0 THEN 'issue_comment' WHEN 1 THEN"
                       f" 'pull_request_review' ELSE 'pull_request' END, 'created', '{{\"action\": \"created\","
                       f" \"number\": ' || i || '}}', 'relayed comment to 1 of 1 participant(s)', {at} FROM {src}"))
    return statements


def _installations(d: Dialect) -> str:
    pre, src = d.rows(INSTALLATIONS)
    suspended = (f"CASE WHEN 999 + i = {SUSPENDED_INSTALLATION} THEN {d.ago('86400')} ELSE {d.null_time()} END")
    return (f"{pre}INSERT INTO installations (id, account, suspended_at, suspended_reason, updated_at)"
            f" SELECT 999 + i, 'org' || i, {suspended}, CASE WHEN 999 + i = {SUSPENDED_INSTALLATION} THEN"
            f" 'the installation was suspended by octo-admin' END, {d.ago('86400')} FROM {src}")


# -- backends ------------------------------------------------------------------------------------

class Backend:
    """A database of its own for the run: created, migrated, filled with raw SQL, dropped."""

    name: str
    url: str

    def raw_connection(self):
        raise NotImplementedError

    def run_statements(self, statements: list[tuple[str, str]]) -> list[tuple[str, float]]:
        """Each statement in its own transaction; (label, seconds) each."""
        took = []
        connection = self.raw_connection()
        try:
            for label, sql in statements:
                began = time.perf_counter()
                with _transaction(connection):
                    connection.execute(sql)
                took.append((label, time.perf_counter() - began))
        finally:
            connection.close()
        return took

    def settle(self) -> list[tuple[str, float]]:
        """After the fill: what the database would have done by itself in a year."""
        return []

    def counts(self) -> list[tuple[str, str]]:
        connection = self.raw_connection()
        try:
            rows = []
            for table in ("threads", "participants", "inbound_messages", "jobs", "webhook_deliveries",
                          "installations"):
                rows.append((table, f"{connection.execute(f'SELECT count(*) FROM {table}').fetchone()[0]:,}"))
            by_status = connection.execute("SELECT status, count(*) FROM jobs GROUP BY status ORDER BY 2 DESC").fetchall()
            rows.append(("jobs by status", ", ".join(f"{status} {count:,}" for status, count in by_status)))
            due = connection.execute(*self._due_sql()).fetchone()[0]
            rows.append(("jobs due now", f"{due:,} (queued, run_after <= now)"))
            verdicts = connection.execute("SELECT verdict, count(*) FROM inbound_messages GROUP BY verdict"
                                          " ORDER BY 2 DESC").fetchall()
            rows.append(("inbound by verdict", ", ".join(f"{v} {c:,}" for v, c in verdicts)))
            rows.append(("database size", self.size(connection)))
            return rows
        finally:
            connection.close()

    def explain(self, statements: list["Captured"]) -> list[str]:
        raise NotImplementedError

    def drop(self) -> None:
        pass


def _transaction(connection):
    class _Tx:
        def __enter__(self):
            connection.execute("BEGIN")

        def __exit__(self, kind, *rest):
            connection.execute("COMMIT" if kind is None else "ROLLBACK")
    return _Tx()


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, tmp: Path):
        self.path = tmp / "gateway.db"
        self.url = f"sqlite:///{self.path}"

    def raw_connection(self):
        import sqlite3

        connection = sqlite3.connect(self.path, isolation_level=None)
        connection.execute("PRAGMA synchronous=OFF")  # the fill only; the gateway's connections set their own
        return connection

    def _due_sql(self):
        now = datetime.now(timezone.utc)
        return ("SELECT count(*) FROM jobs WHERE status = 'queued' AND run_after <= ?",
                (f"{now:%Y-%m-%d %H:%M:%S.%f}",))

    def settle(self):
        began = time.perf_counter()
        connection = self.raw_connection()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()
        return [("wal checkpoint", time.perf_counter() - began)]

    def size(self, connection) -> str:
        files = [self.path, self.path.with_name(self.path.name + "-wal")]
        return f"{sum(f.stat().st_size for f in files if f.exists()) / 2**20:,.0f} MiB (file + WAL)"

    def explain(self, statements):
        connection = self.raw_connection()
        out = []
        try:
            for captured in statements:
                out.append(captured.header())
                try:
                    rows = connection.execute("EXPLAIN QUERY PLAN " + captured.sql, captured.params).fetchall()
                except Exception as exc:  # an EXPLAIN that fails should not hide the others
                    out.append(f"      (explain failed: {type(exc).__name__}: {exc})")
                    continue
                depth = {0: 0}
                for node, parent, _, detail in rows:
                    depth[node] = depth.get(parent, 0) + 1
                    out.append(_mark(f"      {'  ' * (depth[node] - 1)}{detail}"))
                if not rows:
                    out.append("      (no plan rows)")
        finally:
            connection.close()
        return out


class PostgresBackend(Backend):
    name = "postgresql"

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.database = parts.path.lstrip("/")
        if not self.database or self.database in ("test", "postgres") or self.database.startswith("template"):
            raise SystemExit(f"--postgres-url must name a database of its own (created and dropped here), "
                             f"not {self.database or 'none'!r}")
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", self.database):
            raise SystemExit(f"--postgres-url: database name {self.database!r}: lower-case letters, digits, _")
        self.url = url
        self.admin_url = urlunsplit(parts._replace(path="/postgres"))

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(sql)

    def create(self) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        self._admin(f"CREATE DATABASE {self.database}")

    def drop(self) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")

    def raw_connection(self):
        import psycopg

        connection = psycopg.connect(self.url, autocommit=True)
        connection.execute("SET synchronous_commit = off")  # the fill's session only
        return connection

    def _due_sql(self):
        return ("SELECT count(*) FROM jobs WHERE status = 'queued' AND run_after <= now()",)

    def settle(self):
        took = []
        connection = self.raw_connection()
        try:
            for label, sql in (("vacuum analyze", "VACUUM ANALYZE"), ("checkpoint", "CHECKPOINT")):
                began = time.perf_counter()
                connection.execute(sql)
                took.append((label, time.perf_counter() - began))
        finally:
            connection.close()
        return took

    def size(self, connection) -> str:
        size = connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        return f"{size / 2**20:,.0f} MiB"

    def explain(self, statements):
        import psycopg

        out = []
        with psycopg.connect(self.url) as connection:  # not autocommit: every EXPLAIN ANALYZE is rolled back
            for captured in statements:
                out.append(captured.header())
                try:
                    rows = connection.execute("EXPLAIN (ANALYZE, BUFFERS) " + captured.sql, captured.params).fetchall()
                    out += [_mark(f"      {line}") for (line,) in rows]
                except Exception as exc:
                    out.append(f"      (explain failed: {type(exc).__name__}: {exc})")
                finally:
                    connection.rollback()
        return out


_FLAGGED = re.compile(r"Seq Scan|Sort|^\s*SCAN |TEMP B-TREE|Materialize")


def _mark(line: str) -> str:
    return line + "   <<" if _FLAGGED.search(line) else line


# -- capturing the SQL an operation runs ---------------------------------------------------------

@dataclass
class Captured:
    sql: str
    params: Any
    path: str  # 'sqlalchemy' or 'driver'
    times: int = 1

    def header(self) -> str:
        shown = _short_params(self.params)
        return f"   [{self.path}, run {self.times}x] {' '.join(self.sql.split())}\n      params: {shown}"


def _short_params(params: Any) -> str:
    def short(value):
        if isinstance(value, (bytes, memoryview)):
            return f"<{len(value)} bytes>"
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    if isinstance(params, dict):
        return "{" + ", ".join(f"{k}: {short(v)}" for k, v in params.items()) + "}"
    if isinstance(params, (list, tuple)):
        return "(" + ", ".join(short(v) for v in params) + ")"
    return short(params)


class _RecordingCursor:
    """Stands in for a DBAPI cursor: records what is executed, delegates everything."""

    def __init__(self, cursor, record):
        self._cursor, self._record = cursor, record

    def execute(self, sql, params=()):
        self._record(sql, params, "driver")
        self._cursor.execute(sql, params)
        return self

    def executemany(self, sql, rows):
        rows = list(rows)
        if rows:
            self._record(sql, rows[0], "driver")
        self._cursor.executemany(sql, rows)
        return self

    def __getattr__(self, name):
        return getattr(self._cursor, name)


def capture_statements(db, run: Callable[[], Any]) -> tuple[Any, list[Captured]]:
    """Run once, recording every statement it sends (SQLAlchemy's path and DriverStatement's)."""
    from sqlalchemy import event

    from gateway.store import DriverStatement

    seen: dict[str, Captured] = {}

    def record(sql: str, params, path: str) -> None:
        if sql in seen:
            seen[sql].times += 1
        else:
            seen[sql] = Captured(sql, params, path)

    def before_cursor_execute(conn, cursor, statement, parameters, context, executemany):
        first = parameters[0] if executemany and parameters else parameters
        record(statement, first, "sqlalchemy")

    original_execute, original_executemany = DriverStatement.execute, DriverStatement.executemany

    def execute(self, tx, params):
        return original_execute(self, replace(tx, cursor=_RecordingCursor(tx.cursor, record)), params)

    def executemany(self, tx, rows):
        return original_executemany(self, replace(tx, cursor=_RecordingCursor(tx.cursor, record)), rows)

    event.listen(db.engine, "before_cursor_execute", before_cursor_execute)
    DriverStatement.execute, DriverStatement.executemany = execute, executemany
    try:
        result = run()
    finally:
        DriverStatement.execute, DriverStatement.executemany = original_execute, original_executemany
        event.remove(db.engine, "before_cursor_execute", before_cursor_execute)
    return result, [c for c in seen.values() if _explainable(c.sql)]


def _explainable(sql: str) -> bool:
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    if head in ("UPDATE", "DELETE", "INSERT", "WITH"):
        return True
    return head == "SELECT" and re.search(r"\bFROM\b", sql, re.IGNORECASE) is not None


# -- the fixture: the gateway's context and the threads the calls are about -----------------------

class Fixture:
    def __init__(self, ctx, targets: list[Target]):
        self.ctx = ctx
        self.targets = targets

    def target(self, i: int) -> Target:
        return self.targets[i % len(self.targets)]

    def reply_address(self, target: Target) -> str:
        return self.ctx.tokens.reply_address(target.thread_id)

    def reply_message(self, target: Target, i: int) -> bytes:
        """What Gmail sends when the participant answers the thread's notification (CRLF, as on the wire)."""
        from email.message import EmailMessage
        from email.policy import SMTP as SMTP_POLICY

        from tests.support import mail_clients

        notification = EmailMessage()
        notification["From"] = f"Gateway <{self.ctx.settings.mail_from}>"
        notification["To"] = f"{target.name} <{target.email}>"
        notification["Reply-To"] = self.reply_address(target)
        notification["Subject"] = f"[{target.repo}] {target.title} (#{target.pr_number})"
        notification["Message-ID"] = self.ctx.tokens.message_id(target.thread_id, 1)
        text = (f"A pull request was opened for you: https://github.com/{target.repo}/pull/{target.pr_number}\n\n"
                f"Reply to this mail to comment on it.\n")
        notification.set_content(text)
        notification.add_alternative(f"<p>{text}</p>", subtype="html")
        message = mail_clients.gmail(notification, f"Reply {i}: checked the branch, all good.",
                                     sender=f"{target.name} <{target.email}>")
        return re.sub(rb"(?<!\r)\n", b"\r\n", message.as_bytes(policy=SMTP_POLICY))

    def webhook_event(self, target: Target, i: int) -> tuple[dict, bytes]:
        from tests.support import webhook_payloads

        payload = webhook_payloads.issue_comment(target.pr_number, f"Maintainer comment {i} on the fix.",
                                                 repo=target.repo)
        return payload, json.dumps(payload).encode()


def build_gateway(url: str, tmp: Path):
    from gateway.config import Settings
    from gateway.flows.context import build_context
    from gateway.store import Database
    from tests.support.harness import API_TOKEN, APP_ID, SECRET, WEBHOOK_SECRET

    settings = Settings(database_url=url, data_dir=tmp, secret_key=SECRET, api_tokens=(API_TOKEN,),
                        reply_domain="reply.example.com", mail_from="gateway@reply.example.com",
                        github_app_id=str(APP_ID), github_webhook_secret=WEBHOOK_SECRET,
                        public_url="http://gateway.test", smtp_port=0)
    return build_context(settings, Database(url))


def time_operations(fx: Fixture, repeat: int, warmup: int, label: str) -> dict[str, Timing]:
    timings = {}
    for name, op in operations(fx).items():
        timing = Timing([])
        for i in range(warmup + repeat):
            arg = op.prepare(i)
            began = time.perf_counter()
            result = op.call(arg)
            took = (time.perf_counter() - began) * 1000
            if i >= warmup:
                timing.latencies_ms.append(took)
            if (problem := op.check(result)) is not None:
                timing.problems.append(problem)
            op.after(result)
        timings[name] = timing
        print(f"  {label:<6} {name:<17} p50 {timing.p50:8.2f} ms  p95 {timing.p95:8.2f} ms"
              + (f"  ({len(timing.problems)} problem(s): {timing.problems[0]})" if timing.problems else ""),
              flush=True)
    return timings


def plans(fx: Fixture, backend: Backend, base: int) -> list[str]:
    out = []
    for name, op in operations(fx).items():
        arg = op.prepare(base)
        result, statements = capture_statements(fx.ctx.db, lambda: op.call(arg))
        problem = op.check(result)
        op.after(result)
        out.append(f"{name}: {len(statements)} distinct statement(s)" + (f"  (problem: {problem})" if problem else ""))
        out += backend.explain(statements)
    return out


def table(empty: dict[str, Timing], filled: dict[str, Timing]) -> list[str]:
    header = (f"{'operation':<17} {'empty p50':>10} {'p95':>8} {'filled p50':>11} {'p95':>8} {'ratio':>7}"
              f"  ratio <= {RATIO_LIMIT}")
    lines = [header, "-" * len(header)]
    for name in empty:
        e, f = empty[name], filled[name]
        ratio = f.p50 / e.p50 if e.p50 else float("nan")
        lines.append(f"{name:<17} {e.p50:10.2f} {e.p95:8.2f} {f.p50:11.2f} {f.p95:8.2f} {ratio:7.2f}"
                     f"  {'yes' if ratio <= RATIO_LIMIT else 'NO'}")
    lines.append("(milliseconds per call)")
    return lines


def run_backend(backend: Backend, args, tmp: Path) -> None:
    from gateway.migrate import upgrade
    from gateway.store import Database

    print(f"\n=== {backend.name} ===", flush=True)
    if isinstance(backend, PostgresBackend):
        backend.create()
    try:
        db = Database(backend.url)
        upgrade(db)
        db.dispose()
        calls = args.warmup + args.repeat
        dialect = Dialect(backend.name, datetime.now(timezone.utc))
        # Empty: the threads and due jobs the calls need, nothing else.
        backend.run_statements(thread_statements(dialect, calls, "fix", "fixture-org", revoked_every=None, span=3600)
                               + [("installations", _installations(dialect)),
                                  due_job_statement(dialect, calls, span=60)])
        ctx = build_gateway(backend.url, tmp)
        empty_fx = Fixture(ctx, [thread_target("fix", "fixture-org", i) for i in range(1, calls + 1)])
        print_rows([("machine", machine()), ("empty database", "")] + [(f"  {k}", v) for k, v in backend.counts()])
        print(f"timing {args.repeat} calls per operation (after {args.warmup} warm-up calls):", flush=True)
        before = _row_counts(backend)
        empty = time_operations(empty_fx, args.repeat, args.warmup, "empty")
        print(f"  rows added by the timed calls: {_delta(before, _row_counts(backend))}", flush=True)

        print(f"filling (scale {args.scale:g}) ...", flush=True)
        fill_dialect = Dialect(backend.name, datetime.now(timezone.utc))
        began = time.perf_counter()
        took = backend.run_statements(fill_statements(fill_dialect, args.scale))
        fill_seconds = time.perf_counter() - began
        settled = backend.settle()
        print_rows([(f"  {label}", f"{seconds:.1f} s") for label, seconds in took]
                   + [("  fill total", f"{fill_seconds:.1f} s")]
                   + [(f"  {label}", f"{seconds:.1f} s") for label, seconds in settled])
        print_rows([("machine", machine()), ("filled database", "")] + [(f"  {k}", v) for k, v in backend.counts()])

        threads = max(1, round(FILL["threads"] * args.scale))
        rng = random.Random(4711)
        live = [i for i in rng.sample(range(1, threads + 1), min(threads, 2 * calls + 20)) if i % 100 != 0]
        filled_fx = Fixture(ctx, [thread_target("thr", "org", i) for i in live])
        # The fill's own write-back (a GB written in a minute) still competes for the disk and the CPU,
        # and the pages a running service keeps warm are cold: flush it, make one pass that is printed
        # but not compared, then the compared one.
        os.sync()
        time_operations(filled_fx, args.repeat, args.warmup, "first pass after the fill (not compared)")
        before = _row_counts(backend)
        filled = time_operations(filled_fx, args.repeat, args.warmup, "filled")
        print(f"  rows added by the timed calls: {_delta(before, _row_counts(backend))}", flush=True)

        print(f"\nquery plans on the filled database ({'EXPLAIN QUERY PLAN' if backend.name == 'sqlite' else 'EXPLAIN (ANALYZE, BUFFERS), rolled back'}),"
              " statements of one more call each:", flush=True)
        for line in plans(filled_fx, backend, calls):
            print(line, flush=True)

        print(f"\n{backend.name}: per-message cost, empty vs filled (scale {args.scale:g})", flush=True)
        print_rows([("machine", machine()), ("code", code_version())])
        for line in table(empty, filled):
            print(line, flush=True)
        ctx.db.dispose()
    finally:
        backend.drop()


def _row_counts(backend: Backend) -> dict[str, int]:
    connection = backend.raw_connection()
    try:
        return {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("inbound_messages", "jobs", "webhook_deliveries")}
    finally:
        connection.close()


def _delta(before: dict[str, int], after: dict[str, int]) -> str:
    return ", ".join(f"{table} +{after[table] - before[table]}" for table in before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of a year's history (1.0; 0.01 is quick)")
    parser.add_argument("--repeat", type=int, default=200, help="timed calls per operation and database (200)")
    parser.add_argument("--warmup", type=int, default=10, help="calls before timing, not counted (10)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL,
                        help=f"the database to create, fill and drop ({DEFAULT_POSTGRES_URL})")
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)  # the flows log every message at INFO
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        for name in (("sqlite", "postgresql") if args.backend == "both" else (args.backend,)):
            backend = SqliteBackend(Path(tmp)) if name == "sqlite" else PostgresBackend(args.postgres_url)
            run_backend(backend, args, Path(tmp))


if __name__ == "__main__":
    main()
