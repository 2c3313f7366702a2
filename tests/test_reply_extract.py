"""Plain-text reply extraction: each rule, on mail written for these tests (no shared corpus needed)."""
from __future__ import annotations

import dataclasses

import pytest

from inbound.reply import Extraction, extract_reply, extract_reply_text, is_attribution

REPLY = "Thanks, merged locally and it works."


def _reply_over(history: str) -> Extraction:
    return extract_reply(f"{REPLY}\n\n{history}")


# --- attributions, one per language and client ---------------------------------------------

ATTRIBUTIONS = {
    "en-gmail": "On Tue, Jun 5, 2018 at 12:22 PM Foo Bar <foo@bar.com> wrote:",
    "en-apple": "On 5 Jun 2018, at 12:22, Foo Bar <foo@bar.com> wrote:",
    "en-thunderbird": "On 05/06/2018 12:22, Foo Bar wrote:",
    "de-thunderbird": "Am 05.06.2018 um 12:22 schrieb Foo Bar:",
    "de-gmail": "Am Di., 5. Juni 2018 um 12:22 Uhr schrieb Foo Bar <foo@bar.com>:",
    "de-name-first": "Foo Bar <foo@bar.com> schrieb am Di., 5. Juni 2018, 12:22:",
    "fr": "Le mar. 5 juin 2018 à 12:22, Foo Bar <foo@bar.com> a écrit :",
    "es": "El mar., 5 jun. 2018 a las 12:22, Foo Bar (<foo@bar.com>) escribió:",
    "it": "Il giorno mar 5 giu 2018 alle ore 12:22 Foo Bar <foo@bar.com> ha scritto:",
    "pt": "Em ter., 5 de jun. de 2018 às 12:22, Foo Bar <foo@bar.com> escreveu:",
    "nl": "Op di 5 jun. 2018 om 12:22 schreef Foo Bar <foo@bar.com>:",
    "nl-apple": "Op 5 jun. 2018 om 12:22 heeft Foo Bar <foo@bar.com> het volgende geschreven:",
    "sv": "Den tis 5 juni 2018 kl 12:22 skrev Foo Bar <foo@bar.com>:",
    "no": "tir. 5. jun. 2018 kl. 12:22 skrev Foo Bar <foo@bar.com>:",
    "da": "Den 5. jun. 2018 kl. 12.22 skrev Foo Bar <foo@bar.com>:",
    "pl-gmail": "wt., 5 cze 2018 o 12:22 Foo Bar <foo@bar.com> napisał(a):",
    "pl-thunderbird": "W dniu 05.06.2018 o 12:22, Foo Bar pisze:",
    "ru-gmail": "вт, 5 июн. 2018 г. в 12:22, Foo Bar <foo@bar.com>:",
    "ru-apple": "5 июня 2018 г., в 12:22, Foo Bar <foo@bar.com> написал(а):",
    "uk": "вт, 5 черв. 2018 о 12:22 Foo Bar <foo@bar.com> пише:",
    "zh-gmail": "Foo Bar <foo@bar.com> 于2018年6月5日周二 下午12:22写道：",
    "zh-apple": "在 2018年6月5日，下午12:22，Foo Bar <foo@bar.com> 写道：",
    "ja-gmail": "2018年6月5日(火) 12:22 Foo Bar <foo@bar.com>:",
    "ja-apple": "2018/06/05 12:22、Foo Bar <foo@bar.com>のメール:",
}


@pytest.mark.parametrize("attribution", ATTRIBUTIONS.values(), ids=ATTRIBUTIONS.keys())
def test_attribution_and_quote_are_cut(attribution):
    result = _reply_over(f"{attribution}\n> PR #1 is ready.\n")
    assert result == Extraction(REPLY, f"{attribution}\n> PR #1 is ready.")


@pytest.mark.parametrize("attribution", ATTRIBUTIONS.values(), ids=ATTRIBUTIONS.keys())
def test_attribution_before_unquoted_history_is_cut(attribution):
    result = _reply_over(f"{attribution}\n\nPR #1 is ready.\nPlease review.")
    assert result.text == REPLY
    assert result.cut == f"{attribution}\n\nPR #1 is ready.\nPlease review."


@pytest.mark.parametrize("wrapped", [
    "On Tue, Jun 5, 2018 at 12:22 PM Foo Bar <\nfoo@bar.com> wrote:",
    "On Tue, Jun 5, 2018 at 12:22 PM Foo Bar\n<foo@bar.com>\nwrote:",
    "Le mar. 5 juin 2018 à 12:22, Foo Bar\n<foo@bar.com> a écrit :",
    "Foo Bar <foo@bar.com> schrieb am Di., 5.\nJuni 2018 um 12:22 Uhr:",
    "2018-06-05 12:22 GMT+02:00 Foo Bar <\nfoo@bar.com>:",
])
def test_attribution_wrapped_over_lines(wrapped):
    result = _reply_over(f"{wrapped}\n\n> PR #1 is ready.")
    assert result == Extraction(REPLY, f"{wrapped}\n\n> PR #1 is ready.")


def test_attribution_with_no_break_spaces():
    attribution = "On\xa0Tue, Jun\xa05, 2018 at\xa012:22\xa0PM Foo <foo@bar.com>\xa0wrote:"
    assert _reply_over(f"{attribution}\n> quoted") == Extraction(REPLY, f"{attribution}\n> quoted")


@pytest.mark.parametrize("line", [
    "On Monday I will deploy.",
    "At 10:30 the build failed:",
    "As Bob wrote:",
    "Email me at bob@example.com:",
    "On second thought, the fix from 2019 works:",
    "Am Ende schrieb er:",
    "Le code est cassé:",
])
def test_prose_is_not_an_attribution(line):
    assert not is_attribution(line)
    body = f"First paragraph.\n\n{line}\n\nmore of my reply\nand the end"
    assert extract_reply(body) == Extraction(body, "")


# --- embedded headers, original-message and forward markers --------------------------------

HEADER_BLOCKS = {
    "en": "From: Foo <foo@bar.com>\nSent: Tuesday, June 5, 2018 12:22 PM\nTo: Bar <bar@baz.com>\nSubject: Re: PR #1",
    "en-bold": "*From:* Foo <foo@bar.com>\n*Sent:* Tuesday, June 5, 2018 12:22 PM\n*To:* Bar\n*Subject:* Re: PR #1",
    "de": "Von: Foo <foo@bar.com>\nGesendet: Dienstag, 5. Juni 2018 12:22\nAn: Bar <bar@baz.com>\nBetreff: AW: PR #1",
    "fr": "De : Foo <foo@bar.com>\nEnvoyé : mardi 5 juin 2018 12:22\nÀ : Bar <bar@baz.com>\nObjet : RE: PR #1",
    "es": "De: Foo <foo@bar.com>\nEnviado: martes, 5 de junio de 2018 12:22\nPara: Bar <bar@baz.com>\nAsunto: RE: PR #1",
    "it": "Da: Foo <foo@bar.com>\nInviato: martedì 5 giugno 2018 12:22\nA: Bar <bar@baz.com>\nOggetto: R: PR #1",
    "nl": "Van: Foo <foo@bar.com>\nVerzonden: dinsdag 5 juni 2018 12:22\nAan: Bar <bar@baz.com>\nOnderwerp: RE: PR #1",
    "sv": "Från: Foo <foo@bar.com>\nSkickat: den 5 juni 2018 12:22\nTill: Bar <bar@baz.com>\nÄmne: SV: PR #1",
    "no": "Fra: Foo <foo@bar.com>\nSendt: tirsdag 5. juni 2018 12:22\nTil: Bar <bar@baz.com>\nEmne: SV: PR #1",
    "pl": "Od: Foo <foo@bar.com>\nWysłano: wtorek, 5 czerwca 2018 12:22\nDo: Bar <bar@baz.com>\nTemat: RE: PR #1",
    "ru": "От: Foo <foo@bar.com>\nОтправлено: 5 июня 2018 г. 12:22\nКому: Bar <bar@baz.com>\nТема: RE: PR #1",
    "uk": "Від: Foo <foo@bar.com>\nНадіслано: 5 червня 2018 р. 12:22\nКому: Bar <bar@baz.com>\nТема: RE: PR #1",
    "zh": "发件人: Foo <foo@bar.com>\n发送时间: 2018年6月5日 12:22\n收件人: Bar <bar@baz.com>\n主题: 回复: PR #1",
    "ja": "差出人: Foo <foo@bar.com>\n送信日時: 2018年6月5日 12:22\n宛先: Bar <bar@baz.com>\n件名: RE: PR #1",
}


@pytest.mark.parametrize("block", HEADER_BLOCKS.values(), ids=HEADER_BLOCKS.keys())
def test_outlook_header_block_ends_the_reply(block):
    history = f"________________________________\n{block}\n\nPR #1 is ready."
    assert _reply_over(history) == Extraction(REPLY, history)


def test_header_block_with_a_wrapped_subject():
    history = "From: Foo <foo@bar.com>\nDate: Tue, Jun 5, 2018 at 12:22 PM\nSubject: a subject that\nspans two lines\nTo: bar@baz.com\n\nOld."
    assert _reply_over(history) == Extraction(REPLY, history)


def test_lone_header_like_lines_are_text():
    body = "Subject: the flaky test\nTo: whoever picks this up\n\nIt fails on Mondays."
    assert extract_reply(body) == Extraction(body, "")


@pytest.mark.parametrize("marker", [
    "-----Original Message-----",
    "----- Original Message -----",
    "*-------- Original Message --------*",
    "-----Ursprüngliche Nachricht-----",
    "-----Message d'origine-----",
    "-----Mensaje original-----",
    "-----Messaggio originale-----",
    "-----Mensagem original-----",
    "-----Oorspronkelijk bericht-----",
    "-----Ursprungligt meddelande-----",
    "-----Opprinnelig melding-----",
    "-----Wiadomość oryginalna-----",
    "-----Исходное сообщение-----",
    "------------------ 原始邮件 ------------------",
    "---------- Forwarded message ---------",
    "---------- Weitergeleitete Nachricht ---------",
    "Begin forwarded message:",
    "Anfang der weitergeleiteten Nachricht:",
    "Début du message réexpédié :",
    "Inicio del mensaje reenviado:",
])
def test_original_and_forwarded_markers_end_the_reply(marker):
    history = f"{marker}\nPR #1 is ready.\nPlease review."
    assert _reply_over(history) == Extraction(REPLY, history)


def test_forward_without_comment_keeps_the_forwarded_text():
    body = ("---------- Forwarded message ---------\nFrom: Foo <foo@bar.com>\n"
            "Date: Tue, Jun 5, 2018 at 12:22 PM\nSubject: PR #1\nTo: <bar@baz.com>\n\n\nPlease look at this.")
    assert extract_reply(body).text == "Please look at this."


# --- signatures -----------------------------------------------------------------------------

@pytest.mark.parametrize("dash", ["-- ", "--"])
def test_sig_dash_ends_the_reply(dash):
    body = f"{REPLY}\n\n{dash}\nBob Smith\nACME Inc.\n+1 555 0100"
    assert extract_reply(body) == Extraction(REPLY, f"{dash}\nBob Smith\nACME Inc.\n+1 555 0100")


def test_delimiter_before_a_short_signature_ends_the_reply():
    assert _reply_over("______________\nBob Smith\nACME Inc.") == Extraction(REPLY, "______________\nBob Smith\nACME Inc.")


def test_delimiter_before_a_long_text_is_kept():
    body = f"{REPLY}\n\n---\n\n" + "\n".join(f"Point {n} of my review." for n in range(1, 9))
    assert extract_reply(body) == Extraction(body, "")


def test_a_short_rule_is_markdown_not_a_signature_delimiter():
    """And it gets a blank line above, or Markdown would make the line before it a heading."""
    assert extract_reply("Looks good.\n---\nOne nit: rename foo.\n\n> PR #1") == Extraction(
        "Looks good.\n\n---\nOne nit: rename foo.", "> PR #1"
    )


@pytest.mark.parametrize("signature", [
    "Sent from my iPhone", "Sent from my iPad", "Sent from my Samsung Galaxy smartphone.",
    "Sent from my Android phone", "Get Outlook for iOS", "Get Outlook for Android",
    "Sent from Mail for Windows", "Von meinem iPhone gesendet", "Envoyé de mon iPhone",
    "Envoyé depuis mon iPhone", "Enviado desde mi iPhone", "Enviado do meu iPhone", "Inviato da iPhone",
    "Verzonden met mijn iPhone", "Skickat från min iPhone", "Sendt fra min iPhone", "Wysłane z iPhone'a",
    "Отправлено с iPhone", "Надіслано з iPhone", "从我的iPhone发送", "iPhoneから送信",
    "Get [Outlook for Android](https://aka.ms/ghei36)",
])
def test_mobile_signature_is_cut(signature):
    assert _reply_over(signature) == Extraction(REPLY, signature)
    history = f"{signature}\n\nOn Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n> PR #1 is ready."
    assert _reply_over(history) == Extraction(REPLY, history)


def test_mobile_signature_followed_by_text_is_kept():
    body = "Sent from my iPhone while travelling, sorry for the delay.\n\nThe fix looks right."
    assert extract_reply(body) == Extraction(body, "")


# --- quotes -----------------------------------------------------------------------------------

def test_nested_quotes_are_cut_with_their_attribution():
    history = ("On Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n> Ready?\n>\n"
               "> On Mon, Jun 4, 2018 at 9:00 AM Bar <bar@baz.com> wrote:\n>> Almost.\n>>> Start.\n> > > > deep")
    assert _reply_over(history) == Extraction(REPLY, history)


def test_trailing_quote_without_attribution_is_cut():
    assert _reply_over("> PR #1 is ready.\n>> older") == Extraction(REPLY, "> PR #1 is ready.\n>> older")


def test_inline_reply_keeps_quotes_as_markdown():
    body = ("On Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n"
            "> Can you fix X?\n> It breaks the build.\n\nYes, fixed in abc123.\n\n"
            "> And Y?\nNot yet, tomorrow.\n\n> Thanks!\n> Foo\n")
    assert extract_reply(body) == Extraction(
        "> Can you fix X?\n> It breaks the build.\n\nYes, fixed in abc123.\n\n> And Y?\n\nNot yet, tomorrow.",
        "On Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n\n> Thanks!\n> Foo",
    )


def test_inline_reply_after_a_greeting_keeps_quotes():
    body = ("Hi Foo,\n\nOn Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n> point one\n\nanswer one\n\n"
            "> point two\n\nanswer two\n\n-- \nBob")
    assert extract_reply(body) == Extraction(
        "Hi Foo,\n\n> point one\n\nanswer one\n\n> point two\n\nanswer two",
        "On Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n\n-- \nBob",
    )


def test_leading_quote_then_text_is_kept():
    body = "> The build is red.\n\nIt is green again now."
    assert extract_reply(body) == Extraction(body, "")


def test_quote_glued_to_text_gets_a_blank_line():
    """Without it Markdown would continue the quote into the answer."""
    assert extract_reply("> The build is red.\nFixed.") == Extraction("> The build is red.\n\nFixed.", "")


def test_bottom_post_keeps_only_the_answer():
    """Attribution + the whole quoted mail, answer below: the quote goes to `cut` (Discourse's rule)."""
    body = "On Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n> PR #1 is ready.\n> Please review.\n\nLooks good."
    assert extract_reply(body) == Extraction(
        "Looks good.", "On Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n> PR #1 is ready.\n> Please review."
    )


def test_only_quoted_history_extracts_to_nothing():
    body = "On Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n> PR #1 is ready.\n"
    assert extract_reply(body) == Extraction("", body.strip())


def test_only_quotes_of_quoted_attributions_extract_to_nothing():
    body = "> On Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n>\n>> Spam spam spam.\n"
    assert extract_reply(body).text == ""


def test_a_bare_quote_is_kept():
    """No attribution, no new text: nothing says it is history, so nothing is dropped."""
    assert extract_reply("> Quoting the docs here.\n") == Extraction("> Quoting the docs here.", "")


@pytest.mark.parametrize("body", ["", "   ", "\n\n\r\n"])
def test_blank_body(body):
    assert extract_reply(body) == Extraction("", "")


def test_only_a_signature_extracts_to_nothing():
    assert extract_reply("-- \nBob\n") == Extraction("", "-- \nBob")
    assert extract_reply("Sent from my iPhone") == Extraction("", "Sent from my iPhone")


def test_conservative_when_a_delimiter_would_eat_everything():
    body = "______________\nPlease merge this after CI passes."
    assert extract_reply(body) == Extraction(body, "")


# --- formatting ---------------------------------------------------------------------------------

def test_fenced_code_is_kept_verbatim():
    body = ("Try this:\n\n```\n> not a quote\n-- \n#####\nOn Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n```\n\n"
            "Thanks\n\nOn Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n> PR #1 is ready.")
    assert extract_reply(body).text == (
        "Try this:\n\n```\n> not a quote\n-- \n#####\nOn Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n```\n\nThanks"
    )


def test_indented_code_and_blank_lines_are_kept():
    body = "Use:\n\n    def f():\n        return 1\n\n\n    --\n    -----\n\nDone.\n\n> PR #1"
    assert extract_reply(body).text == "Use:\n\n    def f():\n        return 1\n\n\n    --\n    -----\n\nDone."


def test_leading_indentation_of_code_survives():
    body = "On Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n\n    x = 1\n\nlike that"
    assert extract_reply(body).text == "    x = 1\n\nlike that"


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\r\r\n", "\u2028"])
def test_line_endings_are_normalised(newline):
    body = newline.join(["Fine by me.", "", "Bob", "", "On Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:", "> hi", ""])
    assert extract_reply(body) == Extraction(
        "Fine by me.\n\nBob", "On Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n> hi"
    )


def test_cut_squeezes_blank_runs():
    body = "a\n\n\n\nOn Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n\n\n\n> x\n\n\n\n> y"
    assert extract_reply(body) == Extraction("a", "On Tue, Jun 5, 2018 at 12:22 PM Foo <foo@bar.com> wrote:\n\n> x\n\n> y")


def test_extract_reply_text_and_frozen_result():
    body = f"{REPLY}\n\n> old"
    assert extract_reply_text(body) == REPLY
    with pytest.raises(dataclasses.FrozenInstanceError):
        extract_reply(body).text = "x"
