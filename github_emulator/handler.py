"""The HTTP edge of the emulator: one threaded server, one request handler.

Its sole purpose is protocol translation: read a request (Content-Length or chunked body), hold
an in-flight slot of the caller's installation for REST calls (refused over the concurrency
limit), let armed faults fire, send ``/{owner}/{repo}.git/...`` to git smart HTTP (after
Basic-auth with an installation token, as GitHub does) and everything else to the REST router,
then write the answer with GitHub's headers — or, for a ``drop``/``timeout`` fault, close the
connection unanswered or hold the answer back — and record it in the request log (status 0:
dropped, never answered). No GitHub rules live here.
"""
from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from . import git_http
from .api import Request, secondary_limited
from .auth import basic_password, git_access

if TYPE_CHECKING:  # pragma: no cover
    from .server import GitHubEmulator


class EmulatorHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that can cut its open keep-alive connections on stop."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, emulator: "GitHubEmulator") -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self.stopping = threading.Event()      # cuts ``timeout`` faults short on stop
        super().__init__(address, Handler)

    def process_request(self, request, client_address):
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        self.stopping.set()
        with self._conn_lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Handler(BaseHTTPRequestHandler):
    # Without this, keep-alive requests wait ~40 ms on Nagle + delayed ACK (bench/smtp_ingest.py).
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    timeout = 30            # idle keep-alive connections are dropped after this
    _log_path, _answered = "", False
    _slot: int | None = None    # installation whose in-flight slot this request holds
    server: EmulatorHTTPServer

    def version_string(self) -> str:
        return "GitHub.com"

    def log_message(self, format, *args) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    # -- request -----------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_response(self, code: int, message: str | None = None) -> None:
        # Logged when the status line goes out, so a client that has its answer already
        # finds the request in ``requests_log``.
        # The in-flight slot is freed here too: a client that has its answer may send the next
        # request at once and must not find its previous one still counted.
        if not self._answered:
            self._answered = True
            self._release()
            self.server.emulator.record(self.command, self._log_path, code)
        super().send_response(code, message)

    def _release(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            self.server.emulator.limits.leave(slot)

    def _handle(self) -> None:
        emu = self.server.emulator
        split = urllib.parse.urlsplit(self.path)
        path, query = split.path, split.query
        self._log_path, self._answered = path, False
        body = self._read_body()
        # URLs in answers use the Host the client used (127.0.0.1 or localhost), as PyGithub
        # refuses to follow links to another host than its base_url.
        host = self.headers.get("Host")
        web = f"http://{host}" if host else emu.url
        req = Request(self.command, path, urllib.parse.parse_qs(query, keep_blank_values=True),
                      self.headers, body, web)
        match = git_http.GIT_PATH.match(path)
        git = bool(match and match.group("rest"))
        self._slot = None
        try:
            # GitHub's concurrency limit is on REST calls with an installation token; git
            # transport and App (JWT) calls are not counted.
            installation = None if git else emu.installation_hint(self.headers)
            if installation is not None:
                if not emu.limits.enter(installation):
                    refusal = secondary_limited(req, 1)
                    self._send_json(req, refusal.status, refusal.body, refusal.headers)
                    return
                self._slot = installation
            expiries, error, late = emu.faults.fire(self.command, path, after=not git)
            for fault in expiries:
                emu.apply_expiry(fault, self.headers)
            if error is not None:
                hint = emu.installation_hint(self.headers)
                status, payload, headers = error.response(req.request_id, hint, emu.state.clock())
                self._send_json(req, status, payload, headers)
                return
            if git:
                self._serve_git(match, query, body)
                return
            response = emu.router.dispatch(req)
            if late is not None and late.kind == "drop":
                self._drop()
                return
            if late is not None:               # timeout: the client has likely given up
                self.close_connection = True
                self.server.stopping.wait(late.seconds)
            self._send_json(req, response.status, response.body, response.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True      # the client went away; nothing to answer
        except Exception:
            if self._answered:
                raise
            self._send_json(req, 500, {"message": "Server Error"}, {})
            self.close_connection = True
            raise
        finally:
            self._release()

    def _drop(self) -> None:
        """Close the connection without a byte of answer (the work is done already)."""
        self._answered = True
        self._release()
        self.server.emulator.record(self.command, self._log_path, 0)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- responses ---------------------------------------------------------------------------
    def _send_json(self, req: Request, status: int, payload, headers: dict) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        defaults = {"Content-Type": "application/json; charset=utf-8",
                    "X-GitHub-Media-Type": "github.v3; format=json",
                    "X-GitHub-Api-Version-Selected": "2022-11-28",
                    "X-GitHub-Request-Id": req.request_id,
                    "X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "60",
                    "X-RateLimit-Reset": str(int(self.server.emulator.state.clock()) + 3600),
                    "X-RateLimit-Used": "0", "X-RateLimit-Resource": "core"}
        for name, value in {**defaults, **headers}.items():
            self.send_header(name, str(value))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    def _send_text(self, status: int, text: bytes, headers: dict | None = None) -> int:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(text)
        return status

    # -- git smart HTTP ----------------------------------------------------------------------
    def _serve_git(self, match, query: str, body: bytes) -> int:
        emu = self.server.emulator
        repo = emu.state.repo(f"{match.group('owner')}/{match.group('name')}")
        rest = match.group("rest")
        write = git_http.service_of(rest, query) == "receive"
        token_value = basic_password(self.headers.get("Authorization"))
        refusal = git_access(emu.state, token_value, repo, write)
        if refusal is not None:
            status, text = refusal
            challenge = {"WWW-Authenticate": 'Basic realm="GitHub"'} if status == 401 else {}
            return self._send_text(status, text.encode(), challenge)
        self.close_connection = True

        def start_response(status: int, headers: list[tuple[str, str]]) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()

        status = git_http.serve(
            project_root=emu.data_dir, path_info=f"/{repo.full_name}.git{rest}",
            method=self.command, query=query, headers=self.headers, body=body,
            remote_user=emu.state.bot.login if token_value else None,
            remote_addr=self.client_address[0], start_response=start_response, out=self.wfile)
        return status
