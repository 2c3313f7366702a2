"""The system of record: tables (``models``), the database handle (``database``), what the
GitHub adapter keeps here (``github``: its token cache and write log), and the domain reads and
writes that flows call where plain ORM code would cost a waiting client too much.

Flows import from here; which SQL path a function takes is the store's business.
"""
from gateway.store.database import (Database, DriverStatement, DriverTransaction, after_commit,  # noqa: F401
                                    insert_or_ignore)
from gateway.store.models import (Base, GitHubWrite, InboundMessage, Installation, InstallationToken,  # noqa: F401
                                  Job, OutboundMail, Participant, PullRequestRequest, Thread, UTCDateTime,
                                  WebhookDelivery, new_id, thread_for_pull, utcnow)
from gateway.store.github import DatabaseTokenCache, DatabaseWriteLog  # noqa: F401
