"""Housekeeping: what the gateway no longer needs is forgotten, once an hour.

prune_history (the job)   mail bodies: the raw message of a mail that has its verdict, received
                          more than GATEWAY_RETAIN_RAW_MAIL_DAYS ago, is dropped; the message row,
                          its Message-ID (duplicates are still recognised) and its verdict stay.
                          The same for the body of a mail we sent that long ago (the row stays).
                          finished jobs: jobs done more than GATEWAY_RETAIN_FINISHED_JOBS_DAYS ago
                          are deleted; dead letters stay until an operator retries them.
                          webhook deliveries: handled deliveries received more than
                          GATEWAY_RETAIN_WEBHOOK_DELIVERIES_DAYS ago are deleted (GitHub
                          redelivers for 3 days; until then the stored id de-duplicates).
                          Then it queues its next run, an hour on.
keep_pruning()            (worker processes, as they start) one prune_history job is queued,
                          unless every setting keeps things forever.
Kept for good: threads, participants, verdicts, who was mailed when, dead letters.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from gateway.config import Settings
from gateway.flows.context import FlowContext
from gateway.queue import ClaimedJob, JobKind, enqueue_once
from gateway.store import retention

log = logging.getLogger("gateway.retention")
JOB = "prune_history"
EVERY = timedelta(hours=1)


def job_kinds(ctx: FlowContext) -> list[JobKind]:
    return [JobKind(JOB, lambda job: prune_history(ctx, job))]


def keep_pruning(ctx: FlowContext) -> None:
    """Make sure the hourly prune runs: queue it now unless it is queued or running already."""
    if not _prunes_anything(ctx.settings):
        return
    with ctx.db.session() as session:
        job_id = enqueue_once(session, JOB, {}, max_attempts=ctx.settings.job_max_attempts)
    if job_id is not None:
        log.info("history pruning queued (job %s)", job_id)


def prune_history(ctx: FlowContext, job: ClaimedJob) -> None:
    settings, now = ctx.settings, ctx.clock()
    cleared = deleted_jobs = deleted_deliveries = 0
    if settings.retain_raw_mail_days is not None:
        bodies_before = now - timedelta(days=settings.retain_raw_mail_days)
        cleared = retention.clear_raw_mail(ctx.db, bodies_before) + retention.clear_sent_mail(ctx.db, bodies_before)
    if settings.retain_finished_jobs_days is not None:
        deleted_jobs = retention.delete_finished_jobs(ctx.db, now - timedelta(days=settings.retain_finished_jobs_days))
    if settings.retain_webhook_deliveries_days is not None:
        deleted_deliveries = retention.delete_handled_deliveries(
            ctx.db, now - timedelta(days=settings.retain_webhook_deliveries_days))
    log.info("history pruned: %d mail bodies cleared, %d finished jobs and %d webhook deliveries deleted",
             cleared, deleted_jobs, deleted_deliveries)
    if _prunes_anything(settings):
        with ctx.db.session() as session:
            enqueue_once(session, JOB, {}, run_after=now + EVERY, max_attempts=settings.job_max_attempts,
                         successor_of=job.id)


def _prunes_anything(settings: Settings) -> bool:
    return any(days is not None for days in (settings.retain_raw_mail_days, settings.retain_finished_jobs_days,
                                             settings.retain_webhook_deliveries_days))
