"""gateway.smtp_writer in one process: receivers hand DATA to a writer over real socketpairs.

`gateway smtp` forks these halves apart; tests/test_durability.py runs that command, kills its
writer and its protocol processes. Here both halves run in threads, so each behaviour of the
link (routing answers, a failing store, a writer that goes away) is checked on its own.
"""
import smtplib
import socket
import threading

import pytest

from gateway import smtp_writer
from gateway.domain import ACCEPTED, NOT_PARTICIPANT, RECIPIENT_OK, Answer
from inbound.handler import Envelope
from inbound.server import Receiver, ReceiverOptions

VALID = "reply+t1.100.abc@gw.example"


class RecordingStore:
    """The writer's pipeline: refuses mail whose subject says so, remembers every batch."""

    def __init__(self, error: Exception | None = None):
        self.batches: list[list[Envelope]] = []
        self.error = error

    def check_recipient_quickly(self, address: str) -> Answer | None:
        return RECIPIENT_OK

    def check_recipient(self, address: str) -> Answer:
        return RECIPIENT_OK

    def deliver_many(self, envelopes: list[Envelope]) -> list[Answer]:
        if self.error:
            raise self.error
        self.batches.append(envelopes)
        return [NOT_PARTICIPANT if b"Subject: refuse" in e.content else ACCEPTED for e in envelopes]


def message(n: int, refuse: bool = False) -> bytes:
    return f"From: a@example.com\r\nSubject: {'refuse' if refuse else 'keep'} {n}\r\n\r\nbody {n}\r\n".encode()


def send(port: int, raw: bytes) -> tuple[int, bytes]:
    """One transaction; the final reply to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.example.com")
        smtp.mail("a@example.com")
        smtp.rcpt(VALID)
        try:
            return smtp.data(raw)
        except smtplib.SMTPDataError as error:
            return error.smtp_code, error.smtp_error


class Link:
    """Receivers on ephemeral ports, each tied by a socketpair to one writer thread."""

    def __init__(self, store, receivers: int = 1):
        self.store = store
        self.stop = threading.Event()
        self.ends: dict[socket.socket, str] = {}
        self.receiver_ends: list[socket.socket] = []
        self.asked_to_stop = threading.Event()
        self.receivers: list[Receiver] = []
        for n in range(receivers):
            writer_end, receiver_end = socket.socketpair()
            self.ends[writer_end] = f"receiver {n}"
            self.receiver_ends.append(receiver_end)
            receiver = Receiver(store, ReceiverOptions(port=0, hostname="mx.gw.example"),
                                deliver_many=smtp_writer.WriterLink(receiver_end).deliver_many)
            receiver.start()
            self.receivers.append(receiver)
        self.failed: list[bool] = []
        self.thread = threading.Thread(target=lambda: self.failed.append(
            smtp_writer.serve_writer(store, dict(self.ends), self.stop, self.asked_to_stop.set)), daemon=True)

    def start(self) -> "Link":
        self.thread.start()
        return self

    def send(self, receiver: int, raw: bytes) -> tuple[int, bytes]:
        return send(self.receivers[receiver].port, raw)

    def close(self) -> None:
        for receiver in self.receivers:
            receiver.stop(grace=1)
        for end in self.receiver_ends:
            end.close()  # as when a protocol process exits
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


@pytest.fixture
def link():
    made: list[Link] = []

    def make(store, receivers: int = 1) -> Link:
        made.append(Link(store, receivers).start())
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_each_client_gets_the_answer_for_its_own_message(link):
    store = RecordingStore()
    writer = link(store, receivers=2)
    answers: dict[int, tuple[int, bytes]] = {}

    def client(n: int) -> None:
        answers[n] = writer.send(n % 2, message(n, refuse=n % 3 == 0))

    clients = [threading.Thread(target=client, args=(n,)) for n in range(24)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=20)

    assert {n: code for n, (code, _) in answers.items()} == {n: 550 if n % 3 == 0 else 250 for n in range(24)}
    stored = sorted(e.content for batch in store.batches for e in batch)
    assert stored == sorted(message(n, refuse=n % 3 == 0) for n in range(24))  # each once, whole


def test_a_store_failure_is_a_451_and_the_writer_carries_on(link):
    store = RecordingStore(error=RuntimeError("database is locked"))
    writer = link(store)
    assert writer.send(0, message(1)) == (451, b"4.3.0 Temporary failure, try again later")
    store.error = None
    assert writer.send(0, message(2))[0] == 250
    assert [e.content for batch in store.batches for e in batch] == [message(2)]


def test_when_the_writer_is_gone_data_gets_451_not_250():
    writer_end, receiver_end = socket.socketpair()
    store = RecordingStore()
    receiver = Receiver(store, ReceiverOptions(port=0, hostname="mx.gw.example"),
                        deliver_many=smtp_writer.WriterLink(receiver_end).deliver_many)
    receiver.start()
    try:
        def die_holding_the_batch() -> None:
            smtp_writer._receive(writer_end)  # the batch arrived; the writer dies before answering
            writer_end.close()

        dying = threading.Thread(target=die_holding_the_batch)
        dying.start()
        assert send(receiver.port, message(1)) == (451, b"4.3.0 Temporary failure, try again later")
        dying.join(timeout=5)
        assert send(receiver.port, message(2))[0] == 451  # and so is every later message
    finally:
        receiver.stop(grace=1)
        receiver_end.close()


def test_a_receiver_that_goes_away_is_reported_as_failed(link):
    store = RecordingStore()
    writer = link(store, receivers=2)
    assert writer.send(1, message(1))[0] == 250
    writer.receivers[0].stop(grace=1)
    writer.receiver_ends[0].close()  # what its process exiting does
    assert writer.asked_to_stop.wait(5)  # the others are told to stop
    writer.receiver_ends[1].close()  # they finish and exit
    writer.thread.join(timeout=5)
    assert writer.failed == [True]
