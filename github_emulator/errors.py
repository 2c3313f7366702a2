"""GitHub-shaped API errors for the emulator.

Handlers raise :class:`ApiError`; the HTTP layer turns it into GitHub's one error body
(``{"message", "documentation_url", "status", "errors"?}``). Nothing here knows about sockets.
"""
from __future__ import annotations

DOCS = "https://docs.github.com/rest"


class ApiError(Exception):
    """An error answered the way GitHub answers it."""

    def __init__(self, status: int, message: str, *, errors: list | None = None,
                 documentation_url: str = DOCS, headers: dict | None = None) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.errors = errors
        self.documentation_url = documentation_url
        self.headers = dict(headers or {})

    def body(self) -> dict:
        out = {"message": self.message, "documentation_url": self.documentation_url,
               "status": str(self.status)}
        if self.errors is not None:
            out["errors"] = self.errors
        return out


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def bad_credentials() -> ApiError:
    return ApiError(401, "Bad credentials")


def forbidden_integration() -> ApiError:
    return ApiError(403, "Resource not accessible by integration",
                    documentation_url=f"{DOCS}/overview/permissions-required-for-github-apps")


def validation_failed(*errors: dict, message: str = "Validation Failed") -> ApiError:
    return ApiError(422, message, errors=list(errors))
