"""The gateway as real child processes, for fault tests and benchmarks.

`gateway serve|smtp|worker|web` run exactly as an operator runs them, configured only through
the environment, against a GitHub emulator and an SMTP sink that live in the calling process.
So a test can SIGKILL the gateway and restart it while GitHub's and the relay's state (what was
really posted and sent) survives, which an in-process harness cannot show.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from github_emulator import GitHubEmulator
from tests.support.github import app_key_pair
from tests.support.harness import API_TOKEN, APP_ID, BOT, INSTALLATION_ID, REPO, SECRET, WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_emulator(**options) -> GitHubEmulator:
    """The emulator with the harness's App, installation and repository."""
    _, public = app_key_pair()
    emulator = GitHubEmulator(app_id=APP_ID, app_public_key_pem=public, webhook_secret=WEBHOOK_SECRET,
                              bot_login=BOT, **options)
    emulator.start()
    emulator.add_repo(REPO, default_branch="main")
    emulator.add_installation(installation_id=INSTALLATION_ID, account="octo-org", repositories=[REPO])
    return emulator


def gateway_environment(*, database_url: str, data_dir: Path, emulator_url: str, relay_url: str,
                        **overrides: str) -> dict[str, str]:
    """A production-shaped configuration (not the sandbox) pointing at the test's emulator and sink."""
    private, _ = app_key_pair()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("GATEWAY_", "GITHUB_"))}
    env.update({
        "PYTHONPATH": str(ROOT),
        "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_SECRET_KEY": SECRET,
        "GATEWAY_API_TOKENS": API_TOKEN,
        "GATEWAY_REPLY_DOMAIN": "reply.example.com",
        "GATEWAY_MAIL_FROM": "gateway@reply.example.com",
        "GATEWAY_PUBLIC_URL": "https://gateway.test",
        "GATEWAY_SMTP_RELAY_URL": relay_url,
        "GATEWAY_ALLOW_LOCAL_SOURCES": "true",
        "GATEWAY_LOG_LEVEL": "WARNING",
        "GITHUB_APP_ID": str(APP_ID),
        "GITHUB_APP_PRIVATE_KEY": private,
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GITHUB_API_URL": emulator_url,
        "GITHUB_WEB_URL": emulator_url,
        "GITHUB_BOT_LOGIN": BOT,
    })
    env.update(overrides)
    return env


class GatewayProcess:
    """One `gateway <command>` child process; ``kill()`` is SIGKILL, ``stop()`` is SIGTERM."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path):
        self.command = command
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def http_port(self) -> int | None:
        return int(self.env["GATEWAY_HTTP_PORT"]) if "GATEWAY_HTTP_PORT" in self.env else None

    @property
    def smtp_port(self) -> int | None:
        return int(self.env["GATEWAY_SMTP_PORT"]) if "GATEWAY_SMTP_PORT" in self.env else None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, *, ready_timeout: float = 30.0) -> "GatewayProcess":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "gateway.cli", *self.command], env=self.env,
                                        cwd=self.env.get("GATEWAY_DATA_DIR"), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_ready(ready_timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Until every port this command listens on answers (a worker has none: it is ready at once)."""
        wait_listening(self.process, self._listening_ports(), timeout=timeout, log_path=self.log_path,
                       name=f"gateway {' '.join(self.command)}")

    def _listening_ports(self) -> list[int]:
        name = self.command[0]
        ports = []
        if name in ("serve", "web") and self.http_port:
            ports.append(self.http_port)
        if name in ("serve", "smtp") and self.smtp_port:
            ports.append(self.smtp_port)
        return ports

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed, like a crash or the OOM killer."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int | None:
        return stop_process(self.process, timeout) if self.process is not None else None

    def rss_bytes(self) -> int:
        """Resident memory of the process now (Linux /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmRSS not found")

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {API_TOKEN}", **kwargs.pop("headers", {})}
        return requests.request(method, f"http://127.0.0.1:{self.http_port}{path}", headers=headers,
                                timeout=kwargs.pop("timeout", 10), **kwargs)


def stop_process(process: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.returncode


def wait_listening(process: subprocess.Popen, ports: list[int], *, timeout: float, log_path: Path,
                   name: str) -> None:
    """Until every port accepts a connection; the child's log tail if it exits first."""
    deadline = time.monotonic() + timeout
    wanted = list(ports)
    while wanted:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n"
                               + log_path.read_text(errors="replace")[-3000:])
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not ready after {timeout} s")
        wanted = [port for port in wanted if not _accepts(port)]
        if wanted:
            time.sleep(0.05)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
