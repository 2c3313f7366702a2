"""Inbound mail over HTTP, for providers that post raw MIME to a webhook, and the verdict list.

POST /inbound/raw runs the same pipeline as the SMTP receiver; SMTP answers
become HTTP statuses: 2xx → 202, 5.1.1 → 404, 5.7.x → 403, 552 → 413,
4xx → 503 with Retry-After (the provider should retry, as an MTA would).
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from gateway.flows.operator import inbound_messages
from gateway.flows.reply import ReplyPipeline
from gateway.web.auth import require_api_token
from gateway.web.errors import ApiError, query_limit
from inbound.handler import TOO_BIG, Decision, Envelope

bp = Blueprint("inbound", __name__)
VERDICTS = ("queued", "posted", "empty", "ignored-auto-reply", "bounce", "duplicate", "failed",
            "rejected-not-participant", "rejected-dmarc")


def _http_status(decision: Decision) -> int:
    if decision.accepted:
        return 202
    if decision.code == 552:
        return 413
    if 400 <= decision.code < 500:
        return 503
    return 404 if decision.status == "5.1.1" else 403


def _answer(decision: Decision):
    body = {"accepted": decision.accepted, "smtp": {"code": decision.code, "status": decision.status,
                                                    "text": decision.text}}
    if decision.accepted and decision.reason:
        body["verdict"] = decision.reason
    response = jsonify(body)
    response.status_code = _http_status(decision)
    if response.status_code == 503:
        response.headers["Retry-After"] = "60"
    return response


@bp.post("/inbound/raw")
@require_api_token
def inbound_raw():
    ctx = current_app.config["GATEWAY"]
    mail_from = request.args.get("from", request.headers.get("X-Envelope-From"))
    recipients = request.args.getlist("to") or [
        r.strip() for r in request.headers.get("X-Envelope-To", "").split(",") if r.strip()]
    fields = {}
    if mail_from is None:
        fields["from"] = "the envelope sender is required (query ?from= or header X-Envelope-From; empty for <>)"
    if not recipients:
        fields["to"] = "at least one envelope recipient is required (query ?to= or header X-Envelope-To)"
    if request.mimetype not in ("message/rfc822", "application/octet-stream", "text/plain"):
        fields["Content-Type"] = "expected message/rfc822"
    if fields:
        raise ApiError(422, "invalid inbound message", fields)
    raw = request.get_data(cache=False)
    if len(raw) > ctx.settings.max_message_bytes:
        return _answer(TOO_BIG)
    if not raw.strip():
        raise ApiError(422, "invalid inbound message", {"body": "the message is empty"})
    pipeline = ReplyPipeline(ctx, channel="http")
    accepted = []
    for address in recipients[:ctx.settings.max_recipients]:
        decision = pipeline.check_recipient(address)
        if not decision.accepted:
            return _answer(decision)
        accepted.append(address)
    envelope = Envelope(mail_from=mail_from.strip("<> "), rcpt_tos=tuple(accepted), content=raw,
                        peer=request.remote_addr or "", helo=None)
    return _answer(pipeline.deliver(envelope))


@bp.get("/api/inbound")
@require_api_token
def list_inbound():
    ctx = current_app.config["GATEWAY"]
    verdict, thread = request.args.get("verdict"), request.args.get("thread")
    limit = query_limit(request.args)
    if verdict is not None and verdict not in VERDICTS:
        raise ApiError(422, "invalid query", {"verdict": f"must be one of {', '.join(VERDICTS)}"})
    return jsonify({"messages": inbound_messages(ctx, verdict=verdict, thread=thread, limit=limit)})

