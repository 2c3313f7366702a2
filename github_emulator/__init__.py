"""A local stand-in for GitHub (REST + git smart HTTP) for tests, benchmarks and the sandbox demo.

It is a test and sandbox double of GitHub, not part of the product: the gateway's GitHub adapter
(``github_app``) is checked against it, so it shares no code with that adapter nor with the
gateway (``gateway``, ``inbound``, ``outbound``) and knows only GitHub's wire format.

It serves, on 127.0.0.1, the slice of GitHub a GitHub App uses to open, find, comment on and
merge pull requests — App JWT and installation-token auth, rate-limit headers, GitHub's error
bodies, GitHub's secondary limits (80 content-creating requests a minute, 500 an hour, 100 in
flight per installation; configurable) — plus ``git push``/``fetch`` over HTTP into real bare
repositories, with injectable faults (5xx, primary/secondary rate limits, latency, expiring
tokens, dropped or late answers after the work was done, each optionally with a probability).
PyGithub talks to it unchanged via ``base_url=emu.url``.

It is not GitHub: no GraphQL, no forks, reviews, checks, labels or webhooks delivery.

    emu = GitHubEmulator(app_id=1, app_public_key_pem=pem)
    emu.start(); emu.add_repo("octo-org/widgets"); emu.add_installation(7, "octo-org", ["octo-org/widgets"])
    ...
    emu.stop()
"""
from .faults import Fault, FaultInjector
from .limits import CONTENT_LIMITS, MAX_CONCURRENT, SecondaryLimits
from .server import GitHubEmulator

__all__ = ["GitHubEmulator", "Fault", "FaultInjector", "SecondaryLimits", "CONTENT_LIMITS",
           "MAX_CONCURRENT"]
