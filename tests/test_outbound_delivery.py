"""outbound.delivery over real SMTP (tests.support.smtp_sink): delivery and error classification."""

import email
import email.policy
import socket
import ssl
import threading
import traceback
from datetime import datetime, timezone
from urllib.parse import quote

import pytest

from gateway.errors import PermanentError, TransientError
from outbound.compose import ThreadHeaders, compose
from outbound.delivery import MaildirRelay, RelayConfig, SmtpRelay
from tests.support.smtp_sink import SmtpSink, make_self_signed_cert

SECRET = "s3cr3t/p@ss:w?rd#x"
FROM = "bounces@gateway.example.com"
TO = "rita@example.org"


@pytest.fixture(autouse=True)
def no_leftover_threads():
    """Every server a test starts is stopped by the time it ends."""
    before = set(threading.enumerate())
    yield
    assert set(threading.enumerate()) <= before


@pytest.fixture
def sink():
    with SmtpSink() as server:
        yield server


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


def trusting(cert_pair) -> ssl.SSLContext:
    """A client context that verifies the sink's self-signed certificate (hostname included)."""
    return ssl.create_default_context(cafile=str(cert_pair[0]))


def message(subject="[widgets] PR ready: Fix it"):
    thread = ThreadHeaders(
        message_id="<th1.0.abc@reply.example.com>",
        reply_to="reply+th1.1.abc@reply.example.com",
        signed={"X-Gateway-Thread": "th1"},
        list_id="octo-org/widgets PR #7 <pr-7.widgets.octo-org.reply.example.com>",
    )
    return compose(sender="Gateway <gateway@example.com>", to=TO, subject=subject,
                   text="Grüße\n", html="<p>Grüße</p>\n", thread=thread,
                   date=datetime(2024, 5, 1, tzinfo=timezone.utc))


def relay_for(url: str, **kwargs) -> SmtpRelay:
    return SmtpRelay(RelayConfig.from_url(url), **kwargs)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def full_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


# --- delivery ---------------------------------------------------------------

def test_delivered_bytes_parse_and_match(sink):
    msg = message(subject="[widgets] PR ready: Réparer 🚀")
    relay_for(sink.url).send(msg, envelope_from=FROM, recipients=[TO])
    [mail] = sink.wait_for(1)
    assert mail.envelope_from == FROM and mail.recipients == [TO]
    parsed = email.message_from_bytes(mail.raw, policy=email.policy.default)
    for name in ("From", "To", "Subject", "Date", "Message-ID", "Reply-To", "X-Gateway-Thread",
                 "List-Id", "Auto-Submitted"):
        assert parsed[name] == msg[name]
    assert parsed["Subject"] == "[widgets] PR ready: Réparer 🚀"
    assert parsed.get_body(("plain",)).get_content().strip() == "Grüße"


def test_raw_bytes_are_sent_as_given(sink):
    raw = b"From: a@example.com\r\nSubject: raw\r\n\r\nbody\r\n"
    relay_for(sink.url).send(raw, envelope_from=FROM, recipients=[TO])
    assert sink.wait_for(1)[0].raw == raw


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
def test_4xx_is_transient_with_code(sink, stage):
    sink.fail_next("451 4.3.0 try later", stage)
    with pytest.raises(TransientError) as caught:
        relay_for(sink.url).send(message(), envelope_from=FROM, recipients=[TO])
    assert "451" in str(caught.value) and "try later" in str(caught.value)
    assert sink.messages == []


@pytest.mark.parametrize("stage, reply", [
    ("MAIL", "553 5.1.8 sender domain rejected"),
    ("RCPT", "550 5.1.1 no such user"),
    ("DATA", "554 5.7.1 message refused"),
])
def test_5xx_is_permanent_with_code(sink, stage, reply):
    sink.fail_next(reply, stage)
    with pytest.raises(PermanentError) as caught:
        relay_for(sink.url).send(message(), envelope_from=FROM, recipients=[TO])
    assert reply in str(caught.value)


def test_failure_injection_is_one_shot(sink):
    relay = relay_for(sink.url)
    sink.fail_next("421 4.7.0 slow down", "RCPT")
    with pytest.raises(TransientError):
        relay.send(message(), envelope_from=FROM, recipients=[TO])
    relay.send(message(), envelope_from=FROM, recipients=[TO])
    assert len(sink.wait_for(1)) == 1


def test_sink_reply_code_applies_to_every_message():
    with SmtpSink(reply_code="552 5.3.4 too big") as sink:
        with pytest.raises(PermanentError, match="552"):
            relay_for(sink.url).send(message(), envelope_from=FROM, recipients=[TO])


def test_all_recipients_4xx_is_transient(sink):
    sink.fail_next("450 4.2.0 mailbox busy", "RCPT", times=2)
    with pytest.raises(TransientError, match="450"):
        relay_for(sink.url).send(message(), envelope_from=FROM, recipients=[TO, "b@example.org"])


def test_partial_refusal_is_permanent_and_names_the_refused(sink):
    sink.fail_next("550 5.1.1 no such user", "RCPT")
    with pytest.raises(PermanentError) as caught:
        relay_for(sink.url).send(message(), envelope_from=FROM, recipients=["gone@example.org", TO])
    assert "gone@example.org" in str(caught.value) and "550" in str(caught.value)
    assert sink.wait_for(1)[0].recipients == [TO]


def test_connection_refused_is_transient():
    with pytest.raises(TransientError, match="refused the connection"):
        relay_for(f"smtp://127.0.0.1:{free_port()}").send(message(), envelope_from=FROM, recipients=[TO])


def test_silent_server_times_out_as_transient():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts in the kernel, never greets
        url = f"smtp://127.0.0.1:{silent.getsockname()[1]}?timeout=0.3"
        with pytest.raises(TransientError, match="timed out"):
            relay_for(url).send(message(), envelope_from=FROM, recipients=[TO])


def test_server_hanging_up_is_transient():
    with socket.create_server(("127.0.0.1", 0)) as rude:
        hang_up = threading.Thread(target=lambda: rude.accept()[0].close())
        hang_up.start()
        try:
            with pytest.raises(TransientError):
                relay_for(f"smtp://127.0.0.1:{rude.getsockname()[1]}?timeout=2").send(
                    message(), envelope_from=FROM, recipients=[TO])
        finally:
            hang_up.join(2)


def test_envelope_addresses_cannot_inject_commands(sink):
    with pytest.raises(ValueError):
        relay_for(sink.url).send(message(), envelope_from=FROM, recipients=["a@x.org\r\nRCPT TO:<b@y>"])
    with pytest.raises(ValueError):
        relay_for(sink.url).send(message(), envelope_from=FROM, recipients=[])


# --- AUTH and TLS -------------------------------------------------------------

def test_auth_success_with_percent_encoded_credentials():
    with SmtpSink(auth=("mailer@example.com", SECRET)) as sink:
        url = f"smtp://{quote('mailer@example.com', safe='')}:{quote(SECRET, safe='')}@127.0.0.1:{sink.port}"
        relay_for(url).send(message(), envelope_from=FROM, recipients=[TO])
        assert len(sink.wait_for(1)) == 1


def test_wrong_password_is_permanent_and_never_shows_the_password():
    with SmtpSink(auth=("mailer", "right-password")) as sink:
        relay = relay_for(f"smtp://mailer:{quote(SECRET, safe='')}@127.0.0.1:{sink.port}")
        with pytest.raises(PermanentError) as caught:
            relay.send(message(), envelope_from=FROM, recipients=[TO])
        assert "535" in str(caught.value)
        assert SECRET not in full_text(caught.value) and SECRET not in repr(relay)
        with pytest.raises(PermanentError, match="535"):
            relay.check()


def test_missing_credentials_is_permanent():
    with SmtpSink(auth=("mailer", "pw")) as sink:
        with pytest.raises(PermanentError, match="530"):
            relay_for(sink.url).send(message(), envelope_from=FROM, recipients=[TO])


def test_starttls_with_auth(cert):
    with SmtpSink(tls_cert=cert, auth=("mailer", "pw")) as sink:
        relay = relay_for(f"smtp://mailer:pw@127.0.0.1:{sink.port}?starttls=true", ssl_context=trusting(cert))
        relay.send(message(), envelope_from=FROM, recipients=[TO])
        assert len(sink.wait_for(1)) == 1
        relay.check()


def test_starttls_required_by_server_but_not_used_is_permanent(cert):
    with SmtpSink(tls_cert=cert) as sink:
        with pytest.raises(PermanentError, match="530"):
            relay_for(f"smtp://127.0.0.1:{sink.port}").send(message(), envelope_from=FROM, recipients=[TO])


def test_untrusted_certificate_is_permanent(cert):
    with SmtpSink(tls_cert=cert) as sink:  # default context: the self-signed cert is not trusted
        with pytest.raises(PermanentError, match="not trusted"):
            relay_for(sink.url).send(message(), envelope_from=FROM, recipients=[TO])


def test_starttls_not_offered_is_permanent(sink):
    with pytest.raises(PermanentError, match="STARTTLS"):
        relay_for(sink.url + "?starttls=true").send(message(), envelope_from=FROM, recipients=[TO])


def test_smtps_implicit_tls(cert):
    with SmtpSink(tls_cert=cert, implicit_tls=True) as sink:
        assert sink.url.startswith("smtps://")
        relay = relay_for(sink.url, ssl_context=trusting(cert))
        relay.send(message(), envelope_from=FROM, recipients=[TO])
        assert sink.wait_for(1)[0].recipients == [TO]
        relay.check()


def test_smtps_against_plain_smtp_is_permanent(sink, cert):
    with pytest.raises(PermanentError, match="TLS"):
        relay_for(f"smtps://127.0.0.1:{sink.port}?timeout=2", ssl_context=trusting(cert)).send(
            message(), envelope_from=FROM, recipients=[TO])


def test_check(sink):
    relay_for(sink.url).check()
    with pytest.raises(TransientError):
        relay_for(f"smtp://127.0.0.1:{free_port()}").check()
    assert sink.messages == []


# --- RelayConfig ----------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("smtp://relay.example.com", ("smtp", "relay.example.com", 25, None, None, False)),
    ("smtp://relay.example.com?starttls=true", ("smtp", "relay.example.com", 587, None, None, True)),
    ("smtp://u:p@relay.example.com:2525?starttls=yes", ("smtp", "relay.example.com", 2525, "u", "p", True)),
    ("SMTP://relay.example.com:25?STARTTLS=0", ("smtp", "relay.example.com", 25, None, None, False)),
    ("smtps://apikey:SG.x%2Fy%40z@smtp.sendgrid.net", ("smtps", "smtp.sendgrid.net", 465, "apikey", "SG.x/y@z", False)),
    ("smtps://u%40d.org:p%3Aw@[::1]:4650/", ("smtps", "::1", 4650, "u@d.org", "p:w", False)),
])
def test_from_url(url, expected):
    config = RelayConfig.from_url(url)
    assert (config.scheme, config.host, config.port, config.username, config.password,
            config.starttls) == expected
    assert config.timeout == 30


def test_from_url_timeout():
    assert RelayConfig.from_url("smtp://h?timeout=2.5").timeout == 2.5


@pytest.mark.parametrize("url", [
    "http://u:hunter2secret@host",
    "smtp://u:hunter2secret@",
    "smtp://u:hunter2secret@host:notaport",
    "smtp://u:hunter2secret@host:70000",
    "smtp://u:hunter2/secret@host",  # unencoded "/": urlsplit would put "secret@host" in the path
    "smtp://u:hunter2secret@host?starttls=maybe",
    "smtp://u:hunter2?secret@host",  # unencoded "?": part of the password lands in the query
    "smtp://u:hunter2#secret@host",
    "smtps://u:hunter2secret@host?starttls=true",
    "smtp://u@host",
    "smtp://:hunter2secret@host",
    "smtp://u:hunter2secret@[::1",
    "smtp://host?timeout=-1",
])
def test_invalid_url_errors_never_contain_the_password(url):
    with pytest.raises(ValueError) as caught:
        RelayConfig.from_url(url)
    text = full_text(caught.value)
    assert "relay" in str(caught.value)
    for piece in ("hunter2", "secret"):
        assert piece not in text


def test_repr_and_redacted_hide_the_password():
    config = RelayConfig.from_url(f"smtp://user:{quote(SECRET, safe='')}@relay.example.com:587?starttls=true")
    assert config.redacted() == "smtp://user:***@relay.example.com:587?starttls=true"
    assert SECRET not in repr(config) and SECRET not in str(config)
    assert RelayConfig.from_url("smtps://relay.example.com").redacted() == "smtps://relay.example.com:465"
    same = RelayConfig.from_url("smtp://tok123:tok123@smtp.postmarkapp.com:587?starttls=true")
    assert "tok123" not in same.redacted()


# --- Maildir --------------------------------------------------------------------

def test_maildir_writes_and_reads_back(tmp_path):
    relay = MaildirRelay(tmp_path / "outbox")
    relay.check()
    assert relay.messages() == []
    for n in range(3):
        relay.send(message(subject=f"[widgets] PR ready: {n} ü"), envelope_from=FROM, recipients=[TO])
    relay.send(b"Subject: raw\r\n\r\nbody\r\n", envelope_from=FROM, recipients=[TO, "b@example.org"])
    stored = relay.messages()
    assert [m["Subject"] for m in stored] == [f"[widgets] PR ready: {n} ü" for n in range(3)] + ["raw"]
    assert stored[0]["Return-Path"] == f"<{FROM}>" and stored[0]["Delivered-To"] == TO
    assert stored[3].get_all("Delivered-To") == [TO, "b@example.org"]
    assert stored[0]["Message-ID"] == "<th1.0.abc@reply.example.com>"
    assert stored[0].get_body(("html",)).get_content().strip() == "<p>Grüße</p>"
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 4


def test_maildir_on_a_file_is_permanent(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(PermanentError):
        MaildirRelay(blocker / "box").check()
