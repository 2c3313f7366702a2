"""The Flask application factory: configuration in, blueprints wired, one error shape."""
from __future__ import annotations

from flask import Flask

from gateway.flows.context import FlowContext
from gateway.flows.health import HealthChecks
from gateway.web import api, health, inbound, jobs, unsubscribe, webhooks
from gateway.web.errors import register_error_handlers


def create_app(ctx: FlowContext) -> Flask:
    app = Flask("gateway")
    app.config["GATEWAY"] = ctx
    app.config["GATEWAY_HEALTH"] = HealthChecks(ctx)
    app.config["MAX_CONTENT_LENGTH"] = ctx.settings.max_message_bytes + 64 * 1024
    app.json.sort_keys = False
    register_error_handlers(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(inbound.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(unsubscribe.bp)
    return app
