"""inbound.server + inbound.handler over real sockets: smtplib → Receiver.

The pipeline here is a small stand-in with a set of valid addresses; the real
one (gateway.flows.receive_reply) is tested with the database elsewhere.  Every SMTP
behaviour is exercised on the wire.
"""

import datetime
import ipaddress
import logging
import os
import signal
import smtplib
import socket
import ssl
import struct
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.domain import ACCEPTED, RECIPIENT_OK, TRY_LATER, UNKNOWN_RECIPIENT, Answer
from inbound.handler import Envelope
from inbound.server import Receiver, ReceiverOptions

VALID = "reply+t1.100.abc@gw.example"
OTHER = "reply+t2.100.def@gw.example"
SENDER = "alice@example.com"
MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: reply+t1.100.abc@gw.example\r\n"
    b"Subject: Re: [octo/repo] PR ready\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Looks good \xe2\x9c\x93\r\n"
    b".a line that starts with a dot\r\n"
    b"..and one with two\r\n"
)


class FakePipeline:
    def __init__(self, valid=(VALID, OTHER), deliver_error: Exception | None = None, recipient_error=None):
        self.valid = set(valid)
        self.deliver_error = deliver_error
        self.recipient_error = recipient_error
        self.checked: list[str] = []
        self.delivered: list[Envelope] = []

    def check_recipient(self, address: str) -> Answer:
        self.checked.append(address)
        if self.recipient_error:
            raise self.recipient_error
        if address in self.valid:
            return RECIPIENT_OK
        return UNKNOWN_RECIPIENT.because("no such thread t9 (secret detail)")

    def check_recipient_quickly(self, address: str) -> Answer | None:
        return None  # always the full check, which the tests watch

    def deliver(self, envelope: Envelope) -> Answer:
        if self.deliver_error:
            raise self.deliver_error
        self.delivered.append(envelope)
        return ACCEPTED

    def deliver_many(self, envelopes: list[Envelope]) -> list[Answer]:
        return [self.deliver(envelope) for envelope in envelopes]


@pytest.fixture(autouse=True)
def no_leftover_threads():
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            return
        time.sleep(0.02)
    pytest.fail(f"threads left running: {extra}")


@pytest.fixture
def serve():
    """serve(pipeline, **options) -> started Receiver on an ephemeral port; stopped after the test."""
    started = []

    def start(pipeline=None, **options):
        receiver = Receiver(pipeline or FakePipeline(), ReceiverOptions(port=0, hostname="mx.gw.example", **options))
        receiver.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


def client(receiver, **kwargs) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", receiver.port, local_hostname="client.example.com", timeout=5, **kwargs)


def read_reply(sock_file) -> bytes:
    lines = []
    while True:
        line = sock_file.readline()
        lines.append(line)
        if not line or line[3:4] != b"-":
            return b"".join(lines)


# -- banner, EHLO, STARTTLS ---------------------------------------------------------


def test_port_zero_gives_a_real_port(serve):
    receiver = serve()
    assert receiver.port > 0
    with client(receiver) as smtp:
        assert smtp.noop()[0] == 250


def test_banner_and_ehlo(serve):
    receiver = serve(max_message_bytes=123456)
    with smtplib.SMTP(local_hostname="client.example.com", timeout=5) as smtp:
        code, banner = smtp.connect("127.0.0.1", receiver.port)
        assert code == 220
        assert banner.startswith(b"mx.gw.example")
        assert b"Python" not in banner  # no software version on the banner
        code, _ = smtp.ehlo()
        assert code == 250
        assert smtp.esmtp_features["size"] == "123456"
        assert "smtputf8" in smtp.esmtp_features
        assert "8bitmime" in smtp.esmtp_features
        assert "starttls" not in smtp.esmtp_features  # no certificate configured
        assert "auth" not in smtp.esmtp_features


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.gw.example")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("mx.gw.example"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_starttls_offered_and_performed(serve, tmp_path):
    cert_file, key_file = self_signed(tmp_path)
    pipeline = FakePipeline()
    receiver = serve(pipeline, tls_cert_file=cert_file, tls_key_file=key_file)
    context = ssl.create_default_context(cafile=str(cert_file))  # verifies the chain and 127.0.0.1
    with client(receiver) as smtp:
        smtp.ehlo()
        assert "starttls" in smtp.esmtp_features
        code, _ = smtp.starttls(context=context)
        assert code == 220
        assert smtp.sock.version() in ("TLSv1.2", "TLSv1.3")
        smtp.ehlo()
        assert "starttls" not in smtp.esmtp_features
        assert "auth" not in smtp.esmtp_features  # aiosmtpd would offer AUTH now; we don't
        smtp.sendmail(SENDER, [VALID], MESSAGE)
    assert pipeline.delivered[0].content == MESSAGE


def test_starttls_is_not_required(serve, tmp_path):
    cert_file, key_file = self_signed(tmp_path)
    pipeline = FakePipeline()
    receiver = serve(pipeline, tls_cert_file=cert_file, tls_key_file=key_file)
    with client(receiver) as smtp:
        smtp.sendmail(SENDER, [VALID], MESSAGE)
    assert len(pipeline.delivered) == 1


# -- RCPT ----------------------------------------------------------------------------


def test_unknown_recipient_is_rejected_with_a_generic_text(serve, caplog):
    pipeline = FakePipeline()
    receiver = serve(pipeline)
    caplog.set_level(logging.INFO, logger="gateway.inbound")
    with client(receiver) as smtp:
        smtp.ehlo()
        smtp.mail(SENDER)
        code, text = smtp.rcpt("reply+t9.1.bad@gw.example")
        assert (code, text) == (550, b"5.1.1 Recipient address rejected")
    assert pipeline.checked == ["reply+t9.1.bad@gw.example"]
    rejection = next(r for r in caplog.records if r.name == "gateway.inbound" and "550" in r.getMessage())
    line = rejection.getMessage()
    assert rejection.levelno == logging.WARNING
    assert "peer=127.0.0.1" in line and f"mail_from=<{SENDER}>" in line and "rcpt=reply+t9.1.bad@gw.example" in line
    assert "reason=no such thread t9 (secret detail)" in line


def test_rejected_recipients_do_not_stop_the_valid_one(serve):
    pipeline = FakePipeline()
    receiver = serve(pipeline)
    with client(receiver) as smtp:
        refused = smtp.sendmail(SENDER, ["nobody@gw.example", VALID], MESSAGE)
    assert refused == {"nobody@gw.example": (550, b"5.1.1 Recipient address rejected")}
    assert pipeline.delivered[0].rcpt_tos == (VALID,)


def test_too_many_recipients(serve):
    pipeline = FakePipeline(valid={f"reply+t{i}@gw.example" for i in range(5)})
    receiver = serve(pipeline, max_recipients=2)
    with client(receiver) as smtp:
        smtp.ehlo()
        smtp.mail(SENDER)
        assert smtp.rcpt("reply+t0@gw.example")[0] == 250
        assert smtp.rcpt("reply+t1@gw.example")[0] == 250
        assert smtp.rcpt("reply+t2@gw.example") == (452, b"4.5.3 Too many recipients")
        assert smtp.data(MESSAGE)[0] == 250
    assert pipeline.checked == ["reply+t0@gw.example", "reply+t1@gw.example"]  # the third never reached it
    assert pipeline.delivered[0].rcpt_tos == ("reply+t0@gw.example", "reply+t1@gw.example")


def test_pipeline_exception_at_rcpt_is_a_temporary_failure(serve, caplog):
    receiver = serve(FakePipeline(recipient_error=RuntimeError("database is locked")))
    with client(receiver) as smtp:
        smtp.ehlo()
        smtp.mail(SENDER)
        assert smtp.rcpt(VALID) == (451, b"4.3.0 Temporary failure, try again later")
    assert any("check_recipient failed" in r.getMessage() and r.exc_info for r in caplog.records)


# -- DATA ----------------------------------------------------------------------------


def test_accepted_message_reaches_the_pipeline_byte_for_byte(serve):
    pipeline = FakePipeline()
    receiver = serve(pipeline)
    with client(receiver) as smtp:
        smtp.ehlo()
        smtp.mail(SENDER)
        smtp.rcpt(VALID)
        assert smtp.data(MESSAGE) == (250, b"2.0.0 Message accepted")
    [envelope] = pipeline.delivered
    assert envelope.content == MESSAGE  # dot-unstuffed, CRLF kept, 8-bit intact
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == (VALID,)
    assert envelope.peer == "127.0.0.1"
    assert envelope.helo == "client.example.com"


def test_null_sender_is_accepted(serve):
    pipeline = FakePipeline()
    receiver = serve(pipeline)
    with client(receiver) as smtp:
        smtp.sendmail("", [VALID], MESSAGE)
    assert pipeline.delivered[0].mail_from == ""


def test_smtputf8_address(serve):
    address = "réponse+t1@gw.example"
    pipeline = FakePipeline(valid={address})
    receiver = serve(pipeline)
    with client(receiver) as smtp:
        smtp.sendmail("zoë@example.de", [address], MESSAGE, mail_options=["SMTPUTF8"])
    assert pipeline.delivered[0].mail_from == "zoë@example.de"
    assert pipeline.delivered[0].rcpt_tos == (address,)


def test_two_transactions_on_one_connection(serve):
    pipeline = FakePipeline()
    receiver = serve(pipeline)
    with client(receiver) as smtp:
        smtp.sendmail(SENDER, [VALID], MESSAGE)
        smtp.sendmail(SENDER, [OTHER], b"Subject: second\r\n\r\nhi\r\n")
    assert [e.rcpt_tos for e in pipeline.delivered] == [(VALID,), (OTHER,)]


def test_pipeline_exception_at_data_is_a_temporary_failure(serve, caplog):
    receiver = serve(FakePipeline(deliver_error=RuntimeError("disk full")))
    with client(receiver) as smtp:
        smtp.ehlo()
        smtp.mail(SENDER)
        smtp.rcpt(VALID)
        assert smtp.data(MESSAGE) == (451, b"4.3.0 Temporary failure, try again later")
        assert smtp.noop()[0] == 250  # the session carries on
    failure = next(r for r in caplog.records if "deliver_many failed" in r.getMessage())
    assert failure.exc_info and "disk full" in str(failure.exc_info[1])


def test_pipeline_try_later_decision(serve):
    class Busy(FakePipeline):
        def deliver(self, envelope):
            return TRY_LATER.because("store unavailable")

    receiver = serve(Busy())
    with client(receiver) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as raised:
            smtp.sendmail(SENDER, [VALID], MESSAGE)
    assert raised.value.smtp_code == 451


# -- size ----------------------------------------------------------------------------


def test_oversize_declared_with_size_parameter(serve):
    pipeline = FakePipeline()
    receiver = serve(pipeline, max_message_bytes=1000)
    big = MESSAGE + b"x" * 70 + b"\r\n" * 20
    with client(receiver) as smtp:
        smtp.ehlo()
        code, text = smtp.mail(SENDER, options=["SIZE=5000"])
        assert (code, text) == (552, b"5.3.4 Message size exceeds fixed maximum message size")
        # smtplib declares SIZE by itself in sendmail
        with pytest.raises(smtplib.SMTPSenderRefused) as raised:
            smtp.sendmail(SENDER, [VALID], big + b"y" * 2000)
        assert raised.value.smtp_code == 552
    assert pipeline.checked == [] and pipeline.delivered == []


def test_oversize_data_without_declaration(serve):
    pipeline = FakePipeline()
    receiver = serve(pipeline, max_message_bytes=1000)
    big = MESSAGE + (b"y" * 78 + b"\r\n") * 30
    with client(receiver) as smtp:
        smtp.ehlo()
        smtp.mail(SENDER)  # no SIZE=
        smtp.rcpt(VALID)
        assert smtp.data(big) == (552, b"5.3.4 Message size exceeds fixed maximum message size")
        # the connection stays usable and a small message still goes through
        smtp.sendmail(SENDER, [VALID], MESSAGE)
    assert [e.content for e in pipeline.delivered] == [MESSAGE]


@pytest.mark.parametrize(("limit_delta", "accepted"), [(0, True), (-1, False)])
def test_size_limit_is_exact(serve, limit_delta, accepted):
    # No leading dots here: aiosmtpd counts DATA as sent, transparency dots included.
    message = b"Subject: exact\r\n\r\n" + b"z" * 100 + b"\r\n"
    pipeline = FakePipeline()
    receiver = serve(pipeline, max_message_bytes=len(message) + limit_delta)
    with client(receiver) as smtp:
        smtp.ehlo()
        smtp.mail(SENDER)
        smtp.rcpt(VALID)
        assert smtp.data(message)[0] == (250 if accepted else 552)
    assert len(pipeline.delivered) == (1 if accepted else 0)


# -- connection limits -----------------------------------------------------------------


def test_command_limit_ends_the_connection_with_421(serve):
    receiver = serve(max_commands=5)
    with client(receiver) as smtp:
        for _ in range(5):
            assert smtp.noop()[0] == 250
        assert smtp.noop() == (421, b"4.7.0 NOOP sent too many times")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()


def test_idle_timeout_closes_the_connection(serve):
    receiver = serve(idle_timeout=0.3)
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=5) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        started = time.monotonic()
        assert reader.readline() == b"421 4.4.2 Idle timeout, closing connection\r\n"
        assert reader.readline() == b""  # closed
        assert 0.2 < time.monotonic() - started < 3


# -- PROXY protocol --------------------------------------------------------------------


class ProxiedSMTP(smtplib.SMTP):
    """smtplib client that writes a PROXY header first, as a load balancer would."""

    proxy_header = b""

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)
        sock.sendall(self.proxy_header)
        return sock


def proxy_v2_header(src: str, dst: str, src_port: int, dst_port: int) -> bytes:
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    addresses = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", src_port, dst_port)
    return signature + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 203.0.113.7 192.0.2.10 56324 25\r\n",
        proxy_v2_header("203.0.113.7", "192.0.2.10", 56324, 25),
    ],
    ids=["v1", "v2"],
)
def test_proxy_protocol_gives_the_pipeline_the_client_address(serve, header, caplog):
    pipeline = FakePipeline()
    receiver = serve(pipeline, proxy_protocol=True)
    caplog.set_level(logging.INFO, logger="gateway.inbound")
    smtp = ProxiedSMTP(timeout=5)
    smtp.proxy_header = header
    smtp.connect("127.0.0.1", receiver.port)
    with smtp:
        smtp.sendmail(SENDER, ["nobody@gw.example", VALID], MESSAGE)
    assert pipeline.delivered[0].peer == "203.0.113.7"
    assert all("peer=203.0.113.7" in r.getMessage() for r in caplog.records if r.getMessage().startswith(("RCPT", "DATA")))


def test_proxy_protocol_rejects_a_client_without_header(serve):
    receiver = serve(proxy_protocol=True, proxy_protocol_timeout=3)
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=5) as sock:
        sock.sendall(b"EHLO client.example.com\r\n")
        assert sock.recv(1024) == b""  # no banner: closed


def test_proxy_protocol_times_out_a_silent_client(serve):
    receiver = serve(proxy_protocol=True, proxy_protocol_timeout=0.3)
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=5) as sock:
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - started < 3


# -- lifecycle -------------------------------------------------------------------------


def test_stop_releases_the_port(serve):
    receiver = serve()
    port = receiver.port
    receiver.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    receiver.stop()  # idempotent


def test_start_twice_is_refused(serve):
    receiver = serve()
    with pytest.raises(RuntimeError):
        receiver.start()


def test_serve_forever_stops_on_sigterm():
    pipeline = FakePipeline()
    receiver = Receiver(pipeline, ReceiverOptions(port=0, hostname="mx.gw.example"))
    outcome = {}

    def use_then_terminate():
        deadline = time.monotonic() + 5
        while receiver.port == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            with client(receiver) as smtp:
                smtp.sendmail(SENDER, [VALID], MESSAGE)
            outcome["sent"] = True
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    helper = threading.Thread(target=use_then_terminate)
    helper.start()
    receiver.serve_forever()  # returns on SIGTERM
    helper.join()
    assert outcome == {"sent": True}
    assert len(pipeline.delivered) == 1
    assert signal.getsignal(signal.SIGTERM) is previous


def test_stop_lets_a_transaction_in_the_pipeline_finish(serve):
    entered = threading.Event()

    class Slow(FakePipeline):
        def deliver(self, envelope):
            entered.set()
            time.sleep(0.3)
            return super().deliver(envelope)

    pipeline = Slow()
    receiver = serve(pipeline)
    smtp = client(receiver)
    smtp.ehlo()
    smtp.mail(SENDER)
    smtp.rcpt(VALID)
    answers = []
    sender = threading.Thread(target=lambda: answers.append(smtp.data(MESSAGE)))
    sender.start()
    assert entered.wait(5)
    receiver.stop()
    sender.join()
    smtp.close()
    assert answers == [(250, b"2.0.0 Message accepted")]
    assert len(pipeline.delivered) == 1


def test_port_in_use_raises_and_leaves_nothing_running(serve):
    first = serve()
    second = Receiver(FakePipeline(), ReceiverOptions(port=first.port, hostname="mx.gw.example"))
    with pytest.raises(OSError):
        second.start()
    second.stop()  # harmless
