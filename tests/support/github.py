"""Test helpers for the GitHub adapter: an App key pair, a settable clock, a seeded emulator.

Plain functions and context managers (tests/conftest.py owns the fixtures). The emulator is
started on a real socket; ``seeded_emulator`` installs the App on ``octo/widgets`` with a
``feature`` branch one commit ahead of ``main``, which is what most tests need.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Iterator

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from github_emulator import GitHubEmulator

APP_ID = "4242"
REPO = "octo/widgets"
INSTALLATION_ID = 77
SECRETS = ("test-secret-key-0123456789abcdef",)


@lru_cache(maxsize=1)
def app_key_pair() -> tuple[str, str]:
    """(private PEM, public PEM), generated once per test session (RSA generation is slow)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


class SettableClock:
    """One notion of "now" shared by the gateway (datetimes) and the emulator (epoch floats)."""

    def __init__(self, start: datetime | None = None):
        self._offset = 0.0 if start is None else start.timestamp() - time.time()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), timezone.utc)

    def time(self) -> float:
        return time.time() + self._offset

    def advance(self, delta: timedelta) -> None:
        self._offset += delta.total_seconds()


@contextmanager
def emulator(clock: SettableClock | None = None, **options) -> Iterator[GitHubEmulator]:
    """A started emulator trusting ``app_key_pair()``'s public key; stopped on exit."""
    _, public = app_key_pair()
    if clock is not None:
        options["clock"] = clock.time
    emu = GitHubEmulator(app_id=int(APP_ID), app_public_key_pem=public, **options)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@contextmanager
def seeded_emulator(clock: SettableClock | None = None, permissions: dict | None = None,
                    **options) -> Iterator[GitHubEmulator]:
    """An emulator with REPO (branch ``feature`` ahead of ``main``) installed as INSTALLATION_ID."""
    with emulator(clock, **options) as emu:
        emu.add_repo(REPO, default_branch="main")
        emu.create_branch(REPO, "feature", from_ref="main", files={"widget.txt": "new widget\n"})
        emu.add_installation(installation_id=INSTALLATION_ID, account="octo", repositories=[REPO],
                             permissions=permissions)
        yield emu


def count_requests(emu: GitHubEmulator, method: str, path_fragment: str) -> int:
    return sum(1 for m, path, _status in list(emu.requests_log)
               if m == method and path_fragment in path)
