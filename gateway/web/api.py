"""The API upstream systems call: thin views over gateway.flows."""
from __future__ import annotations

import re

from flask import Blueprint, current_app, jsonify, request, url_for

from gateway.errors import PermanentError, TransientError
from gateway.flows import merge, open_pr
from gateway.flows.pr_request import InvalidRequest, parse_pull_request_request
from gateway.web.auth import require_api_token
from gateway.web.errors import ApiError
from github_app.client import MERGE_METHODS

bp = Blueprint("api", __name__, url_prefix="/api")


def ctx():
    return current_app.config["GATEWAY"]


def json_body() -> object:
    if not request.is_json:
        raise ApiError(415, "expected Content-Type: application/json")
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError(400, "request body is not valid JSON")
    return data


def status_json(status: open_pr.PullRequestStatus) -> dict:
    body = {"id": status.id, "status": status.status, "repo": status.repo, "head": status.head,
            "base": status.base, "number": status.number, "pr_url": status.url,
            "url": url_for("api.get_pull_request", request_id=status.id, _external=True),
            "created_at": status.created_at.isoformat(), "updated_at": status.updated_at.isoformat()}
    if status.failure_reason:
        body["failure_reason"] = status.failure_reason
    if status.retrying:
        body["retrying"] = status.retrying
    return body


@bp.post("/pull-requests")
@require_api_token
def create_pull_request():
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key.strip()) <= 200:
        raise ApiError(422, "invalid request", {"Idempotency-Key": "must be 1 to 200 characters"})
    try:
        spec = parse_pull_request_request(json_body(), allow_local_sources=ctx().settings.allow_local_sources)
        status, created = open_pr.submit(ctx(), spec, key.strip() if key else None)
    except InvalidRequest as exc:
        raise ApiError(422, "invalid request", exc.fields) from None
    response = jsonify(status_json(status))
    response.status_code = 202
    response.headers["Location"] = url_for("api.get_pull_request", request_id=status.id)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("/pull-requests/<request_id>")
@require_api_token
def get_pull_request(request_id: str):
    status = open_pr.get_status(ctx(), request_id)
    if status is None:
        raise ApiError(404, f"no pull request request with id {request_id!r}")
    return jsonify(status_json(status))


@bp.post("/pull-requests/<request_id>/merge")
@require_api_token
def merge_pull_request(request_id: str):
    """A person's decision; nothing else in the gateway can reach this."""
    data = json_body() if request.content_length else {}
    if not isinstance(data, dict):
        raise ApiError(422, "invalid request", {"body": "expected a JSON object"})
    fields = {name: "unknown field" for name in set(data) - {"method", "expected_head_sha"}}
    method = data.get("method", "squash")
    if method not in MERGE_METHODS:
        fields["method"] = f"must be one of {', '.join(MERGE_METHODS)}"
    sha = data.get("expected_head_sha")
    if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{40}", sha)):
        fields["expected_head_sha"] = "must be a 40-character hex commit SHA"
    if fields:
        raise ApiError(422, "invalid request", fields)
    try:
        outcome = merge.merge_pull_request(ctx(), request_id, method=method, expected_head_sha=sha)
    except merge.MergeNotPossible as exc:
        raise ApiError(exc.status, exc.reason) from None
    except TransientError as exc:
        headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else {}
        raise ApiError(503, f"GitHub is unavailable, try again: {exc}", headers=headers) from None
    except PermanentError as exc:
        raise ApiError(502, str(exc)) from None
    return jsonify({"merged": True, "number": outcome.number, "pr_url": outcome.url, "sha": outcome.sha,
                    "message": outcome.message})
