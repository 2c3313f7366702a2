"""Errors that cross from adapters into the job runner.

Adapters (inbound, outbound, github_app) raise these so the worker can decide
between "try again later" and "stop and tell a person" without knowing which
adapter failed or how. The message of a PermanentError is shown to operators
and API callers, so it must say what to do and never contain a secret.
"""


class TransientError(Exception):
    """Worth retrying: the other side was down, slow, or asked us to wait.

    ``retry_after`` (seconds) is set when the other side said how long to
    wait (GitHub's Retry-After / X-RateLimit-Reset); the worker honours it
    instead of its own backoff.
    """

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Retrying will not help; the reason is for a person to act on."""


class Deferred(TransientError):
    """Not attempted: our own pacing has no slot yet. Run again after ``retry_after``.

    Unlike a failure it spends no attempt, so a long burst cannot dead-letter a job, and the next
    attempt still knows that nothing was sent.
    """

    def __init__(self, message: str, retry_after: float):
        super().__init__(message, retry_after)
