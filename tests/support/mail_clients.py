"""Replies shaped the way real mail clients send them, built with email.message.

Each takes the notification the reporter received and what they typed, and
returns the bytes their client would hand to its MTA: quoted history,
attribution line, signature and all.
"""
from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from html import escape

NOTIFICATION_DATE = "Sat, Nov 21, 2026 at 10:00 AM"


def _reply_headers(notification: EmailMessage, *, sender: str, to: str | None = None, domain: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to or notification["Reply-To"]
    message["Subject"] = "Re: " + notification["Subject"]
    message["Date"] = "Sat, 21 Nov 2026 10:05:00 +0000"
    message["Message-ID"] = make_msgid(domain=domain)
    message["In-Reply-To"] = notification["Message-ID"]
    message["References"] = notification["Message-ID"]
    return message


def _quoted_plain(notification: EmailMessage) -> str:
    body = notification.get_body(("plain",)).get_content()
    return "\n".join("> " + line if line else ">" for line in body.splitlines())


def gmail(notification, text, *, sender="Ann Reporter <ann@example.com>", to=None, html_only=False):
    message = _reply_headers(notification, sender=sender, to=to, domain="mail.gmail.com")
    attribution = f"On {NOTIFICATION_DATE} Gateway <{notification['From']}> wrote:"
    plain = f"{text}\n\n{attribution}\n\n{_quoted_plain(notification)}\n"
    html = (f'<div dir="ltr">{escape(text).replace(chr(10), "<br>")}</div><br>'
            f'<div class="gmail_quote"><div dir="ltr" class="gmail_attr">{escape(attribution)}<br></div>'
            f'<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid '
            f'rgb(204,204,204);padding-left:1ex">{notification.get_body(("html",)).get_content()}</blockquote></div>')
    if html_only:
        message.set_content(html, subtype="html")
    else:
        message.set_content(plain)
        message.add_alternative(html, subtype="html")
    return message


def outlook(notification, text, *, sender="Ann Reporter <ann@example.com>", charset="windows-1252"):
    message = _reply_headers(notification, sender=sender, domain="outlook.com")
    header_block = (f"From: Gateway <{notification['From']}>\nSent: Saturday, November 21, 2026 10:00 AM\n"
                    f"To: Ann Reporter <ann@example.com>\nSubject: {notification['Subject']}")
    plain = f"{text}\n\n________________________________\n{header_block}\n\n" \
            f"{notification.get_body(('plain',)).get_content()}"
    html = (f'<html><body><div style="font-family:Calibri">{escape(text)}</div>'
            f'<div id="appendonsend"></div><hr style="display:inline-block;width:98%">'
            f'<div id="divRplyFwdMsg" dir="ltr"><b>From:</b> Gateway<br><b>Sent:</b> Saturday<br>'
            f'<b>Subject:</b> {escape(notification["Subject"])}</div><div>'
            f'{notification.get_body(("html",)).get_content()}</div></body></html>')
    message.set_content(plain, charset=charset)
    message.add_alternative(html, subtype="html", charset=charset)
    return message


def apple_mail(notification, text, *, sender="Ann Reporter <ann@example.com>"):
    message = _reply_headers(notification, sender=sender, domain="icloud.com")
    attribution = f"On 21 Nov 2026, at 10:00, Gateway <{notification['From']}> wrote:"
    message.set_content(f"{text}\n\n{attribution}\n\n{_quoted_plain(notification)}\n")
    message.add_alternative(
        f'<html><body><div>{escape(text)}</div><div><br><blockquote type="cite"><div>{escape(attribution)}</div>'
        f'{notification.get_body(("html",)).get_content()}</blockquote></div></body></html>', subtype="html")
    return message


def thunderbird(notification, text, *, sender="Ann Reporter <ann@example.com>", charset="utf-8"):
    message = _reply_headers(notification, sender=sender, domain="thunderbird.example.org")
    attribution = "On 21/11/2026 10:00, Gateway wrote:"
    message.set_content(f"{attribution}\n{_quoted_plain(notification)}\n\n{text}\n\n-- \nAnn Reporter\nQA lead\n",
                        charset=charset)
    return message


def ios_mail(notification, text, *, sender="Ann Reporter <ann@example.com>"):
    message = _reply_headers(notification, sender=sender, domain="icloud.com")
    attribution = f"On Nov 21, 2026, at 10:00 AM, Gateway <{notification['From']}> wrote:"
    message.set_content(f"{text}\n\nSent from my iPhone\n\n{attribution}\n\n{_quoted_plain(notification)}\n")
    return message


def german_latin1(notification, text, *, sender="Änne Müller <ann@example.com>"):
    message = _reply_headers(notification, sender=sender, domain="web.de")
    attribution = f"Am 21.11.2026 um 10:00 schrieb Gateway <{notification['From']}>:"
    message.set_content(f"{text}\n\n{attribution}\n{_quoted_plain(notification)}\n", charset="iso-8859-1")
    return message


def with_attachment(message: EmailMessage, filename: str, data: bytes) -> EmailMessage:
    message.add_attachment(data, maintype="text", subtype="plain", filename=filename)
    return message
