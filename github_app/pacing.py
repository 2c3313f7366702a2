"""Spacing of content-creating GitHub requests per installation, across processes.

GitHub's secondary rate limits punish bursts of content creation (roughly 80 a minute, and
"at least a second between" as its advice), per installation. Its sole purpose is to hand
out write slots: the next free moment is stored in ``Installation.next_write_at`` and advanced
under a row lock, so any number of workers share one schedule. A slot a little ahead is waited
for here; a slot far ahead becomes a TransientError so the job queue waits instead of a worker
thread. It does not make requests and does not know which requests create content.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from gateway.errors import TransientError
from gateway.store import Database, Installation, utcnow


class WritePacer:
    """Reserve a write slot per installation, ``min_interval`` apart, waiting at most ``max_wait``."""

    def __init__(self, db: Database, *, min_interval: timedelta = timedelta(seconds=1),
                 max_wait: timedelta = timedelta(seconds=5),
                 clock: Callable[[], datetime] = utcnow,
                 sleep: Callable[[float], None] = time.sleep):
        self._db = db
        self.min_interval = min_interval
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep

    def reserve(self, installation_id: int) -> None:
        """Return when this process may send one content-creating request for the installation."""
        with self._db.session() as session:
            _ensure_row(session, installation_id)
            row = session.execute(select(Installation).where(Installation.id == installation_id)
                                  .with_for_update()).scalar_one()
            now = self._clock()
            slot = max(now, row.next_write_at or now)
            wait = slot - now
            if wait > self.max_wait:
                seconds = wait.total_seconds()
                raise TransientError(f"Pacing GitHub writes for installation {installation_id}: "
                                     f"next free slot in {seconds:.0f} s", retry_after=seconds)
            row.next_write_at = slot + self.min_interval
        # The slot is ours once committed; wait for it outside the transaction.
        if wait > timedelta(0):
            self._sleep(wait.total_seconds())


def _ensure_row(session, installation_id: int) -> None:
    """Create the Installation row if missing, without failing when another process races us."""
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = (postgresql if dialect == "postgresql" else sqlite).insert(Installation)
        session.execute(insert.values(id=installation_id, updated_at=utcnow())
                        .on_conflict_do_nothing(index_elements=[Installation.id]))
    elif session.get(Installation, installation_id) is None:
        session.add(Installation(id=installation_id))
        session.flush()
