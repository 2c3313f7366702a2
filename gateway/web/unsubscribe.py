"""One-click unsubscribe (RFC 8058). GET shows a page with a button and changes nothing;
POST (the button, or a mail client's List-Unsubscribe-Post) unsubscribes at once."""
from __future__ import annotations

from html import escape

from flask import Blueprint, current_app

from gateway.flows import unsubscribe as flow

bp = Blueprint("unsubscribe", __name__)

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}
button{{font:inherit;padding:.5rem 1rem}}</style></head><body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200):
    return _PAGE.format(title=escape(title), body=body), status, {"Content-Type": "text/html; charset=utf-8",
                                                                   "Cache-Control": "no-store"}


@bp.get("/unsubscribe/<token>")
def confirm(token: str):
    found = flow.describe(current_app.config["GATEWAY"], token)
    if found is None:
        return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
    pr, masked, already = found
    if already:
        return _page("Unsubscribed", f"<p>{escape(masked)} gets no more mail about {escape(pr)}.</p>")
    return _page("Unsubscribe", f"<p>Stop mail about {escape(pr)} to {escape(masked)}? "
                 "You can still reply to earlier mails to comment.</p>"
                 '<form method="post"><button type="submit">Unsubscribe</button></form>')


@bp.post("/unsubscribe/<token>")
def unsubscribe(token: str):
    if not flow.unsubscribe(current_app.config["GATEWAY"], token):
        return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
    return _page("Unsubscribed", "<p>You will get no more mail about this pull request.</p>")
