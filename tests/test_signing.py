from datetime import datetime, timedelta, timezone

import pytest

from gateway.signing import ReplyTokens, TokenInvalid, token_cipher

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def tokens(secrets=("s" * 32,), now=NOW, **kw):
    return ReplyTokens(secrets=secrets, domain="reply.example.com", clock=lambda: now, **kw)


def test_reply_address_round_trips_and_fits_a_local_part():
    address = tokens().reply_address("abcdefghijkl")
    local = address.split("@")[0]
    assert len(local) <= 64 and local == local.lower()
    assert tokens().verify_address(address) == "abcdefghijkl"
    assert tokens().verify_address(address.upper().replace("REPLY.EXAMPLE.COM", "reply.example.com")) == "abcdefghijkl"


def test_forged_signature_is_refused():
    address = tokens().reply_address("abcdefghijkl")
    forged = address.replace("abcdefghijkl", "mnopqrstuvwx")
    with pytest.raises(TokenInvalid, match="signature"):
        tokens().verify_address(forged)


def test_token_of_another_secret_is_refused_but_previous_key_is_accepted():
    old = tokens(secrets=("o" * 32,)).reply_address("abcdefghijkl")
    with pytest.raises(TokenInvalid, match="no current or previous key"):
        tokens(secrets=("n" * 32,)).verify_address(old)
    assert tokens(secrets=("n" * 32, "o" * 32)).verify_address(old) == "abcdefghijkl"


def test_expired_and_future_tokens_are_refused():
    address = tokens(now=NOW - timedelta(days=31)).reply_address("abcdefghijkl")
    with pytest.raises(TokenInvalid, match="older than 30 days"):
        tokens().verify_address(address)
    future = tokens(now=NOW + timedelta(hours=1)).reply_address("abcdefghijkl")
    with pytest.raises(TokenInvalid, match="future"):
        tokens().verify_address(future)


@pytest.mark.parametrize("address", ["reply@reply.example.com", "reply+abc@reply.example.com",
                                     "reply+abcdefghijkl.1.x@reply.example.com", "someone@elsewhere.org", ""])
def test_malformed_addresses_are_refused(address):
    with pytest.raises(TokenInvalid):
        tokens().verify_address(address)


def test_message_id_and_headers_are_independent_channels():
    t = tokens()
    message_id = t.message_id("abcdefghijkl", 3)
    assert t.verify_message_id(message_id) == "abcdefghijkl"
    headers = t.signed_headers("abcdefghijkl")
    assert t.verify_headers(headers["X-Gateway-Thread"], headers["X-Gateway-Sig"],
                            headers["X-Gateway-Sig-Ts"]) == "abcdefghijkl"
    # a signature from one channel does not validate another
    sig = message_id.strip("<>").split("@")[0].split(".")[-1]
    with pytest.raises(TokenInvalid):
        t.verify_headers("abcdefghijkl", sig, headers["X-Gateway-Sig-Ts"])


def test_unsubscribe_token_names_thread_and_participant_and_survives_lower_casing():
    t = tokens()
    token = t.unsubscribe_token("abcdefghijkl", 42)
    assert token == token.lower()
    assert t.verify_unsubscribe(token.upper()) == ("abcdefghijkl", 42)
    with pytest.raises(TokenInvalid):
        t.verify_unsubscribe(token.replace(".42.", ".43."))


def test_token_cipher_decrypts_with_a_rotated_key():
    ciphertext = token_cipher(["old" * 11]).encrypt(b"ghs_secret")
    assert token_cipher(["new" * 11, "old" * 11]).decrypt(ciphertext) == b"ghs_secret"
    assert b"ghs_secret" not in ciphertext
