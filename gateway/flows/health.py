"""What /health reports: each dependency's real state, checked, not assumed.

Remote checks (relay, GitHub) are cached briefly so a load balancer polling
/health does not turn into a connection storm against the relay or GitHub.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from sqlalchemy import func, select

from gateway.domain import JobStatus
from gateway.flows.context import FlowContext
from gateway.migrate import current_revision, head_revision
from gateway.store import Job

CACHE_SECONDS = 30.0


class HealthChecks:
    def __init__(self, ctx: FlowContext, *, cache_seconds: float = CACHE_SECONDS):
        self.ctx = ctx
        self.cache_seconds = cache_seconds
        self._schema_head = head_revision(ctx.db)  # read from the migration files once, not per probe
        self._cache: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def report(self) -> tuple[bool, dict]:
        checks = {"database": self._database(),
                  "relay": self._cached("relay", self._relay),
                  "github": self._cached("github", self._github)}
        healthy = all(check["ok"] for check in checks.values())
        return healthy, {"status": "ok" if healthy else "unavailable", "sandbox": self.ctx.settings.sandbox,
                         "checks": checks}

    def _cached(self, name: str, check: Callable[[], dict]) -> dict:
        with self._lock:
            cached = self._cache.get(name)
            if cached and time.monotonic() - cached[0] < self.cache_seconds:
                return cached[1]
        result = check()
        with self._lock:
            self._cache[name] = (time.monotonic(), result)
        return result

    def _database(self) -> dict:
        try:
            with self.ctx.db.read_session() as session:
                dead = session.scalar(select(func.count()).select_from(Job).where(Job.status == JobStatus.DEAD))
                queued = session.scalar(select(func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED))
            if current_revision(self.ctx.db) != self._schema_head:
                return {"ok": False, "state": "schema out of date; run `gateway db upgrade`"}
            return {"ok": True, "state": "ok", "backend": self.ctx.db.engine.dialect.name,
                    "jobs_queued": queued, "jobs_dead": dead}
        except Exception as exc:
            return {"ok": False, "state": f"error: {type(exc).__name__}"}

    def _relay(self) -> dict:
        kind = "maildir" if not self.ctx.settings.smtp_relay_url else "smtp"
        try:
            self.ctx.relay.check()
            return {"ok": True, "state": "ok", "kind": kind}
        except Exception as exc:
            return {"ok": False, "state": f"error: {exc}", "kind": kind}

    def _github(self) -> dict:
        mode = "emulated" if self.ctx.github_emulated else "configured"
        try:
            self.ctx.installations.check()
            return {"ok": True, "state": mode, "api_url": self.ctx.settings.github_api_url}
        except Exception as exc:
            return {"ok": False, "state": mode, "api_url": self.ctx.settings.github_api_url,
                    "last_error": str(exc)}
