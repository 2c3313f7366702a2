"""The operator's view of the job queue over HTTP: list, inspect and retry dead-lettered jobs."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from gateway.domain import JobStatus
from gateway.flows.operator import get_job, list_jobs, retry_job
from gateway.web.auth import require_api_token
from gateway.web.errors import ApiError, query_limit

bp = Blueprint("jobs", __name__, url_prefix="/api/jobs")


@bp.get("")
@require_api_token
def list_():
    status, kind = request.args.get("status"), request.args.get("kind")
    limit = query_limit(request.args)
    if status is not None and status not in tuple(JobStatus):
        raise ApiError(422, "invalid query", {"status": f"must be one of {', '.join(JobStatus)}"})
    return jsonify({"jobs": list_jobs(current_app.config["GATEWAY"], status=status, kind=kind, limit=limit)})


@bp.get("/<int:job_id>")
@require_api_token
def show(job_id: int):
    job = get_job(current_app.config["GATEWAY"], job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id}")
    return jsonify(job)


@bp.post("/<int:job_id>/retry")
@require_api_token
def retry(job_id: int):
    """Only a dead-lettered job can be retried: a queued or running one would run twice."""
    ctx = current_app.config["GATEWAY"]
    job = retry_job(ctx, job_id)
    if job is not None:
        return jsonify(job)
    current = get_job(ctx, job_id)
    if current is None:
        raise ApiError(404, f"no job {job_id}")
    raise ApiError(409, f"job {job_id} is {current['status']}, not dead-lettered; only dead jobs can be retried")
