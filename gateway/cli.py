"""The `gateway` command: run the processes, migrate, inspect and retry.

Configuration errors stop here with one line naming the setting (exit 2).
"""
from __future__ import annotations

import json
import logging
import sys

import click

from gateway.config import ConfigError, Settings
from gateway.domain import JobStatus, Verdict
from gateway.store import Database


def _load(sandbox: bool = False, *, service: bool = False) -> Settings:
    try:
        settings = Settings.from_env(sandbox=sandbox)
        if settings.sandbox:
            settings = settings.with_sandbox_defaults()
        if service:
            settings.require_for_service()
        return settings
    except ConfigError as exc:
        click.echo(f"gateway: configuration error: {exc}", err=True)
        sys.exit(2)


def _logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _database(settings: Settings, *, create_if_empty: bool) -> Database:
    from gateway.migrate import current_revision, head_revision, upgrade

    db = Database(settings.database_url)
    current = current_revision(db)
    if current is None and create_if_empty and db.is_sqlite:
        upgrade(db)
    elif current != head_revision(db):
        click.echo(f"gateway: database schema is at {current or 'nothing'}, this version needs "
                   f"{head_revision(db)}: run `gateway db upgrade`", err=True)
        sys.exit(2)
    return db


def _context(settings: Settings, *, emulated: bool = False, create_if_empty: bool = False):
    from gateway.flows.context import build_context

    return build_context(settings, _database(settings, create_if_empty=create_if_empty), github_emulated=emulated)


@click.group()
def main() -> None:
    """Email ⇄ GitHub pull-request gateway."""


@main.command()
@click.option("--sandbox", is_flag=True, help="Emulate GitHub and deliver mail to a local maildir.")
def serve(sandbox: bool) -> None:
    """Run the web app, the SMTP receiver and the worker in one process."""
    from gateway.runner import run_all

    settings = _load(sandbox)
    sandbox_env = None
    if settings.sandbox:
        from gateway.sandbox import start_sandbox

        sandbox_env = start_sandbox(settings)
        settings = sandbox_env.settings
    try:
        settings.require_for_service()
    except ConfigError as exc:
        click.echo(f"gateway: configuration error: {exc}", err=True)
        sys.exit(2)
    _logging(settings)
    ctx = _context(settings, emulated=sandbox_env is not None, create_if_empty=True)
    try:
        run_all(ctx, on_ready=lambda web, smtp: _banner(settings, web.port, smtp.port, sandbox_env))
    finally:
        if sandbox_env:
            sandbox_env.stop()


def _banner(settings: Settings, http_port: int, smtp_port: int, sandbox_env) -> None:
    base = f"http://{settings.http_host}:{http_port}"
    if sandbox_env is None:
        click.echo(f"gateway: web {base}  smtp {settings.smtp_host}:{smtp_port}  "
                   f"GitHub {settings.github_api_url}  health {base}/health")
        return
    from gateway.sandbox import SANDBOX_INSTALLATION_ID, SANDBOX_REPO

    sandbox_env.emulator.create_branch(SANDBOX_REPO, "sandbox-fix", files={"FIX.md": "A ready change.\n"})
    request = {"repo": SANDBOX_REPO, "head": "sandbox-fix", "title": "Fix the widget",
               "body": "The change the agent made.", "reporter_email": "you@example.com"}
    click.echo("\n".join([
        "",
        "  SANDBOX MODE: GitHub is EMULATED (no real GitHub is contacted); mail is not sent.",
        f"  GitHub emulator  {settings.github_api_url}  repo {SANDBOX_REPO}, installation {SANDBOX_INSTALLATION_ID}",
        f"  web              {base}   (health: {base}/health)",
        f"  SMTP receiver    {settings.smtp_host}:{smtp_port}   replies to reply+…@{settings.reply_domain}",
        f"  outbound mail    {settings.maildir}/new/   (a maildir: one file per mail)",
        f"  database         {settings.database_url}",
        "",
        "  Open a pull request:",
        f"  curl -sS -X POST {base}/api/pull-requests -H 'Authorization: Bearer {settings.api_tokens[0]}' "
        f"-H 'Content-Type: application/json' -d '{json.dumps(request)}'",
        "",
    ]))


@main.command()
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes")
def web(workers: int) -> None:
    """Run the web app under gunicorn."""
    from gunicorn.app.base import BaseApplication

    settings = _load(service=True)
    _logging(settings)
    _database(settings, create_if_empty=False).dispose()

    class GatewayWeb(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{settings.http_host}:{settings.http_port}")
            self.cfg.set("workers", workers)
            self.cfg.set("timeout", 30)
            self.cfg.set("accesslog", "-")

        def load(self):  # in each worker, after fork: no shared database connections
            from gateway.web.app import create_app

            return create_app(_context(settings))

    GatewayWeb().run()


@main.command()
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1, 64),
              help="SMTP protocol processes sharing the port (SO_REUSEPORT), besides the one writer.")
def smtp(processes: int) -> None:
    """Run the SMTP receiver: protocol processes and the writer that stores their messages."""
    from gateway import smtp_writer

    settings = _load(service=True)
    _logging(settings)
    _database(settings, create_if_empty=False).dispose()  # check the schema once, before forking
    # Each process builds its own context after the fork: no database connection crosses it.
    sys.exit(smtp_writer.run(processes, lambda: _context(settings)))


@main.command()
def worker() -> None:
    """Run the job worker."""
    from gateway.runner import run_worker

    settings = _load(service=True)
    _logging(settings)
    run_worker(_context(settings))


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations (Alembic) up to REVISION."""
    from gateway.migrate import current_revision, upgrade

    database = Database(_load().database_url)
    upgrade(database, revision)
    click.echo(f"database at revision {current_revision(database)}")


@db.command("current")
def db_current() -> None:
    from gateway.migrate import current_revision, head_revision

    database = Database(_load().database_url)
    click.echo(f"current {current_revision(database) or 'none'}, head {head_revision(database)}")


@main.group()
def jobs() -> None:
    """Inspect jobs and retry dead-lettered ones."""


@jobs.command("list")
@click.option("--dead", is_flag=True, help="Only dead-lettered jobs (same as --status dead).")
@click.option("--status", type=click.Choice([status.value for status in JobStatus]), default=None)
@click.option("--kind", default=None, help="Only jobs of this kind (post_comment, deliver_mail, ...).")
@click.option("--limit", default=50, show_default=True)
def jobs_list(dead: bool, status: str | None, kind: str | None, limit: int) -> None:
    """Newest first: id, kind, status, attempts, next run, last error."""
    from gateway.flows.operator import list_jobs

    if dead and status not in (None, JobStatus.DEAD):
        raise click.UsageError("--dead and --status are contradictory")
    found = list_jobs(_context(_load()), status=JobStatus.DEAD if dead else status, kind=kind, limit=limit)
    for job in found:
        click.echo(f"{job['id']}\t{job['kind']}\t{job['status']}\tattempts={job['attempts']}/{job['max_attempts']}"
                   f"\t{job['run_after']}\t{job['last_error'] or ''}")
    if not found:
        click.echo("no jobs" + (" dead-lettered" if dead or status == JobStatus.DEAD else ""), err=True)


@jobs.command("retry")
@click.argument("job_ids", type=int, nargs=-1, required=True)
def jobs_retry(job_ids: tuple[int, ...]) -> None:
    """Queue dead-lettered jobs again with a fresh attempt budget."""
    from gateway.flows.operator import retry_job

    ctx = _context(_load())
    failed = False
    for job_id in job_ids:
        if retry_job(ctx, job_id) is None:
            click.echo(f"job {job_id} is not dead-lettered (or does not exist)", err=True)
            failed = True
        else:
            click.echo(f"job {job_id} queued again")
    sys.exit(1 if failed else 0)


@main.group()
def inbound() -> None:
    """Inbound mail and its verdicts."""


@inbound.command("list")
@click.option("--verdict", default=None, help=", ".join(Verdict))
@click.option("--thread", default=None, help="a thread id")
@click.option("--limit", default=50, show_default=True)
def inbound_list(verdict: str | None, thread: str | None, limit: int) -> None:
    from gateway.flows.operator import inbound_messages

    for m in inbound_messages(_context(_load(service=True)), verdict=verdict, thread=thread, limit=limit):
        click.echo(f"{m['id']}\t{m['received_at']}\t{m['thread'] or '-'}\t{m['verdict']}\t{m['from'] or '-'}\t"
                   f"{m['reason'] or m['comment_url'] or ''}")


@main.group()
def threads() -> None:
    """Mail threads."""


@threads.command("revoke")
@click.argument("thread_id")
def threads_revoke(thread_id: str) -> None:
    """Refuse every reply token of THREAD_ID from now on."""
    from gateway.flows.operator import revoke_thread

    if not revoke_thread(_context(_load(service=True)), thread_id):
        click.echo(f"no thread {thread_id}", err=True)
        sys.exit(1)
    click.echo(f"thread {thread_id} revoked: its reply addresses are refused from now on")


@main.command()
def demo() -> None:
    """Run the whole loop locally against the emulator and print each step."""
    from gateway.demo import run_demo

    sys.exit(run_demo())


if __name__ == "__main__":
    main()
