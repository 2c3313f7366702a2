"""Sandbox mode: the whole gateway on one machine with no GitHub App and no relay.

GitHub is replaced by the emulator (github_emulator) with a generated App
key, and outbound mail goes to a local maildir. Part of the CLI layer: only the
CLI and the demo import it. Everything it prints says GitHub is emulated.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.config import Settings
from github_emulator import GitHubEmulator

SANDBOX_APP_ID = 424242
SANDBOX_INSTALLATION_ID = 4242
SANDBOX_REPO = "sandbox/widgets"
SANDBOX_BOT = "gateway-sandbox[bot]"


@dataclass
class Sandbox:
    settings: Settings
    emulator: GitHubEmulator

    def stop(self) -> None:
        self.emulator.stop()


def _app_key(data_dir: Path) -> str:
    path = data_dir / "sandbox-app-key.pem"
    if path.is_file():
        return path.read_text()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(pem)
    path.chmod(0o600)
    return pem


def start_sandbox(settings: Settings, *, port: int = 0) -> Sandbox:
    """Start the emulator with one installed repository and point the settings at it."""
    settings = settings.with_sandbox_defaults()
    private_pem = _app_key(settings.data_dir)
    public_pem = serialization.load_pem_private_key(private_pem.encode(), None).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    emulator = GitHubEmulator(app_id=SANDBOX_APP_ID, app_public_key_pem=public_pem,
                              webhook_secret=settings.github_webhook_secret, bot_login=SANDBOX_BOT,
                              port=port)  # git data in a temp dir: emulated state lives only as long as the process
    emulator.start()
    emulator.add_repo(SANDBOX_REPO, default_branch="main")
    emulator.add_installation(installation_id=SANDBOX_INSTALLATION_ID, account="sandbox",
                              repositories=[SANDBOX_REPO])
    settings = settings.replace(github_app_id=str(SANDBOX_APP_ID), github_app_private_key=private_pem,
                                github_api_url=emulator.url, github_web_url=emulator.url,
                                github_bot_login=SANDBOX_BOT)
    return Sandbox(settings=settings, emulator=emulator)
