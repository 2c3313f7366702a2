"""The durable job queue: flows add jobs in their own transactions, workers run them.

A job row is written in the same transaction as the data that asks for it (``enqueue``), so a
crash can lose neither; a worker claims it with a lease (``claim``) and records its outcome
(``worker``); idle workers are woken when jobs are committed (``wakeup``); failed attempts wait
(``backoff``). Flows, the CLI, the web app and the runner import from here.
"""
from gateway.queue.backoff import backoff_seconds
from gateway.queue.claim import ClaimedJob
from gateway.queue.enqueue import enqueue, enqueue_many, enqueue_once
from gateway.queue.wakeup import NOTIFY_CHANNEL, JobBell, PostgresListener, bell_for, listen_for_jobs
from gateway.queue.worker import JobKind, Paused, Worker, raise_if_suspended, retry_dead

__all__ = ["ClaimedJob", "JobBell", "JobKind", "NOTIFY_CHANNEL", "Paused", "PostgresListener", "Worker",
           "backoff_seconds", "bell_for", "enqueue", "enqueue_many", "enqueue_once", "listen_for_jobs",
           "raise_if_suspended", "retry_dead"]
