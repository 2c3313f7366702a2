import pytest

from gateway.secret_scan import find_secrets, redact_secrets

TOKEN = "ghp_" + "a1B2" * 9


@pytest.mark.parametrize("text, kind", [
    (f"use {TOKEN} please", "GitHub personal access token"),
    ("gho_" + "x" * 36, "GitHub OAuth token"),
    ("ghs_" + "Y" * 36, "GitHub server-to-server token"),
    ("github_pat_" + "11ABCDEFG0_" + "z" * 40, "GitHub fine-grained token"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "private key"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn", "private key"),
    ("key AKIAIOSFODNN7EXAMPLE", "AWS access key id"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS secret access key"),
])
def test_each_kind_is_found(text, kind):
    assert kind in find_secrets(text)


def test_ordinary_text_has_no_secrets():
    assert find_secrets("Fix ghp handling in the github_pat parser; see -----BEGIN CERTIFICATE-----") == []


def test_redaction_removes_the_value_and_names_the_kind():
    text, kinds = redact_secrets(f"token: {TOKEN}\n-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----\nbye")
    assert TOKEN not in text and "abc" not in text and text.endswith("bye")
    assert kinds == ["GitHub personal access token", "private key"]
