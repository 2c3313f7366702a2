"""What the GitHub adapter keeps in the database: installation tokens and the write-slot log.

``github_app`` declares what it needs (``auth.TokenCache``, ``pacing.WriteLog``) and knows no
SQL; these are the gateway's implementations, shared by every process through the database.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from typing import Callable, Iterator, Sequence

from cryptography.fernet import InvalidToken
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway.signing import token_cipher
from gateway.store.database import Database, insert_or_ignore
from gateway.store.models import GitHubWrite, Installation, InstallationToken, utcnow


class DatabaseTokenCache:
    """Installation tokens in ``installation_tokens``, encrypted at rest with token_cipher(secrets):
    a copy of the database does not hand out access to the repositories.

    A token encrypted under a key no longer configured reads as missing, so a new one is fetched.
    """

    def __init__(self, db: Database, secrets: Sequence[str], *, clock: Callable[[], datetime] = utcnow):
        self._db = db
        self._cipher = token_cipher(secrets)
        self._clock = clock

    def get(self, installation_id: int) -> tuple[str, datetime] | None:
        # Every GitHub call asks: a read that never queues behind SQLite's writers.
        with self._db.read_session() as session:
            row = session.get(InstallationToken, installation_id)
            if row is None:
                return None
            ciphertext, expires_at = row.token_ciphertext, row.expires_at
        try:
            return self._cipher.decrypt(ciphertext.encode()).decode(), expires_at
        except InvalidToken:
            return None

    def put(self, installation_id: int, token: str, expires_at: datetime) -> None:
        """Insert or replace the row; two processes refreshing at once must not collide."""
        values = {"installation_id": installation_id,
                  "token_ciphertext": self._cipher.encrypt(token.encode()).decode(),
                  "expires_at": expires_at, "updated_at": self._clock()}
        with self._db.session() as session:
            dialect = session.get_bind().dialect.name
            if dialect in ("postgresql", "sqlite"):
                insert = (postgresql if dialect == "postgresql" else sqlite).insert(InstallationToken)
                session.execute(insert.values(**values).on_conflict_do_update(
                    index_elements=[InstallationToken.installation_id],
                    set_={k: v for k, v in values.items() if k != "installation_id"}))
            else:
                session.merge(InstallationToken(**values))

    def drop(self, installation_id: int) -> None:
        with self._db.session() as session:
            session.execute(delete(InstallationToken)
                            .where(InstallationToken.installation_id == installation_id))


class DatabaseWriteLog:
    """The pacer's sliding-window log in ``github_writes``.

    One installation's log is locked on its ``installations`` row (SELECT ... FOR UPDATE; on SQLite
    the writer lock), so reservations from every thread and process are serialised until commit.
    """

    def __init__(self, db: Database):
        self._db = db

    @contextmanager
    def locked(self, installation_id: int) -> Iterator[LockedInstallationLog]:
        """The installation's log, held until the transaction commits at exit (rolled back on an
        exception)."""
        with self._db.session() as session:
            _lock_installation(session, installation_id)
            yield LockedInstallationLog(session, installation_id)


class LockedInstallationLog:
    """One installation's logged slots, inside the transaction that locks them."""

    def __init__(self, session: Session, installation_id: int):
        self._session = session
        self._installation_id = installation_id

    def prune(self, before: datetime) -> None:
        self._session.execute(delete(GitHubWrite).where(GitHubWrite.installation_id == self._installation_id,
                                                        GitHubWrite.at < before))

    def nth_latest(self, n: int) -> datetime | None:
        """The n-th most recent logged slot (1 = the last one)."""
        return self._session.scalars(select(GitHubWrite.at)
                                     .where(GitHubWrite.installation_id == self._installation_id)
                                     .order_by(GitHubWrite.at.desc()).offset(n - 1).limit(1)).first()

    def add(self, at: datetime) -> None:
        self._session.add(GitHubWrite(installation_id=self._installation_id, at=at))


def _lock_installation(session: Session, installation_id: int) -> None:
    """Hold the installation's row until commit, creating it if missing: one reserver at a time."""
    query = select(Installation.id).where(Installation.id == installation_id).with_for_update()
    if session.execute(query).first() is None:
        # Created without failing when another process races us; then locked like any other.
        insert_or_ignore(session, Installation, {"id": installation_id, "updated_at": utcnow()}, ("id",))
        session.execute(query).one()
