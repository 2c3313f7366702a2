"""The durable job queue: flows add jobs in their own transactions, workers run them.

A job row is written in the same transaction as the data that asks for it (``enqueue``), so a
crash can lose neither; a worker claims it with a lease (``claim``) and records its outcome
(``worker``); idle workers are woken when jobs are committed (``wakeup``); failed attempts wait
(``backoff``). Flows, the CLI, the web app and the runner import from here.
"""
from gateway.queue.backoff import backoff_seconds  # noqa: F401
from gateway.queue.claim import ClaimedJob  # noqa: F401
from gateway.queue.enqueue import enqueue, enqueue_rows, ring_after_commit  # noqa: F401
from gateway.queue.wakeup import NOTIFY_CHANNEL, JobBell, PostgresListener, bell_for, listen_for_jobs  # noqa: F401
from gateway.queue.worker import JobKind, Paused, Worker, raise_if_suspended, retry_dead  # noqa: F401
