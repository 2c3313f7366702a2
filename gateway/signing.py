"""Reply tokens: what lets a plain mail reply find its thread, and nothing more.

A token is an HMAC-SHA256 over (purpose, thread, timestamp), truncated to 80
bits and written in lower-case base32, because MTAs may lower-case local parts.
It appears in three independent places a reply can carry back:

- the reply address   reply+<thread>.<ts>.<sig>@<domain>
- the Message-ID      <<thread>.<seq>.<ts>.<sig>@<domain>> (found in In-Reply-To/References)
- signed headers      X-Gateway-Thread / X-Gateway-Sig / X-Gateway-Sig-Ts

Verification is constant-time, accepts every configured secret (current first)
so keys rotate without breaking open threads, refuses timestamps from the future
beyond a small skew and tokens older than the maximum age. A valid token only
names a thread; whether the sender may post there is decided elsewhere.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Sequence

from cryptography.fernet import Fernet, MultiFernet

REPLY_LOCAL = "reply"
_THREAD = r"[a-z2-7]{6,16}"
_ADDRESS_RE = re.compile(rf"^{REPLY_LOCAL}\+(?P<thread>{_THREAD})\.(?P<ts>\d{{1,12}})\.(?P<sig>[a-z2-7]{{16}})$")
_UNSUB_RE = re.compile(rf"^(?P<thread>{_THREAD})\.(?P<pid>\d{{1,12}})\.(?P<sig>[a-z2-7]{{16}})$")
_MSGID_RE = re.compile(rf"^(?P<thread>{_THREAD})\.(?P<seq>\d{{1,9}})\.(?P<ts>\d{{1,12}})\.(?P<sig>[a-z2-7]{{16}})$")


class TokenInvalid(Exception):
    """Why a token was refused; for the log only, never for the SMTP client."""


def derive_key(secret: str, purpose: str) -> bytes:
    """A separate 32-byte key per purpose, so one leaked use cannot forge another."""
    return hmac.new(secret.encode(), b"gateway/" + purpose.encode(), hashlib.sha256).digest()


def token_cipher(secrets: Sequence[str]) -> MultiFernet:
    """Encrypts cached installation tokens at rest; decrypts with any rotated key."""
    return MultiFernet([Fernet(base64.urlsafe_b64encode(derive_key(s, "installation-token-cache")))
                        for s in secrets])


def _sign(secret: str, purpose: str, *fields: str) -> str:
    mac = hmac.new(derive_key(secret, purpose), "\x1f".join(fields).encode(), hashlib.sha256).digest()
    return base64.b32encode(mac[:10]).decode().lower()


@dataclass(frozen=True)
class ReplyTokens:
    secrets: Sequence[str]
    domain: str
    max_age: timedelta = timedelta(days=30)
    future_skew: timedelta = timedelta(minutes=5)
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    def __post_init__(self):
        if not self.secrets or not self.secrets[0]:
            raise ValueError("ReplyTokens needs at least one secret")

    def _now_ts(self) -> str:
        return str(int(self.clock().timestamp()))

    # -- issuing -------------------------------------------------------------

    def reply_address(self, thread_id: str) -> str:
        ts = self._now_ts()
        sig = _sign(self.secrets[0], "reply-address", thread_id, ts)
        return f"{REPLY_LOCAL}+{thread_id}.{ts}.{sig}@{self.domain}"

    def message_id(self, thread_id: str, seq: int) -> str:
        ts = self._now_ts()
        sig = _sign(self.secrets[0], "message-id", thread_id, str(seq), ts)
        return f"<{thread_id}.{seq}.{ts}.{sig}@{self.domain}>"

    def signed_headers(self, thread_id: str) -> dict[str, str]:
        ts = self._now_ts()
        return {"X-Gateway-Thread": thread_id,
                "X-Gateway-Sig-Ts": ts,
                "X-Gateway-Sig": _sign(self.secrets[0], "header", thread_id, ts)}

    def unsubscribe_token(self, thread_id: str, participant_id: int) -> str:
        """Lower-case (it also rides in a mailto local part) and never expires."""
        sig = _sign(self.secrets[0], "unsubscribe", thread_id, str(participant_id))
        return f"{thread_id}.{participant_id}.{sig}"

    # -- verifying -----------------------------------------------------------

    def _check(self, purpose: str, sig: str, ts: str, *fields: str, check_age: bool = True) -> None:
        if not any(hmac.compare_digest(_sign(secret, purpose, *fields, ts), sig) for secret in self.secrets):
            raise TokenInvalid(f"{purpose}: signature matches no current or previous key")
        if not check_age:
            return
        issued = datetime.fromtimestamp(int(ts), timezone.utc)
        now = self.clock()
        if issued > now + self.future_skew:
            raise TokenInvalid(f"{purpose}: timestamp {issued.isoformat()} is in the future")
        if now - issued > self.max_age:
            raise TokenInvalid(f"{purpose}: token from {issued.isoformat()} is older than {self.max_age.days} days")

    def verify_address(self, address: str) -> str:
        """The thread a reply address names, or TokenInvalid."""
        local, _, domain = address.strip().strip("<>").rpartition("@")
        if domain.lower() != self.domain:
            raise TokenInvalid(f"address: domain {domain!r} is not the reply domain")
        match = _ADDRESS_RE.match(local.lower())
        if not match:
            raise TokenInvalid("address: no well-formed token in the local part")
        self._check("reply-address", match["sig"], match["ts"], match["thread"])
        return match["thread"]

    def verify_message_id(self, message_id: str) -> str:
        local, _, domain = message_id.strip().strip("<>").rpartition("@")
        if domain.lower() != self.domain:
            raise TokenInvalid("message-id: not one of ours")
        match = _MSGID_RE.match(local.lower())
        if not match:
            raise TokenInvalid("message-id: malformed")
        self._check("message-id", match["sig"], match["ts"], match["thread"], match["seq"])
        return match["thread"]

    def verify_headers(self, thread_id: str, sig: str, ts: str) -> str:
        thread_id, sig, ts = thread_id.strip().lower(), sig.strip().lower(), ts.strip()
        if not re.fullmatch(_THREAD, thread_id) or not ts.isdigit() or not re.fullmatch(r"[a-z2-7]{16}", sig):
            raise TokenInvalid("headers: malformed")
        self._check("header", sig, ts, thread_id)
        return thread_id

    def verify_unsubscribe(self, token: str) -> tuple[str, int]:
        match = _UNSUB_RE.match(token.strip().lower())
        if not match:
            raise TokenInvalid("unsubscribe: malformed")
        self._check("unsubscribe", match["sig"], match["pid"], match["thread"], check_age=False)
        return match["thread"], int(match["pid"])
