"""One person's address, judged the same way for a reply's From: and the API's reporter."""
from __future__ import annotations

import pytest

from gateway.addresses import Mailbox, address_key, name_problem, single_mailbox


@pytest.mark.parametrize("value, expected", [
    ("Bob <bob@example.com>", Mailbox("Bob", "bob@example.com")),
    ("bob@example.com", Mailbox("", "bob@example.com")),
    ('"Bob, X" <Bob@Example.COM>', Mailbox("Bob, X", "bob@example.com")),
    ("=?utf-8?b?w4Fubg==?= <ann@example.com>", Mailbox("Ánn", "ann@example.com")),
    ('"bob@example.com" <Bob@example.com>', Mailbox("", "bob@example.com")),   # a name repeating the address
    ("Ann\r\n <ann@example.com>", Mailbox("Ann", "ann@example.com")),             # folded
])
def test_one_plain_mailbox_is_a_person(value, expected):
    assert single_mailbox(value) == expected


@pytest.mark.parametrize("value", [
    "pat@example.org <attacker@evil.example>",                    # the spam shape: name is another address
    '"pat@example.org" <attacker@evil.example>',
    "=?utf-8?q?pat=40example.org?= <attacker@evil.example>",      # the same, encoded
    "a@example.com, b@example.com",                               # two people
    "Group: a@example.com;",                                      # a group
    "x <a@example.com> <c@example.org>",                          # repaired by the parser
    "Bob <bob@example.com",                                       # unterminated
    "<>", "Bob Smith", "",
    "\u212aim@example.com",                                       # KELVIN SIGN would fold to kim@
    "Bob <bob@[192.0.2.1]>", "bob@localhost",                     # no literal or single-label domains
    "=?utf-8?q?Fix=0D=0ABcc:_v@evil.example?= <a@example.com>",   # CR LF in an encoded name
    "=?utf-8?q?A=0Ab?= <a@example.com>",
])
def test_anything_else_names_nobody(value):
    assert single_mailbox(value) is None


def test_addresses_compare_by_ascii_lower_case_and_look_alikes_are_refused():
    assert address_key("Kim@Example.com") == "kim@example.com"
    assert address_key("\u212aim@example.com") is None          # not folded into kim@
    assert address_key("kim@exampl\u0435.com") is None          # Cyrillic e
    assert address_key("kim@example.com ") == "kim@example.com"
    assert address_key("a" * 65 + "@example.com") is None


@pytest.mark.parametrize("name, problem", [
    ("Ann Example", None),
    ("Ann\r\nBcc: x@evil.example", "must not contain control characters or line breaks"),
    ("attacker@evil.example", "must not contain an email address"),
    ("x" * 201, "is longer than 200 characters"),
])
def test_display_names_that_could_mislead_are_named(name, problem):
    assert name_problem(name) == problem
