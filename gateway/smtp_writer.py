"""`gateway smtp`: SMTP sessions in forked protocol processes, every message stored by one writer.

Why two kinds of process: in one Python process the SMTP sessions (aiosmtpd, on an event loop)
and the store (headers, signatures, SQL, commit) take turns on one interpreter lock, so a message
costs the sum of both plus the hand-offs between their threads. Split, each half runs on a core,
and one writer can still give every message that ends together one commit.

- Each protocol process (``--processes N`` of them, sharing the port with SO_REUSEPORT when N > 1)
  speaks SMTP and answers RCPT itself: the token's signature, and a thread's state through its own
  read-only database connection (inbound.handler, ReplyDoor.check_recipient).
- At the end of DATA it sends the envelopes that finished together to the writer over its
  socketpair (a pickled list; both ends are this program, forked) and waits.
- The writer, the parent process, reads them (headers, signatures) and decides and records
  everything that arrived together from all protocol processes in one transaction
  (ReplyDoor.deliver_many): one commit, on disk before any answer goes back. The writer also reads
  the headers, which balances the work of the two kinds of process.
  Nothing changes for the client: no 250 before the commit, 451 if it failed.

When something dies: a protocol process that exits stops the others and the writer exits 1, so a
supervisor restarts them together. If the writer dies, each protocol process sees its life pipe
close: transactions waiting for the writer get 451 (the client retries), the process stops
listening and exits.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import pickle
import selectors
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable

from gateway.flows.context import FlowContext
from gateway.domain import TRY_LATER, Answer
from inbound.handler import Envelope

log = logging.getLogger("gateway.inbound")

_LENGTH = struct.Struct("!I")
STOP_GRACE_SECONDS = 20.0  # after SIGTERM, how long protocol processes get to finish their sessions


def run(processes: int, make_context: Callable[[], FlowContext]) -> int:
    """Fork the protocol processes, then be their writer until SIGINT/SIGTERM or one of them exits.

    Returns the exit status: 0 after a clean stop, 1 if a protocol process exited on its own.
    Call before this process has threads or database connections (they do not survive a fork).
    """
    from gateway.flows.receive_reply import ReplyDoor
    from gateway.runner import stop_on_signal

    life_read, life_write = os.pipe()  # only the writer holds the write end: EOF means it is gone
    links: dict[socket.socket, int] = {}  # socket -> the protocol process at its other end
    for _ in range(processes):
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # a protocol process: serve, then leave without running the writer's cleanup
            code = 0
            try:
                os.close(life_write)
                for sock in (ours, *links):
                    sock.close()
                _serve_protocol(make_context, theirs, life_read, reuse_port=processes > 1)
            except BaseException:
                log.exception("SMTP protocol process failed")
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        links[ours] = pid
    os.close(life_read)
    stop = stop_on_signal()
    failed = False
    try:
        pipeline = ReplyDoor(make_context())
        gc.freeze()  # what start-up made lives as long as the process: collections need not walk it
        failed = serve_writer(pipeline, {sock: f"process {pid}" for sock, pid in links.items()},
                              stop, lambda: _signal(list(links.values()), signal.SIGTERM))
    finally:
        _stop_children(list(links.values()))
        os.close(life_write)
    return 1 if failed else 0


# -- the writer ---------------------------------------------------------------------------------


def serve_writer(pipeline, links: dict[socket.socket, str], stop: threading.Event,
                 stop_others: Callable[[], None]) -> bool:
    """Answer batches from each socket (named for the log) until every one has closed; True if one
    closed on its own. On ``stop``, ``stop_others`` asks the protocol processes to finish their
    sessions, and they are served until they have."""
    selector = selectors.DefaultSelector()
    for sock in links:
        selector.register(sock, selectors.EVENT_READ)
    failed, stopping_since = False, None
    try:
        while selector.get_map():
            if stop.is_set() and stopping_since is None:
                stopping_since = time.monotonic()
                stop_others()
            if stopping_since is not None and time.monotonic() - stopping_since > STOP_GRACE_SECONDS:
                log.error("SMTP protocol processes still running %.0f s after SIGTERM", STOP_GRACE_SECONDS)
                break
            batches: list[tuple[socket.socket, list[Envelope]]] = []
            for key, _ in selector.select(timeout=0.5):
                sock = key.fileobj
                try:
                    batches.append((sock, _receive(sock)))
                except (EOFError, OSError):
                    selector.unregister(sock)
                    sock.close()
                    if stopping_since is None:
                        log.error("SMTP %s exited; stopping the others", links[sock])
                        failed = True
                        stop.set()
            if batches:
                _answer(pipeline, batches)
    finally:
        selector.close()
    return failed


def _answer(pipeline, batches: list[tuple[socket.socket, list[Envelope]]]) -> None:
    """Decide and record every envelope that arrived together in one transaction; answer each process."""
    envelopes = [envelope for _, batch in batches for envelope in batch]
    try:
        answers = pipeline.deliver_many(envelopes)
    except Exception as error:
        log.exception("recording %d messages failed", len(envelopes))
        answers = [TRY_LATER.because(f"recording failed: {type(error).__name__}")] * len(envelopes)
    start = 0
    for sock, batch in batches:
        try:
            _send(sock, answers[start:start + len(batch)])
        except OSError:
            pass  # that process is gone; its socket reads EOF next time round
        start += len(batch)


# -- a protocol process -------------------------------------------------------------------------


class WriterLink:
    """A protocol process's end of its socket to the writer: send a batch, wait for its answers.

    GatewayHandler sends one batch at a time; the lock keeps frames whole if that ever changes.
    """

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock: asyncio.Lock | None = None

    async def deliver_many(self, envelopes: list[Envelope]) -> list[Answer]:
        if self._streams is None:  # on the receiver's event loop, at the first message
            self._streams = await asyncio.open_unix_connection(sock=self._sock)
            self._lock = asyncio.Lock()
        reader, writer = self._streams
        async with self._lock:
            writer.write(_frame(envelopes))
            await writer.drain()
            (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))  # EOF: the writer is gone
            return pickle.loads(await reader.readexactly(length))


def _serve_protocol(make_context: Callable[[], FlowContext], sock: socket.socket, life_fd: int, *,
                    reuse_port: bool) -> None:
    from gateway.runner import make_receiver

    threading.Thread(target=_stop_when_writer_gone, args=(life_fd,), name="writer-watch", daemon=True).start()
    receiver = make_receiver(make_context(), reuse_port=reuse_port, deliver_many=WriterLink(sock).deliver_many)
    gc.freeze()
    receiver.serve_forever()


def _stop_when_writer_gone(life_fd: int) -> None:
    os.read(life_fd, 1)  # returns (empty) only when the writer's end is closed: it exited or was killed
    log.error("the SMTP writer process is gone; this protocol process stops")
    os.kill(os.getpid(), signal.SIGTERM)


# -- frames: a 4-byte length, then a pickle ------------------------------------------------------


def _frame(value) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def _send(sock: socket.socket, value) -> None:
    sock.sendall(_frame(value))


def _receive(sock: socket.socket):
    (length,) = _LENGTH.unpack(_read_exactly(sock, _LENGTH.size))
    return pickle.loads(_read_exactly(sock, length))


def _read_exactly(sock: socket.socket, size: int) -> bytearray:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError("the other process closed its end")
        data += chunk
    return data


# -- children -----------------------------------------------------------------------------------


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _stop_children(pids: list[int]) -> None:
    """SIGTERM, wait up to the grace period, then SIGKILL; reap them all."""
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    waiting = list(pids)
    while waiting:
        for pid in list(waiting):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                waiting.remove(pid)
        if waiting and time.monotonic() > deadline:
            _signal(waiting, signal.SIGKILL)
            deadline = float("inf")
        elif waiting:
            time.sleep(0.05)
