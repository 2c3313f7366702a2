"""Bearer-token authentication for the API (tokens from GATEWAY_API_TOKENS)."""
from __future__ import annotations

import hmac
from functools import wraps

from flask import current_app, request

from gateway.web.errors import ApiError


def require_api_token(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        tokens = current_app.config["GATEWAY"].settings.api_tokens
        # Compare against every token so timing does not reveal which one nearly matched.
        matched = False
        for token in tokens:
            matched |= hmac.compare_digest(presented.strip().encode(), token.encode())
        if scheme.lower() != "bearer" or not presented or not matched:
            raise ApiError(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        return view(*args, **kwargs)

    return wrapper
