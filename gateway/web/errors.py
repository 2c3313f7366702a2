"""One JSON error shape for every failure the web app reports.

    {"error": {"status": 422, "message": "...", "fields": {"repo": "is required"}}}
"""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger("gateway.web")


class ApiError(Exception):
    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.fields, self.headers = status, message, fields, headers or {}


def query_limit(args, default: int = 50, most: int = 500) -> int:
    """``?limit=`` of a list call, clamped to 1..most; 422 if it is not a number."""
    try:
        return min(max(int(args.get("limit", default)), 1), most)
    except ValueError:
        raise ApiError(422, "invalid query", {"limit": "must be a whole number"}) from None


def error_response(status: int, message: str, fields: dict[str, str] | None = None, headers=None):
    body = {"error": {"status": status, "message": message}}
    if fields:
        body["error"]["fields"] = fields
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.fields, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal error; the gateway's log has the details")
