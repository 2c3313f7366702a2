"""Run the GitHub emulator standalone: ``python -m github_emulator --port 8765``.

Seeds one installation with the given repositories, prints one JSON line (url, app_id,
installation_id, private key file when one was generated) and serves until interrupted.
For demos and manual poking; tests start :class:`GitHubEmulator` in-process instead.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from .limits import CONTENT_LIMITS, MAX_CONCURRENT, parse_limits
from .server import GitHubEmulator


def _generate_keypair(out: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
    out.chmod(0o600)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m github_emulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--app-id", type=int, default=1)
    p.add_argument("--public-key-file", type=Path,
                   help="the App's public key (PEM); omitted: generate a keypair")
    p.add_argument("--private-key-out", type=Path,
                   help="where a generated private key is written (default: DATA_DIR/app.pem)")
    p.add_argument("--installation-id", type=int, default=1)
    p.add_argument("--account", default="octo-org")
    p.add_argument("--repo", action="append", default=[],
                   help="owner/name to create and install (repeatable; default octo-org/widgets)")
    p.add_argument("--private", action="store_true", help="create the repos as private")
    p.add_argument("--bot-login", default="gateway-sandbox[bot]")
    p.add_argument("--webhook-secret")
    p.add_argument("--data-dir", type=Path, help="bare repos live here (default: a temp dir)")
    p.add_argument("--content-limits", type=parse_limits, metavar="N/S[,N/S]",
                   default=CONTENT_LIMITS,
                   help="secondary limit on content-creating requests per installation: N in "
                        "any S seconds (default GitHub's 80/60,500/3600; 'off' disables)")
    p.add_argument("--max-concurrent", type=int, default=MAX_CONCURRENT,
                   help="requests in flight per installation (default 100; 0 disables)")
    p.add_argument("--seed", type=int, help="seed for faults injected with a probability")
    args = p.parse_args(argv)

    info: dict = {}
    if args.public_key_file:
        public_pem = args.public_key_file.read_bytes()
    else:
        out = args.private_key_out or (args.data_dir or Path.cwd()) / "github-emulator-app.pem"
        public_pem = _generate_keypair(out)
        info["private_key_file"] = str(out)

    emu = GitHubEmulator(args.app_id, public_pem, webhook_secret=args.webhook_secret,
                         bot_login=args.bot_login, data_dir=args.data_dir,
                         host=args.host, port=args.port, content_limits=args.content_limits,
                         max_concurrent=args.max_concurrent or None, seed=args.seed)
    repos = args.repo or [f"{args.account}/widgets"]
    emu.start()
    for full_name in repos:
        emu.add_repo(full_name, private=args.private)
    emu.add_installation(args.installation_id, args.account, repos)
    info.update(url=emu.url, app_id=args.app_id, installation_id=args.installation_id,
                repositories=repos, data_dir=str(emu.data_dir))
    print(json.dumps(info), flush=True)

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
