"""The use cases: each module reads top to bottom as one flow (docs/ARCHITECTURE.md lists them)."""
from __future__ import annotations


def job_kinds(ctx):
    """Every job kind the worker runs, from every flow."""
    from gateway.flows import github_events, mail, open_pr, post_reply, retention

    return [*open_pr.job_kinds(ctx), *mail.job_kinds(ctx), *post_reply.job_kinds(ctx), *github_events.job_kinds(ctx),
            *retention.job_kinds(ctx)]
