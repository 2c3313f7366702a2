"""Keeping content-creating GitHub requests under GitHub's secondary limits, per installation.

GitHub lets an installation make at most 80 content-creating requests in any minute and 500 in any
hour, and it also punishes bursts. Its sole purpose is to hand out write slots that respect those
limits, however many worker threads and processes share one ``WriteLog``, where every slot handed
out is logged. A new slot comes no sooner than ``interval`` after the previous one (the fastest
limit's even pace, so requests never bunch up), and, for each ``(count, window)`` limit, no sooner
than the count-th most recent slot plus the window: the windows slide exactly, so the hourly budget
holds even though the minute pace alone would allow far more. Both carry a ``safety`` margin for
the jitter between taking a slot and the request reaching GitHub. Reservations for one installation
are serialised by the log's lock, held from reading the log until the new slot is committed, so two
reservers never take the same slot. A slot a little ahead is waited for here, after the commit; a
slot more than ``max_wait`` ahead becomes a Deferred (a TransientError that spends no job attempt)
without reserving, so the job queue waits instead of a worker thread. It does not make requests,
does not know which requests create content, and does not know where the log is kept.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Callable, ContextManager, Iterable, Protocol

from gateway.domain import utcnow
from gateway.errors import Deferred


# GitHub's documented secondary limits for content-creating requests: (count, window seconds).
DEFAULT_LIMITS: tuple[tuple[int, float], ...] = ((80, 60.0), (500, 3600.0))


class InstallationLog(Protocol):
    """One installation's logged slots, locked by the holder until it commits."""

    def prune(self, before: datetime) -> None:
        """Forget the slots logged before ``before``."""

    def nth_latest(self, n: int) -> datetime | None:
        """The n-th most recent logged slot (1 = the last one), or None if there are fewer."""

    def add(self, at: datetime) -> None:
        """Log a slot at ``at``."""


class WriteLog(Protocol):
    """The slots handed out, per installation, shared by every process that writes to GitHub."""

    def locked(self, installation_id: int) -> ContextManager[InstallationLog]:
        """The installation's log, held against every other reserver until the block exits; its
        changes are kept on a normal exit and discarded when the block raises."""


class WritePacer:
    """Reserve a write slot per installation within ``limits``, waiting at most ``max_wait``.

    ``limits=()`` switches pacing off: ``reserve`` returns at once and writes nothing.
    """

    def __init__(self, log: WriteLog, *, limits: Iterable[tuple[int, float]] = DEFAULT_LIMITS,
                 safety: float = 0.02, max_wait: timedelta = timedelta(seconds=5),
                 clock: Callable[[], datetime] = utcnow,
                 sleep: Callable[[float], None] = time.sleep):
        if safety < 0:
            raise ValueError(f"safety must not be negative, got {safety!r}")
        self._log = log
        self.safety = safety
        self.limits = limits
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep

    @property
    def limits(self) -> tuple[tuple[int, float], ...]:
        return self._limits

    @limits.setter
    def limits(self, limits: Iterable[tuple[int, float]]) -> None:
        # Settable after construction (pacing can be switched off); derived spacings follow.
        limits = tuple((int(count), float(window)) for count, window in limits)
        for count, window in limits:
            if count < 1 or window <= 0:
                raise ValueError(f"write limits need a positive count and window, got {count}/{window:g}")
        margin = 1 + self.safety
        self._limits = limits
        # Windows widened by the margin, and the even pace of the fastest limit.
        self._windows = tuple((count, timedelta(seconds=window * margin)) for count, window in limits)
        self.interval = (timedelta(seconds=min(window / count for count, window in limits) * margin)
                         if limits else timedelta(0))
        self._horizon = max((window for _, window in self._windows), default=timedelta(0))
        # Credit for a late slot: half a step, and never more than the smallest window's margin.
        self.catch_up = min([self.interval / 2, *(timedelta(seconds=window * self.safety) for _, window in limits)])

    def reserve(self, installation_id: int) -> None:
        """Return when this process may send one content-creating request for the installation."""
        if not self._windows:
            return
        with self._log.locked(installation_id) as log:
            now = self._clock()   # read under the lock: waiting for it took time
            log.prune(before=now - self._horizon)
            slot, allowed = self._earliest_slot(log, now)
            wait = slot - now
            if wait > self.max_wait:
                seconds = wait.total_seconds()
                raise Deferred(f"Pacing GitHub writes for installation {installation_id}: "
                                     f"next free slot in {seconds:.0f} s", retry_after=seconds)
            log.add(self._logged(slot, allowed))
        # The slot is ours once committed; wait for it outside the transaction.
        if wait > timedelta(0):
            self._sleep(wait.total_seconds())

    def _logged(self, slot: datetime, allowed: datetime) -> datetime:
        """The time to log for ``slot``: up to ``catch_up`` earlier when it came late.

        A slot nobody was waiting for when it came (``allowed`` passed while the workers were busy)
        is lost time; logging the late write a little earlier lets the next one come sooner, so a
        steady drain does not fall behind GitHub's pace by a few milliseconds per write. The credit
        stays within the windows' safety margin, so the limits hold for the real request times.
        """
        return max(allowed, slot - self.catch_up) if slot > allowed else slot

    def _earliest_slot(self, log: InstallationLog, now: datetime) -> tuple[datetime, datetime]:
        """The first moment from ``now`` that keeps the spacing and every window, and the first
        moment the log alone allows (earlier than ``now`` when the slot came late)."""
        last = log.nth_latest(1)
        if last is None:
            return now, now
        allowed = last + self.interval
        for count, window in self._windows:
            # Fewer than ``count`` slots may lie in (slot - window, slot].
            oldest = log.nth_latest(count)
            if oldest is not None:
                allowed = max(allowed, oldest + window)
        return max(now, allowed), allowed

