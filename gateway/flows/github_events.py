"""Flow 4, GitHub → mail: what happens on a threaded PR reaches its participants by mail.

receive()   (the webhook view, after the signature check) store the delivery and
            queue its handling in one transaction; a redelivered X-GitHub-Delivery
            is acknowledged and has no second effect. Answers in milliseconds,
            whatever GitHub or the relay are doing.
handle()    (the job) installation deleted/suspended → purge tokens, pause its
            jobs; unsuspend → resume. On a PR with a thread: comments, review
            comments, submitted reviews, merged, closed, reopened become a mail
            in that thread to every subscribed participant, queued in the same
            transaction that records the delivery's outcome (a retried job never
            mails twice). Revoked threads get nothing.
Never relayed: the gateway's own comments (bot login or marker) and anything
its own App caused.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from sqlalchemy import select

from gateway.flows.comment import has_marker
from gateway.flows.context import FlowContext
from gateway.flows.mail import queue_thread_mail
from gateway.queue import ClaimedJob, JobKind, enqueue
from gateway.store import (Installation, Participant, Thread, WebhookDelivery, insert_or_ignore, thread_for_pull,
                           utcnow)
from outbound.compose import activity_content

log = logging.getLogger("gateway.webhooks")
JOB = "handle_github_event"


def receive(ctx: FlowContext, *, event: str, delivery_id: str, payload: dict, body: bytes) -> str:
    """'queued' or 'duplicate'. ``body`` is stored as GitHub sent it (``payload`` is it parsed)."""
    row = {"delivery_id": delivery_id, "event": event, "action": payload.get("action"),
           "payload": body.decode("utf-8"), "received_at": utcnow()}
    # GitHub keeps every delivery and redelivers on request (Recent Deliveries, or the API): the
    # commit does not wait for the disk, so one delivery costs no fsync (bench/webhook_ingest.py).
    with ctx.db.driver_transaction(flush_on_commit=False) as tx:
        # One statement decides first-or-redelivery, also when the same delivery races in twice.
        if not insert_or_ignore(tx, WebhookDelivery, row, ("delivery_id",)):
            return "duplicate"
        enqueue(tx, JOB, {"delivery_id": delivery_id}, max_attempts=ctx.settings.job_max_attempts)
    return "queued"


@dataclass(frozen=True)
class Activity:
    kind: str
    actor: str
    text: str | None
    url: str | None
    review_state: str | None = None


def handle(ctx: FlowContext, job: ClaimedJob) -> None:
    delivery_id = job.payload["delivery_id"]
    with ctx.db.session() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.outcome is not None:
            return  # handled before a crash
        event, payload = delivery.event, json.loads(delivery.payload)

    if event == "installation":
        outcome = _installation_changed(ctx, payload)
    else:
        outcome = _relay_activity(ctx, delivery_id, event, payload)
    with ctx.db.session() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery.outcome is None:  # a relay already recorded its outcome with its mails
            delivery.outcome = outcome
    log.info("delivery %s (%s.%s): %s", delivery_id, event, payload.get("action"), outcome)


def _installation_changed(ctx: FlowContext, payload: dict) -> str:
    action, installation = payload.get("action"), payload.get("installation") or {}
    installation_id = installation.get("id")
    if not installation_id:
        return "ignored: no installation id"
    pausing = action in ("deleted", "suspend")
    with ctx.db.session() as session:
        row = session.get(Installation, installation_id)
        if row is None:
            row = Installation(id=installation_id)
            session.add(row)
        row.account = (installation.get("account") or {}).get("login")
        if pausing:
            by = (payload.get("sender") or {}).get("login", "someone")
            row.suspended_at = ctx.clock()
            row.suspended_reason = ("the App was uninstalled" if action == "deleted"
                                    else f"the installation was suspended by {by}")
            outcome = f"paused: {row.suspended_reason}"
        elif action in ("unsuspend", "created"):
            row.suspended_at, row.suspended_reason = None, None
            outcome = "resumed"
        else:
            outcome = f"ignored: installation.{action}"
    if pausing:
        # Only once the pause is committed: no job of this installation can fetch a new token after.
        ctx.installations.invalidate(installation_id)
    return outcome


def _activity_of(event: str, payload: dict) -> tuple[int | None, Activity | None]:
    """The PR number and what happened, or (None, None) for events we do not relay."""
    action, sender = payload.get("action"), (payload.get("sender") or {}).get("login", "someone")
    if event == "issue_comment" and action == "created" and (payload.get("issue") or {}).get("pull_request"):
        c = payload["comment"]
        return payload["issue"]["number"], Activity("comment", c["user"]["login"], c.get("body"), c.get("html_url"))
    if event == "pull_request_review_comment" and action == "created":
        c = payload["comment"]
        return payload["pull_request"]["number"], Activity("review_comment", c["user"]["login"], c.get("body"),
                                                           c.get("html_url"))
    if event == "pull_request_review" and action == "submitted":
        r = payload["review"]
        state = (r.get("state") or "").lower()
        if state == "commented" and not (r.get("body") or "").strip():
            return None, None  # only line comments: those arrive as review comments
        return payload["pull_request"]["number"], Activity("review", r["user"]["login"], r.get("body"),
                                                           r.get("html_url"), state)
    if event == "pull_request" and action in ("closed", "reopened"):
        pull = payload["pull_request"]
        if action == "closed" and pull.get("merged"):
            actor = (pull.get("merged_by") or {}).get("login", sender)
            return pull["number"], Activity("merged", actor, None, pull.get("html_url"))
        return pull["number"], Activity(action, sender, None, pull.get("html_url"))
    return None, None


def _is_own(ctx: FlowContext, payload: dict, activity: Activity) -> bool:
    """The gateway's own doing: its bot's account, its marker, or its App."""
    bot = ctx.bot_login.lower()  # GitHub logins are case-insensitive
    sender = payload.get("sender") or {}
    item = payload.get("comment") or payload.get("review") or {}
    via_app = (item.get("performed_via_github_app") or {}).get("id")
    return ((sender.get("login") or "").lower() == bot or activity.actor.lower() == bot
            or has_marker(activity.text)
            or (via_app is not None and str(via_app) == str(ctx.settings.github_app_id)))


def _relay_activity(ctx: FlowContext, delivery_id: str, event: str, payload: dict) -> str:
    number, activity = _activity_of(event, payload)
    if activity is None:
        return f"ignored: {event}.{payload.get('action')} is not relayed"
    if _is_own(ctx, payload, activity):
        return "ignored: caused by the gateway itself"
    repo = (payload.get("repository") or {}).get("full_name") or ""
    with ctx.db.session() as session:
        # GitHub sends the canonical full_name; the API caller may have spelled it in another case.
        thread = thread_for_pull(session, repo, number)
        if thread is None:
            return f"ignored: {repo}#{number} has no mail thread"
        if thread.revoked_at is not None:
            return f"ignored: the mail thread of {repo}#{number} was revoked"
        outcome = mail_activity(session, ctx, thread, activity)
        # Committed with the mails: a retry of this job finds it and mails nobody twice.
        session.get(WebhookDelivery, delivery_id).outcome = outcome
    return outcome


def mail_activity(session, ctx: FlowContext, thread: Thread, activity: Activity) -> str:
    """One mail per subscribed participant, in the caller's transaction; returns the outcome."""
    participants = session.scalars(select(Participant).where(Participant.thread_id == thread.id)).all()
    content = activity_content(repo=thread.repo, title=thread.title, kind=activity.kind, actor=activity.actor,
                               text=activity.text, url=activity.url, review_state=activity.review_state)
    sent = sum(queue_thread_mail(session, ctx, thread=thread, participant=p, kind=f"activity:{activity.kind}",
                                 content=content) is not None for p in participants)
    return f"relayed {activity.kind} to {sent} of {len(participants)} participant(s)"


def job_kinds(ctx: FlowContext) -> list[JobKind]:
    return [JobKind(JOB, lambda job: handle(ctx, job))]
