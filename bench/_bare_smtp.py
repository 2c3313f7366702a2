"""Baseline for bench/smtp_accept.py: aiosmtpd that accepts every message and discards it.

Usage: python bench/_bare_smtp.py PORT   (runs until SIGTERM/SIGINT)

Same aiosmtpd options as the gateway's receiver (inbound/server.py) where they cost something:
fixed server hostname (no getfqdn per connection), SIZE limit, SMTPUTF8, bytes not decoded,
100 commands per verb. No STARTTLS, no PROXY protocol, like the receiver as benchmarked.
"""
from __future__ import annotations

import signal
import sys
import threading

from aiosmtpd.controller import Controller


class Discard:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 OK: queued"


def main() -> None:
    port = int(sys.argv[1])
    controller = Controller(Discard(), hostname="127.0.0.1", port=port, server_hostname="bare.bench",
                            ident="ESMTP", data_size_limit=10 * 1024 * 1024, enable_SMTPUTF8=True,
                            decode_data=False, command_call_limit=100, timeout=300)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    controller.start()
    try:
        stop.wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
