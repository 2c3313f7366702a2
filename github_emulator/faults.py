"""Fault injection: make the emulator misbehave the ways GitHub does.

Its sole purpose is to hold armed faults and, per request, say which fire: ``5xx`` (502/503),
``rate_limit_primary`` (403, ``X-RateLimit-Remaining: 0``), ``rate_limit_secondary`` (403 or 429
with ``Retry-After``), ``latency`` (sleep, then answer normally), ``expire_token`` (expire
installation tokens just before the request is authenticated), and the two "GitHub did it but
we never heard" faults that act after the request was carried out: ``drop`` (close the
connection without an answer) and ``timeout`` (answer only after ``seconds``). Any fault can fire
with a ``probability``, drawn from a seeded RNG so runs repeat. It does not write responses;
the HTTP layer turns a fired fault into one.
"""
from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass, field

KINDS = ("5xx", "rate_limit_primary", "rate_limit_secondary", "latency", "expire_token", "drop",
         "timeout")
AFTER_KINDS = ("drop", "timeout")     # applied once the request has been carried out
SECONDARY_MESSAGE = ("You have exceeded a secondary rate limit. Please wait a few minutes before "
                     "you try again. If you reach out to GitHub Support for help, please include "
                     "the request ID {request_id}.")
RATE_DOCS = ("https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
             "#about-secondary-rate-limits")


@dataclass
class Fault:
    kind: str
    path_regex: str = ".*"
    method: str | None = None
    times: int | None = 1           # None: fire on every matching request
    status: int | None = None
    seconds: float = 1.0            # latency; timeout: how long the answer is held back
    retry_after: int = 1            # secondary rate limit
    reset_in: int = 60              # primary rate limit: X-RateLimit-Reset = now + reset_in
    token: str | None = None        # expire_token: this token ...
    installation_id: int | None = None  # ... or all of this installation's (default: the caller's)
    message: str | None = None
    probability: float = 1.0        # chance that a matching request is hit
    seed: int | None = None         # own RNG for ``probability`` (default: the injector's)
    hits: int = 0
    _pattern: re.Pattern = field(init=False, repr=False)
    _rng: random.Random | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {KINDS}")
        if not 0 < self.probability <= 1:
            raise ValueError(f"probability must be in (0, 1], not {self.probability!r}")
        self._pattern = re.compile(self.path_regex)
        if self.seed is not None:
            self._rng = random.Random(self.seed)

    def rolls(self, rng: random.Random) -> bool:
        """Whether a matching request is hit (draws only when ``probability`` < 1)."""
        return self.probability >= 1 or (self._rng or rng).random() < self.probability

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, method: str, path: str) -> bool:
        if self.exhausted:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return self._pattern.search(path) is not None

    def response(self, request_id: str, installation_id: int | None, now: float
                 ) -> tuple[int, dict, dict]:
        """(status, body, headers) of an error fault."""
        if self.kind == "5xx":
            status = self.status or 502
            text = {502: "Server Error", 503: "Service Unavailable"}.get(status, "Server Error")
            return status, {"message": self.message or text}, {}
        if self.kind == "rate_limit_primary":
            who = installation_id if installation_id is not None else "unknown"
            body = {"message": self.message or f"API rate limit exceeded for installation ID {who}.",
                    "documentation_url": "https://docs.github.com/rest/overview/"
                                         "rate-limits-for-the-rest-api"}
            headers = {"X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset": str(int(now) + self.reset_in)}
            return self.status or 403, body, headers
        body = {"message": self.message or SECONDARY_MESSAGE.format(request_id=request_id),
                "documentation_url": RATE_DOCS}
        return self.status or 403, body, {"Retry-After": str(self.retry_after)}


class FaultInjector:
    """The armed faults of one emulator (``emu.faults``)."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._rng = random.Random(seed)

    def seed(self, seed: int | None) -> None:
        """Restart the shared RNG that ``probability`` faults without their own ``seed`` use."""
        with self._lock:
            self._rng.seed(seed)

    def inject(self, kind: str, path_regex: str = ".*", method: str | None = None,
               times: int | None = 1, **options) -> Fault:
        """Arm a fault for requests whose path (no query) matches ``path_regex``.

        Options: ``status``, ``seconds`` (latency, timeout), ``retry_after``, ``reset_in``,
        ``token`` / ``installation_id`` (expire_token), ``message``, ``probability`` (each
        matching request is hit with this chance; ``times`` counts hits, not matches) and
        ``seed``. Returns the Fault (see ``.hits``).
        """
        fault = Fault(kind, path_regex, method, times, **options)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def armed(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if not f.exhausted]

    def fire(self, method: str, path: str, sleep=time.sleep, *, after: bool = True
             ) -> tuple[list[Fault], Fault | None, Fault | None]:
        """Consume matching faults: (token-expiry faults to apply, the error fault or None, the
        drop/timeout fault to apply after the request was carried out, or None).

        An error fault wins over a drop/timeout fault, which then stays armed. ``after=False``
        (for answers that cannot be held back, like git's streamed ones) leaves drop/timeout
        faults alone. Latency faults sleep here, outside the lock, and do not stop the request.
        """
        delays, expiries, error, late = [], [], None, None
        with self._lock:
            for fault in self._faults:
                if not fault.matches(method, path):
                    continue
                if fault.kind in AFTER_KINDS:
                    if not after or late is not None:
                        continue
                elif fault.kind not in ("latency", "expire_token") and error is not None:
                    continue
                if not fault.rolls(self._rng):
                    continue
                if fault.kind == "latency":
                    delays.append(fault)
                elif fault.kind == "expire_token":
                    expiries.append(fault)
                elif fault.kind in AFTER_KINDS:
                    late = fault
                else:
                    error = fault
            if error is not None:
                late = None
            for fault in (*delays, *expiries, error, late):
                if fault is not None:
                    fault.hits += 1
        for fault in delays:
            sleep(fault.seconds)
        return expiries, error, late
