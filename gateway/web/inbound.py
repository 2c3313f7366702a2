"""Inbound mail over HTTP, for providers that post raw MIME to a webhook, and the verdict list.

POST /inbound/raw asks the same door as the SMTP receiver (``gateway.flows.receive_reply``), and
its answer becomes an HTTP status here: accepted → 202, unknown recipient → 404, refused sender →
403, too big → 413, try later → 503 with Retry-After (the provider should retry, as an MTA would).
The body also carries the SMTP reply the receiver would have given, for providers that pass it on.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from gateway.domain import TOO_BIG, Answer, Outcome, Verdict
from gateway.flows.operator import inbound_messages
from gateway.flows.receive_reply import ReplyDoor
from gateway.web.auth import require_api_token
from gateway.web.errors import ApiError, query_limit
from inbound.handler import Envelope, smtp_reply

bp = Blueprint("inbound", __name__)
VERDICTS = tuple(Verdict)

HTTP_STATUS = {
    Outcome.RECIPIENT_OK: 202,
    Outcome.ACCEPTED: 202,
    Outcome.UNKNOWN_RECIPIENT: 404,
    Outcome.NOT_PARTICIPANT: 403,
    Outcome.AUTHENTICATION_FAILED: 403,
    Outcome.TOO_MANY_RECIPIENTS: 503,  # SMTP says 452: try again (with fewer)
    Outcome.TOO_BIG: 413,
    Outcome.TRY_LATER: 503,
}


def _answer(answer: Answer):
    smtp = smtp_reply(answer)
    body = {"accepted": answer.accepted, "smtp": {"code": smtp.code, "status": smtp.status, "text": smtp.text}}
    if answer.accepted and answer.reason:
        body["verdict"] = answer.reason
    response = jsonify(body)
    response.status_code = HTTP_STATUS[answer.outcome]
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
    door = ReplyDoor(ctx, channel="http")
    accepted = []
    for address in recipients[:ctx.settings.max_recipients]:
        answer = door.check_recipient(address)
        if not answer.accepted:
            return _answer(answer)
        accepted.append(address)
    envelope = Envelope(mail_from=mail_from.strip("<> "), rcpt_tos=tuple(accepted), content=raw,
                        peer=request.remote_addr or "", helo=None)
    return _answer(door.deliver(envelope))


@bp.get("/api/inbound")
@require_api_token
def list_inbound():
    ctx = current_app.config["GATEWAY"]
    verdict, thread = request.args.get("verdict"), request.args.get("thread")
    limit = query_limit(request.args)
    if verdict is not None and verdict not in VERDICTS:
        raise ApiError(422, "invalid query", {"verdict": f"must be one of {', '.join(VERDICTS)}"})
    return jsonify({"messages": inbound_messages(ctx, verdict=verdict, thread=thread, limit=limit)})

