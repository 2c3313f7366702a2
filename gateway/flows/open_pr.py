"""Flow 1, open PR: an upstream system has a branch ready; open the PR and tell the reporter.

submit()     validate → store the request and its job in one transaction → 202
open_pull_request() (the job)
             find the installation → mirror the branch if asked → open or reuse
             the PR as the App → record the thread and its reporter and queue the
             notification mail, in one transaction
Failures a person must act on (App not installed, branch missing, permission
denied) end the request as `failed` with that reason; the rest are retried.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gateway.domain import JobStatus, RequestStatus
from gateway.flows.context import FlowContext
from gateway.flows.mail import queue_thread_mail
from gateway.flows.pr_request import InvalidRequest, PullRequestSpec
from gateway.queue import ClaimedJob, JobKind, enqueue, raise_if_suspended
from gateway.store import Job, Participant, PullRequestRequest, Thread, thread_for_pull
from github_app.mirror import mirror_branch
from outbound.compose import notification_content

JOB = "open_pull_request"


@dataclass(frozen=True)
class PullRequestStatus:
    id: str
    status: str
    repo: str
    head: str
    base: str | None
    number: int | None
    url: str | None
    failure_reason: str | None
    retrying: str | None
    created_at: datetime
    updated_at: datetime


def submit(ctx: FlowContext, spec: PullRequestSpec, idempotency_key: str | None) -> tuple[PullRequestStatus, bool]:
    """Store the request and queue its job together; (status, created)."""
    if idempotency_key is not None and (previous := _by_idempotency_key(ctx, idempotency_key, spec)):
        return previous, False
    try:
        with ctx.db.session() as session:
            request = PullRequestRequest(
                idempotency_key=idempotency_key, fingerprint=spec.fingerprint(), repo=spec.repo, head=spec.head,
                base=spec.base, title=spec.title, body=spec.body, reporter_email=spec.reporter_email,
                reporter_name=spec.reporter_name, installation_id=spec.installation_id,
                source_url=spec.source_url, source_ref=spec.source_ref, status=RequestStatus.QUEUED)
            session.add(request)
            session.flush()
            request.job_id = enqueue(session, JOB, {"request_id": request.id}, installation_id=spec.installation_id,
                                     max_attempts=ctx.settings.job_max_attempts)
            request_id = request.id
    except IntegrityError:  # the same key raced in from another request
        if idempotency_key is not None and (previous := _by_idempotency_key(ctx, idempotency_key, spec)):
            return previous, False
        raise
    return get_status(ctx, request_id), True


def _by_idempotency_key(ctx: FlowContext, key: str, spec: PullRequestSpec) -> PullRequestStatus | None:
    with ctx.db.session() as session:
        request = session.scalars(select(PullRequestRequest).where(PullRequestRequest.idempotency_key == key)).first()
        if request is None:
            return None
        if request.fingerprint != spec.fingerprint():
            raise InvalidRequest({"Idempotency-Key": "was already used for a different request"})
        request_id = request.id
    return get_status(ctx, request_id)


def get_status(ctx: FlowContext, request_id: str) -> PullRequestStatus | None:
    with ctx.db.session() as session:
        request = session.get(PullRequestRequest, request_id)
        if request is None:
            return None
        job = session.get(Job, request.job_id) if request.job_id else None
        retrying = job.last_error if job is not None and job.status == JobStatus.QUEUED and job.last_error else None
        return PullRequestStatus(
            id=request.id, status=request.status, repo=request.repo, head=request.head, base=request.base,
            number=request.pr_number, url=request.pr_url, failure_reason=request.failure_reason,
            retrying=retrying, created_at=request.created_at, updated_at=request.updated_at)


def open_pull_request(ctx: FlowContext, job: ClaimedJob) -> None:
    request_id = job.payload["request_id"]
    with ctx.db.session() as session:
        request = session.get(PullRequestRequest, request_id)
        if request is None or RequestStatus(request.status).finished:
            return  # done before a crash, or already given up on
        spec = _spec_of(request)

    installation_id = spec.installation_id or ctx.installations.installation_for_repo(spec.repo)
    raise_if_suspended(ctx.db, job.id, installation_id)
    if spec.source_url:
        _set_status(ctx, request_id, RequestStatus.MIRRORING, installation_id=installation_id)
        mirror_branch(source_url=spec.source_url, source_ref=spec.source_ref, target_repo=spec.repo,
                      target_branch=spec.head, token=ctx.installations.get(installation_id),
                      web_url=ctx.settings.github_web_url)
    _set_status(ctx, request_id, RequestStatus.OPENING, installation_id=installation_id)
    base = spec.base or ctx.github.default_branch(installation_id, spec.repo)
    pull, _created = ctx.github.open_or_reuse_pull_request(installation_id, spec.repo, head=spec.head, base=base,
                                                           title=spec.title, body=spec.body)

    with ctx.db.session() as session:
        thread = thread_for_pull(session, spec.repo, pull.number)
        if thread is None:
            thread = Thread(repo=spec.repo, pr_number=pull.number, pr_url=pull.url, title=pull.title,
                            installation_id=installation_id)
            session.add(thread)
            session.flush()
        reporter = session.scalars(select(Participant).where(Participant.thread_id == thread.id,
                                                             Participant.email == spec.reporter_email)).first()
        if reporter is None:
            reporter = Participant(thread_id=thread.id, email=spec.reporter_email, name=spec.reporter_name)
            session.add(reporter)
            session.flush()
        request = session.get(PullRequestRequest, request_id)
        request.status, request.base, request.pr_number, request.pr_url = RequestStatus.OPENED, base, pull.number, pull.url
        request.thread_id, request.installation_id, request.failure_reason = thread.id, installation_id, None
        content = notification_content(repo=spec.repo, title=pull.title, pr_url=pull.url, pr_number=pull.number,
                                       body=spec.body)
        queue_thread_mail(session, ctx, thread=thread, participant=reporter, kind="notification",
                          content=content, request_id=request_id)


def request_failed(ctx: FlowContext, job: ClaimedJob, reason: str) -> None:
    with ctx.db.session() as session:
        request = session.get(PullRequestRequest, job.payload["request_id"])
        if request is not None and request.status not in (RequestStatus.OPENED, RequestStatus.NOTIFIED):
            request.status, request.failure_reason = RequestStatus.FAILED, reason


def _set_status(ctx: FlowContext, request_id: str, status: str, *, installation_id: int) -> None:
    with ctx.db.session() as session:
        request = session.get(PullRequestRequest, request_id)
        request.status, request.installation_id = status, installation_id


def _spec_of(request: PullRequestRequest) -> PullRequestSpec:
    return PullRequestSpec(repo=request.repo, head=request.head, base=request.base, title=request.title,
                           body=request.body, reporter_email=request.reporter_email,
                           reporter_name=request.reporter_name, installation_id=request.installation_id,
                           source_url=request.source_url, source_ref=request.source_ref)


def job_kinds(ctx: FlowContext) -> list[JobKind]:
    return [JobKind(JOB, lambda job: open_pull_request(ctx, job),
                    on_dead=lambda job, reason: request_failed(ctx, job, reason))]
