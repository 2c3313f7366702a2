"""git smart HTTP for the emulator's bare repos, through ``git http-backend`` as a CGI.

Its sole purpose: given an already-authorised request under ``/{owner}/{repo}.git/...``, run
git's own CGI with the right environment, feed it the (un-gzipped) request body and stream its
output back as an HTTP response. Deciding who may fetch or push is the caller's job
(:func:`service_of` says which one a request is); REST state is not touched here.
"""
from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import BinaryIO, Callable, Mapping

GIT_PATH = re.compile(r"^/(?P<owner>[^/]+)/(?P<name>[^/]+?)\.git(?P<rest>/.*)?$")
BACKEND_CANDIDATES = ("/usr/lib/git-core/git-http-backend", "/usr/libexec/git-core/git-http-backend")


def backend_path() -> list[str]:
    for candidate in BACKEND_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return [candidate]
    return [shutil.which("git") or "git", "http-backend"]


def service_of(rest: str, query: str) -> str:
    """"receive" for anything that pushes, "upload" (fetch) otherwise."""
    if rest.endswith("/git-receive-pack") or "service=git-receive-pack" in query:
        return "receive"
    return "upload"


def decode_body(body: bytes, content_encoding: str | None) -> bytes:
    """git gzips large request bodies; http-backend gets them plain."""
    if (content_encoding or "").lower() in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    return body


def _cgi_env(project_root: Path, path_info: str, method: str, query: str,
             headers: Mapping[str, str], length: int, remote_user: str | None,
             remote_addr: str) -> dict:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(project_root),
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_PROJECT_ROOT": str(project_root), "GIT_HTTP_EXPORT_ALL": "1",
           "PATH_INFO": path_info, "REQUEST_METHOD": method, "QUERY_STRING": query,
           "CONTENT_TYPE": headers.get("Content-Type", ""), "CONTENT_LENGTH": str(length),
           "REMOTE_ADDR": remote_addr, "GATEWAY_INTERFACE": "CGI/1.1",
           "SERVER_PROTOCOL": "HTTP/1.1"}
    if remote_user:
        env["REMOTE_USER"] = remote_user
    if headers.get("Git-Protocol"):
        env["GIT_PROTOCOL"] = headers["Git-Protocol"]
        env["HTTP_GIT_PROTOCOL"] = headers["Git-Protocol"]
    return env


def _parse_cgi_head(stream: BinaryIO) -> tuple[int, list[tuple[str, str]]]:
    status, headers = 200, []
    while True:
        line = stream.readline()
        if not line or line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((name, value))
    return status, headers


def serve(*, project_root: Path, path_info: str, method: str, query: str,
          headers: Mapping[str, str], body: bytes, remote_user: str | None, remote_addr: str,
          start_response: Callable[[int, list[tuple[str, str]]], None], out: BinaryIO) -> int:
    """Run http-backend for one request; ``start_response`` sends status+headers, then the body
    is copied to ``out`` as it is produced. Returns the HTTP status sent."""
    body = decode_body(body, headers.get("Content-Encoding"))
    env = _cgi_env(project_root, path_info, method, query, headers, len(body), remote_user,
                   remote_addr)
    proc = subprocess.Popen(backend_path(), env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    errors: list[bytes] = []

    def feed() -> None:
        try:
            proc.stdin.write(body)
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()

    threads = [threading.Thread(target=feed, daemon=True),
               threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)]
    for t in threads:
        t.start()
    try:
        status, cgi_headers = _parse_cgi_head(proc.stdout)
        start_response(status, cgi_headers)
        while chunk := proc.stdout.read1(65536):
            out.write(chunk)
        out.flush()
    finally:
        proc.stdout.close()
        proc.wait(timeout=60)
        for t in threads:
            t.join(timeout=5)
    return status
