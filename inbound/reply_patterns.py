"""The vocabulary of reply extraction: what each kind of line looks like, in many languages.

This module only knows how to *recognise* one line (or a few wrapped lines joined
into one): an attribution ("On <date>, <name> wrote:"), a forwarded/original-message
marker, a header of an embedded mail (From:/Sent:/To:/Subject: and translations),
a mobile signature ("Sent from my iPhone") or a delimiter line.
Deciding what to cut from those classifications is ``inbound.reply``'s job.

Every pattern is compiled once, at import.  They are anchored at the start of the
stripped line or tried on its last few characters only, and the costly ones run
behind cheap string checks, because the extractor sees every line of every reply.
"""
from __future__ import annotations

import re

# --- attributions: "On <date>, <name> wrote:" and its relatives --------------------------

# Words that end an attribution, lower-case, single-spaced.  Latin/Cyrillic ones need a word
# boundary before them; the CJK ones follow a date or name directly ("下午12:22写道：").
VERB_PHRASES = tuple(
    "wrote|schrieb|schreef|het volgende geschreven|geschrieben|schrieben sie|a écrit|a ecrit|nous a dit"
    "|escribió|escribio|ha scritto|escreveu|skrev|skrev følgende|skrev folgende|napisał(a)|napisała|napisał"
    "|pisze|napsal(a)|napsal|kirjoitti|έγραψε|yazdı|написал(а)|написала|написал|пишет|написав(ла)|написав|пише"
    .split("|")
)
CJK_VERB_ENDINGS = ("写道", "寫道", "のメール", "書きました")
# What may trail the verb: "wrote:", "a écrit :", "wrote ----", "写道：".
ATTRIBUTION_TRAIL = " \t\xa0\u202f:：.>*-"
# Cheap pre-checks: the last word of a line, or its CJK ending.
FINAL_VERB_SET = frozenset(phrase.rsplit(" ", 1)[-1] for phrase in VERB_PHRASES)
VERB_ENDINGS = tuple(FINAL_VERB_SET) + CJK_VERB_ENDINGS
# Verbs that come before the date in "Name <address> wrote on <date>:" (Gmail, name first).
NAME_FIRST_VERBS = (" wrote ", " schrieb ", " a écrit ", " escribió ", " ha scritto ", " escreveu ", " schreef ", " skrev ")

# Words an attribution starts with, per language (Thunderbird, Apple Mail, Gmail, Outlook).
_OPENERS = r"On|At|In\s+message|Am|Le|El|En|Il(?:\s+giorno)?|Em|No\s+dia|Op|Den|Dnia|Dňa|W\s+dniu|Dne|Pe|Στις|Quoting|Citando|Zitat\s+von|在"
OPENER = re.compile(rf"[-*\s]*(?:{_OPENERS})\s")
# Their first words, for a set look-up before the regex.
OPENER_WORDS = frozenset("On At In Am Le El En Il Em No Op Den Dnia Dňa W Dne Pe Στις Quoting Citando Zitat 在".split())
# A date-like start: "2016-10-24 ...", "вт, 5 янв. 2016", "søn. 30. apr. 2017", "понедельник, 6 ...".
DATE_START = re.compile(r"[-*\s]*(?:\d|[^\W\d_]{1,12}\.?,?\s+\d)")
# A year or a clock time somewhere in the line.
DATE_EVIDENCE = re.compile(r"(?:19|20)\d\d|\d{1,2}[:.h]\d\d")
TIME = re.compile(r"\d{1,2}[:.]\d\d")
NUMERIC_DATE = re.compile(r"[-*\s]*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
# Germanic word order: "Am <date> schrieb <name>:", "Den <date> skrev <name>:".
VERB_IN_MIDDLE = re.compile(r"(?P<pre>.*?)\s(?:schrieb|schreef|skrev)\s.+[:：]\s*$")
# Name first: "Max <m@x.org> schrieb am Fr., 28. Apr. 2017 um 11:53 Uhr:".
NAME_FIRST = re.compile(
    r".+?\s(?:wrote|schrieb|a\s+écrit|escribió|ha\s+scritto|escreveu|schreef|skrev)\s+"
    r"(?:on|am|le|el|il|em|op|den)\s(?=.*\d).*[:：]\s*$",
    re.IGNORECASE,
)
NAME_FIRST_START = re.compile(
    r"\s(?:wrote|schrieb|a\s+écrit|escribió|ha\s+scritto|escreveu|schreef|skrev)\s+(?:on|am|le|el|il|em|op|den)\s",
    re.IGNORECASE,
)
# Date, name and address, no verb: "2013/7/20 sam <x@y.org>", "вт, 5 янв. 2016 г. в 23:39, X <x@y.org>:".
ENDS_WITH_ADDRESS = re.compile(r"(?:<\s*[^\s<>]+@[^\s<>]+>+|\(\s*[^\s()]+@[^\s()]+\))\s*[:：]?$")
# Old Gmail: "2016-03-03 17:21 GMT+01:00 Some One".
ISO_GMT = re.compile(r"\d{4}-\d\d-\d\d \d{1,2}:\d\d GMT[+-]\d\d:\d\d\s+\S")
# Apple Mail, Polish: "Wiadomość napisana przez X w dniu <date>:".
POLISH_APPLE = re.compile(r"Wiadomość napisana przez .+? w dniu (?=.*\d).*:\s*$")
QUOTING = re.compile(r"(?:Quoting|Citando|Zitat von|Citation de|Cytuję)\s.+@.+:\s*$")

# "-----Original Message-----", "---------- Forwarded message ---------", "Begin forwarded message:".
_DASHED_MARKERS = (
    r"Original\s+Message|Forwarded\s+Message|Reply\s+Message|Original\s+Email"
    r"|Ursprüngliche\s+Nachricht|Weitergeleitete\s+Nachricht|Originalnachricht"
    r"|Message\s+d'origine|Message\s+original|Message\s+transféré"
    r"|Mensaje\s+original|Mensaje\s+reenviado|Messaggio\s+originale|Messaggio\s+inoltrato"
    r"|Mensagem\s+original|Mensagem\s+encaminhada|Mensagem\s+reencaminhada"
    r"|Oorspronkelijk\s+bericht|Origineel\s+bericht|Doorgestuurd\s+bericht"
    r"|Ursprungligt\s+meddelande|Vidarebefordrat\s+meddelande"
    r"|Opprinnelig\s+melding|Videresendt\s+melding|Oprindelig\s+meddelelse|Videresendt\s+meddelelse"
    r"|Wiadomość\s+oryginalna|Oryginalna\s+wiadomość|Przekazana\s+wiadomość|Treść\s+przekazanej\s+wiadomości"
    r"|Původní\s+zpráva|Přeposlaná\s+zpráva"
    r"|Исходное\s+сообщение|Пересылаемое\s+сообщение|Пересланное\s+сообщение"
    r"|Оригінальне\s+повідомлення|Початкове\s+повідомлення|Пересилане\s+повідомлення|Переслане\s+повідомлення"
    r"|原始邮件|原始郵件|原邮件|转发邮件|轉寄郵件|転送メッセージ|元のメッセージ|原文"
)
_LEAD_MARKERS = (
    r"Begin\s+forwarded\s+message|Début\s+du\s+message\s+(?:transféré|réexpédié)"
    r"|Anfang\s+der\s+weitergeleiteten\s+(?:Nachricht|E-Mail)|Inicio\s+del\s+mensaje\s+reenviado"
    r"|Comienzo\s+del\s+mensaje\s+reenviado|Inizio\s+messaggio\s+inoltrato"
    r"|Início\s+da\s+mensagem\s+(?:reencaminhada|encaminhada)|Begin\s+doorgestuurd\s+bericht"
    r"|Vidarebefordrat\s+(?:mejl|brev|meddelande)|Videresendt\s+(?:melding|meddelelse|e-mail)"
    r"|Początek\s+przekazywanej\s+wiadomości|Начало\s+переадресованного\s+сообщения"
    r"|Початок\s+пересланого\s+(?:повідомлення|листа)|转发的邮件|以下是转发的邮件|転送されたメッセージ"
)
DASHED_MARKER = re.compile(
    rf"[\s>*]*+(?:-{{2,}}+|_{{2,}}+)\s*+(?:{_DASHED_MARKERS})\s*+(?:-{{2,}}+|_{{2,}}+)?[\s*_]*+$"
    rf"|[\s>*]*+(?:{_DASHED_MARKERS})\s*+(?:-{{2,}}+|_{{2,}}+)[\s*_]*+$",
    re.IGNORECASE,
)
LEAD_MARKER = re.compile(rf"[\s>*]*+(?:{_LEAD_MARKERS})\s*+[:：]?\s*+$", re.IGNORECASE)
LEAD_MARKER_MAX = 60

# --- headers of an embedded mail (Outlook, forwarded messages) --------------------------

_HEADER_ROLES = {
    "from": "From Von De Da Van Från Fra Od От Від 发件人 發件人 寄件者 差出人 Expéditeur Afzender Lähettäjä Feladó 보낸사람",
    "date": "Sent Date Gesendet Datum Envoyé Enviado Enviada Fecha Inviato Data Verzonden Skickat Sendt"
            " Wysłano Wysłane Odesláno Отправлено Дата Надіслано 发送时间 發送時間 寄件日期 日期 送信日時 日付 Le",
    "to": "To An À A Para Aan Till Til Do Komu Кому 收件人 收件者 宛先 Destinataire",
    "cc": "Cc CC Kopie Kopia Copie DW Копия Копія 抄送 副本",
    "subject": "Subject Betreff Objet Asunto Assunto Oggetto Onderwerp Ämne Emne Temat Předmět"
               " Тема 主题 主旨 件名 Sujet",
    "reply": "Reply-To Répondre Risposta Antwort Beantwoorden",
}
_MULTIWORD_KEYS = {"date": ["Enviada em", "Data de envio"], "from": ["보낸 사람"],
                   "reply": ["Répondre à", "Antwort an", "Beantwoorden - Aan"]}
HEADER_ROLE = {}
for _role, _words in _HEADER_ROLES.items():
    for _word in _words.split() + _MULTIWORD_KEYS.get(_role, []):
        HEADER_ROLE[_word.casefold()] = _role

# --- signatures and delimiters --------------------------------------------------------------

DELIMITER = re.compile(r"[-_=+~#*,ᐧ—–•·]+(?:\s+[-_=+~#*ᐧ—–•·]+)*\s*$")
DELIMITER_CHARS = frozenset("-_=+~#*,ᐧ—–•·")
# "Richard> text", "C>": supercite-style quoting, not Markdown.
WEAK_QUOTE = re.compile(r"[A-Za-z][\w.-]{0,15}>(?:\s|$)")
# First words a mobile signature can start with (lower-cased), for a set look-up before the regex.
MOBILE_SIGNATURE_WORDS = frozenset(
    "sent get from envoyé téléchargez von gesendet diese enviado obtener inviato scarica verzonden"
    " verstuurd skickat sendt wysłane отправлено надіслано".split()
)
MOBILE_SIGNATURE_PREFIXES = ("(", "<", "[", "从我的", "發自我的", "從我的")
MOBILE_SIGNATURE = re.compile(
    r"[(<\[\s]*sent\s+(?:from|via|with|by|using)\s.+"
    r"|\w+\s+from\s+mobile\b.*|from\s+my\s+(?:i?phone|ipad|ipod|android|samsung|galaxy|mobile|cell|blackberry"
    r"|tablet|smartphone|htc|nokia|pixel|huawei|xiaomi|oneplus|sony|motorola)\b.*"
    r"|get\s+outlook\s+for\b.*|sent\s+from\s+mail\s+for\s+windows.*"
    r"|envoyé\s+(?:depuis|de|avec)\s+(?:mon|ma|l'|Yahoo|Outlook|Mail).*|téléchargez\s+outlook\b.*"
    r"|von\s+meinem\s+.{1,60}\s+gesendet.*|gesendet\s+(?:von|mit)\s+(?:meinem|der|Outlook).*"
    r"|diese\s+nachricht\s+wurde\s+von\s+.+\s+gesendet.*"
    r"|enviado\s+(?:desde|do|de|con)\s+(?:mi|meu|o|a|el|Outlook|Yahoo|Correo).*|obtener\s+outlook\s+para\b.*"
    r"|inviato\s+da\s.+|scarica\s+outlook\s+per\b.*"
    r"|verzonden\s+(?:met|vanaf|via)\s.+|verstuurd\s+(?:vanaf|met)\s.+"
    r"|skickat\s+från\s.+|sendt\s+fra\s.+"
    r"|wysłane\s+(?:z|ze)\s.+|отправлено\s+(?:с|из|со)\s.+|надіслано\s+(?:з|із|зі)\s.+"
    r"|从我的.{1,30}发送.*|發自我的.{1,30}|從我的.{1,30}傳送.*|.{1,30}から送信.*",
    re.IGNORECASE,
)
MOBILE_SIGNATURE_MAX = 120
MARKDOWN_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
