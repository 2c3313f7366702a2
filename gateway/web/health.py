"""GET /health: 200 when every dependency is usable, 503 otherwise."""
from flask import Blueprint, current_app, jsonify

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    healthy, report = current_app.config["GATEWAY_HEALTH"].report()
    return jsonify(report), 200 if healthy else 503
