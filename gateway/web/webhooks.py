"""POST /webhooks/github: verify, de-duplicate, store, answer; the handling is a job."""
from __future__ import annotations

import json
import logging

from flask import Blueprint, current_app, jsonify, request

from gateway.flows import github_events
from gateway.web.errors import ApiError
from github_app.webhooks import verify_signature

bp = Blueprint("webhooks", __name__)
log = logging.getLogger("gateway.webhooks")


@bp.post("/webhooks/github")
def github_webhook():
    ctx = current_app.config["GATEWAY"]
    body = request.get_data(cache=False)
    secret = ctx.settings.github_webhook_secret
    if not secret or not verify_signature(secret, body, request.headers.get("X-Hub-Signature-256")):
        log.warning("webhook refused: missing or wrong X-Hub-Signature-256 from %s", request.remote_addr)
        raise ApiError(401, "missing or invalid X-Hub-Signature-256")
    event = request.headers.get("X-GitHub-Event", "")
    delivery_id = request.headers.get("X-GitHub-Delivery", "")
    if not event or not delivery_id or len(delivery_id) > 100:
        raise ApiError(400, "X-GitHub-Event and X-GitHub-Delivery headers are required")
    if event == "ping":
        return jsonify({"ok": True, "event": "ping", "zen": "pong"})
    try:
        payload = json.loads(body)
    except ValueError:  # UnicodeDecodeError too
        raise ApiError(400, "the payload is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "the payload must be a JSON object")
    outcome = github_events.receive(ctx, event=event, delivery_id=delivery_id, payload=payload, body=body)
    return jsonify({"ok": True, "delivery": delivery_id, "outcome": outcome}), 202 if outcome == "queued" else 200
