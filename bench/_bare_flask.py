"""Baseline for bench/webhook_ingest.py: a Flask app whose POST /webhooks/github reads the body, answers 202.

Usage: python bench/_bare_flask.py gunicorn|werkzeug PORT [WORKERS]   (runs until SIGTERM/SIGINT)

Served the way the gateway serves its app: `gunicorn` exactly as `gateway web` configures it
(gateway/cli.py: BaseApplication, sync workers, bind, timeout 30, access log to stdout, the app
built in each worker after the fork); `werkzeug` as `gateway serve` does (gateway/runner.py:
``make_server(..., threaded=True)``).
"""
from __future__ import annotations

import signal
import sys
import threading

from flask import Flask, jsonify, request


def create_app() -> Flask:
    app = Flask("bare")

    @app.post("/webhooks/github")
    def github_webhook():
        body = request.get_data(cache=False)
        return jsonify({"ok": True, "delivery": request.headers.get("X-GitHub-Delivery", ""),
                        "bytes": len(body)}), 202

    return app


def main() -> None:
    server, port = sys.argv[1], int(sys.argv[2])
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    if server == "gunicorn":
        from gunicorn.app.base import BaseApplication

        class BareWeb(BaseApplication):
            def load_config(self):
                self.cfg.set("bind", f"127.0.0.1:{port}")
                self.cfg.set("workers", workers)
                self.cfg.set("timeout", 30)
                self.cfg.set("accesslog", "-")

            def load(self):
                return create_app()

        BareWeb().run()
        return
    from werkzeug.serving import make_server

    httpd = make_server("127.0.0.1", port, create_app(), threaded=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    stop.wait()
    httpd.shutdown()


if __name__ == "__main__":
    main()
