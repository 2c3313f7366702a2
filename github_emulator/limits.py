"""GitHub's secondary rate limits, per installation: content creation and concurrency.

Its sole purpose is to say, for one installation token's request, whether GitHub would refuse it
with a secondary limit, and to keep the books tests and benchmarks read: when content-creating
requests were accepted (``content_writes``) and how many were refused (``hits``). GitHub's
documented values are the defaults: at most 80 content-creating requests in any 60 s and 500 in
any 3600 s (sliding windows), and at most 100 requests in flight. Refused requests take no slot.
Times are on the emulator's clock (``State.clock``: wall-clock epoch seconds unless a test
clock was given), so a test that advances its clock also moves the windows. Which requests
count is decided by the callers (:mod:`api` for content, :mod:`handler` for concurrency).
"""
from __future__ import annotations

import bisect
import math
import threading
from collections import Counter
from typing import Callable, Iterable

CONTENT_LIMITS = ((80, 60.0), (500, 3600.0))
MAX_CONCURRENT = 100
KINDS = ("content", "concurrency")


def normalize_limits(limits: Iterable[tuple[int, float]] | None) -> tuple[tuple[int, float], ...]:
    """``((count, seconds), ...)``; None or empty disables. Raises ValueError on nonsense."""
    out = []
    for item in limits or ():
        count, seconds = item
        if int(count) != count or count < 1 or not seconds > 0:
            raise ValueError(f"a content limit is (count >= 1, seconds > 0), not {item!r}")
        out.append((int(count), float(seconds)))
    return tuple(out)


def parse_limits(text: str) -> tuple[tuple[int, float], ...]:
    """The CLI form ``"80/60,500/3600"``; ``"off"``, ``"none"`` or ``""`` disables."""
    if text.strip().lower() in ("", "off", "none", "0"):
        return ()
    pairs = []
    for part in text.split(","):
        count, sep, seconds = part.strip().partition("/")
        if not sep:
            raise ValueError(f"expected COUNT/SECONDS, got {part.strip()!r}")
        pairs.append((int(count), float(seconds)))
    return normalize_limits(pairs)


class SecondaryLimits:
    """The secondary-limit books of one emulator (``emu.limits``), safe across threads."""

    def __init__(self, clock: Callable[[], float],
                 content_limits: Iterable[tuple[int, float]] | None = CONTENT_LIMITS,
                 max_concurrent: int | None = MAX_CONCURRENT) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._content = normalize_limits(content_limits)
        self._max_concurrent = self._check_concurrent(max_concurrent)
        self._writes: dict[int, list[float]] = {}     # installation -> sorted accepted times
        self._in_flight: Counter[int] = Counter()
        self._hits: dict[int, Counter[str]] = {}

    # -- configuration -------------------------------------------------------------------------
    @staticmethod
    def _check_concurrent(value: int | None) -> int | None:
        if value is None or value == 0:
            return None
        if int(value) != value or value < 1:
            raise ValueError(f"max_concurrent is a positive integer or None, not {value!r}")
        return int(value)

    @property
    def content_limits(self) -> tuple[tuple[int, float], ...]:
        return self._content

    def set_content_limits(self, limits: Iterable[tuple[int, float]] | None) -> None:
        """Takes effect for the next request; the accepted writes so far still count."""
        normalized = normalize_limits(limits)
        with self._lock:
            self._content = normalized

    @property
    def max_concurrent(self) -> int | None:
        return self._max_concurrent

    def set_max_concurrent(self, value: int | None) -> None:
        checked = self._check_concurrent(value)
        with self._lock:
            self._max_concurrent = checked

    def reset(self) -> None:
        """Forget accepted writes and refusals (in-flight requests are still in flight)."""
        with self._lock:
            self._writes.clear()
            self._hits.clear()

    # -- content creation ------------------------------------------------------------------------
    def admit_write(self, installation_id: int) -> int | None:
        """Take a content slot: None if accepted (and recorded), else Retry-After seconds."""
        with self._lock:
            now = self.clock()
            times = self._writes.setdefault(installation_id, [])
            full, wait = False, 0.0
            for count, seconds in self._content:
                if len(times) - bisect.bisect_right(times, now - seconds) >= count:
                    # The window frees a slot when its count-th newest write leaves it.
                    full, wait = True, max(wait, times[-count] + seconds - now)
            if full:
                self._hit(installation_id, "content")
                return max(1, math.ceil(wait))
            bisect.insort(times, now)
            return None

    def content_writes(self, installation_id: int) -> list[float]:
        with self._lock:
            return list(self._writes.get(int(installation_id), ()))

    # -- concurrency -----------------------------------------------------------------------------
    def enter(self, installation_id: int) -> bool:
        """Count a request in flight; False (and a hit) when that would exceed the limit."""
        with self._lock:
            limit = self._max_concurrent
            if limit is not None and self._in_flight[installation_id] >= limit:
                self._hit(installation_id, "concurrency")
                return False
            self._in_flight[installation_id] += 1
            return True

    def leave(self, installation_id: int) -> None:
        with self._lock:
            self._in_flight[installation_id] -= 1
            if self._in_flight[installation_id] <= 0:
                del self._in_flight[installation_id]

    def in_flight(self, installation_id: int) -> int:
        with self._lock:
            return self._in_flight.get(int(installation_id), 0)

    # -- refusals --------------------------------------------------------------------------------
    def _hit(self, installation_id: int, kind: str) -> None:
        self._hits.setdefault(installation_id, Counter())[kind] += 1

    def hits(self, installation_id: int | None = None, kind: str | None = None) -> int:
        """Refusals of one installation (all when None), of one kind (both when None)."""
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown limit kind {kind!r}; one of {KINDS}")
        with self._lock:
            books = (list(self._hits.values()) if installation_id is None
                     else [self._hits.get(int(installation_id), Counter())])
            return sum(c[kind] if kind else sum(c.values()) for c in books)
