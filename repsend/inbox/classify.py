"""What came back to the bounce and opt-out addresses, sorted: pure functions on parsed messages.

``classify(msg)`` takes one ``email.message.EmailMessage`` (parsed with ``email.policy.default``) and
returns one ``Returned`` record saying what it is and whom it is about. No I/O, no clock: the readers
(``repsend.inbox.readers``) bring the messages, the send log decides what to do with the record.

In order, a message is:

1. a delivery status notification: RFC 3464 ``multipart/report; report-type=delivery-status``, its
   RFC 6533 global form (``message/global-delivery-status``, UTF-8 addresses), or the plain-text
   reports some servers still write (qmail, Exim without DSN, Japanese hosts): one ``Recipient`` per
   address it reports, each ``bounce`` (5.x.x), ``delayed`` (4.x.x) or ``delivered`` (2.x.x). The
   message's kind is the worst of its recipients';
2. a complaint: RFC 5965 ARF, ``report-type=feedback-report``;
3. an automatic reply: RFC 3834 ``Auto-Submitted`` other than ``no``, ``X-Autoreply``,
   ``X-Autorespond``, ``Precedence: auto_reply``, or an out-of-office subject (ja, en);
4. an opt-out: sent to a configured opt-out address, or a reply whose *new* text asks to stop (the
   quoted copy of our own mail, with its footer that explains how to stop, does not count);
5. anything else: ``other``.

A report before a reply: a DSN carries ``Auto-Submitted: auto-replied`` (RFC 3464 section 2.1) and
quotes the words of the mail it returns, so it must never be read as an auto-reply or an opt-out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import quopri
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, HeaderParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Literal

Kind = Literal["bounce", "delayed", "delivered", "complaint", "opt_out", "auto_reply", "other"]
KINDS: tuple[Kind, ...] = ("bounce", "delayed", "delivered", "complaint", "opt_out", "auto_reply", "other")
DeliveryKind = Literal["bounce", "delayed", "delivered"]

# Worst first: a report on three recipients is a bounce if any of them bounced.
_SEVERITY: dict[str, int] = {"bounce": 0, "delayed": 1, "delivered": 2}


@dataclass(frozen=True)
class Recipient:
    """One recipient of a delivery report."""

    address: str  # as it was sent to: the Original-Recipient when the report gives it, else the Final-Recipient
    kind: DeliveryKind  # by the status class: 5 bounce, 4 delayed, 2 delivered
    status: str | None  # "5.1.1"; "5.0.0" / "4.0.0" when a plain-text report gives only "550" / "450"
    action: str | None  # failed | delayed | delivered | relayed | expanded (None in plain-text reports)
    diagnostic: str | None = None  # the remote server's words, "smtp; 550 5.1.1 <x@y>: user unknown"
    final_address: str | None = None  # Final-Recipient, when it differs from the address sent to
    remote_mta: str | None = None
    # Read from a plain-text report rather than RFC 3464 fields: trust it only for an address the send
    # log shows was mailed (a report's text can name other addresses, its help desk's for one).
    from_text: bool = False


@dataclass(frozen=True)
class Returned:
    """One message that came back, sorted.

    ``addresses`` is whom it concerns, normalized as the send log compares them (trimmed, lower case):
    the recipients of the message's kind for a report (the bounced ones for a bounce), the complainant
    for a complaint, the From address for an opt-out or an auto-reply.
    """

    kind: Kind
    key: str  # what makes it "handled once": "<message-id>" or "sha256:<hex>" of the raw message
    reason: str  # why it was sorted so, in a few words for the summary ("Status 5.1.1", "the reply says 配信停止")
    addresses: tuple[str, ...] = ()
    recipients: tuple[Recipient, ...] = ()  # delivery reports only, one per reported recipient, any kind
    original_message_id: str | None = None  # of our mail: from the returned copy, else In-Reply-To/References
    envelope_id: str | None = None  # DSN Original-Envelope-Id (the ENVID given at MAIL FROM)
    envelope_to: tuple[str, ...] = ()  # where the report was delivered (the bounce address, VERP included)
    from_address: str | None = None
    subject: str = ""
    date: datetime | None = None
    feedback_type: str | None = None  # ARF Feedback-Type (abuse, fraud, ...)

    @property
    def status(self) -> str | None:
        return self._first().status if self._first() else None

    @property
    def action(self) -> str | None:
        return self._first().action if self._first() else None

    @property
    def diagnostic(self) -> str | None:
        return self._first().diagnostic if self._first() else None

    def _first(self) -> Recipient | None:
        """The first recipient of the message's own kind: the one its status and diagnostic are of."""
        return next((r for r in self.recipients if r.kind == self.kind), None)


@dataclass(frozen=True)
class Malformed:
    """Why a message cannot be sorted; the caller reports it with its place and skips it."""

    problem: str


def normalize(address: str) -> str:
    """Trimmed and lower case, the way the send log compares addresses (``models.normalize_email``)."""
    return address.strip().strip("<>").strip().lower()


# -- the entry points ----------------------------------------------------------------------------


def classify(msg: EmailMessage, opt_out_addresses: Iterable[str] = (), raw: bytes | None = None,
             own_domains: Iterable[str] = ()) -> Returned:
    """Sort one message. ``opt_out_addresses``: mail sent to one of them is an opt-out of its sender.
    ``raw``: the bytes as read, for the digest when the message has no Message-ID. ``own_domains``: the
    company's own (``[company] domain``, ``[mail] sender_domains``): a message from one of them is never
    an opt-out of its sender, it is a rep forwarding a customer's mail (``other``, for a person to read)."""
    key = message_key(msg, raw)
    common = _common(msg)
    report_type = (msg.get_param("report-type", header="content-type") or "") if msg.is_multipart() else ""
    report_type = str(report_type).lower()

    if report_type == "feedback-report" or _find_part(msg, FEEDBACK_TYPES):
        complaint = _complaint(msg, key, common)
        if complaint is not None:
            return complaint
    status_part = _find_part(msg, DSN_TYPES)
    if status_part is not None or report_type == "delivery-status":
        report = _dsn(msg, status_part, key, common)
        if report is not None:
            return report
    if _looks_like_bounce(msg):
        report = _plain_bounce(msg, key, common)
        if report is not None:
            return report
    auto = auto_reply_reason(msg)
    if auto:
        return Returned(kind="auto_reply", key=key, reason=auto, addresses=_from_list(common), **common)
    opt_out = opt_out_reason(msg, opt_out_addresses)
    if opt_out:
        sender_domain = (common["from_address"] or "").rpartition("@")[2]
        if sender_domain and sender_domain in {d.strip().lower().lstrip("@") for d in own_domains}:
            return Returned(kind="other", key=key, reason=f"{opt_out}, but from our own {sender_domain}: "
                            "a forward? the customer's address is inside", **common)
        return Returned(kind="opt_out", key=key, reason=opt_out, addresses=_from_list(common), **common)
    return Returned(kind="other", key=key, reason="not a report, an auto-reply or an opt-out", **common)


def problem_of(msg: Message) -> Malformed | None:
    """Why ``msg`` is too broken to sort, or None: the parser's defects that mean a lost part.

    A multipart whose closing boundary never comes was cut off (a full disk, a crashed fetch): what
    is there may lack the very recipient it reports, so it is reported and skipped rather than guessed at.
    """
    if not msg.keys():
        return Malformed("no header")
    if not any(_get(msg, h) for h in ("From", "Sender", "Return-Path", "Message-ID", "Date")):
        return Malformed("no From, Sender, Return-Path, Message-ID or Date header")
    for part in _walk(msg):
        for defect in part.defects:
            name = type(defect).__name__
            if name in ("StartBoundaryNotFoundDefect", "CloseBoundaryNotFoundDefect",
                        "MultipartInvariantViolationDefect", "NoBoundaryInMultipartDefect"):
                return Malformed(f"truncated or broken MIME structure ({_DEFECT_TEXT.get(name, name)})")
    return None


_DEFECT_TEXT = {
    "StartBoundaryNotFoundDefect": "the multipart boundary never appears",
    "CloseBoundaryNotFoundDefect": "the closing multipart boundary is missing",
    "MultipartInvariantViolationDefect": "a multipart without parts",
    "NoBoundaryInMultipartDefect": "a multipart without a boundary",
}


def message_key(msg: Message, raw: bytes | None = None) -> str:
    """The Message-ID when there is one (as ``<id>``), else a SHA-256 digest of the raw message."""
    mid = _message_id(_get(msg, "Message-ID"))
    if mid:
        return mid
    if raw is None:
        try:
            raw = msg.as_bytes(policy=policy.compat32)
        except Exception:  # a broken message: its text still has a digest
            raw = str(msg).encode("utf-8", "surrogateescape")
    # Line ends normalized: the same message read from a Maildir (LF) and over IMAP (CRLF) is one message.
    return "sha256:" + hashlib.sha256(raw.replace(b"\r\n", b"\n")).hexdigest()


# -- common fields -------------------------------------------------------------------------------


def _common(msg: EmailMessage) -> dict:
    from_addr = normalize(parseaddr(_header(msg, "From"))[1]) or None
    envelope_to = []
    for name in ("X-Original-To", "Delivered-To", "To"):
        for _, addr in getaddresses(_headers(msg, name)):
            if addr and normalize(addr) not in envelope_to:
                envelope_to.append(normalize(addr))
    date = None
    try:
        value = _header(msg, "Date")
        date = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError, IndexError):
        date = None
    return {
        "from_address": from_addr,
        "subject": _header(msg, "Subject"),
        "date": date,
        "envelope_to": tuple(envelope_to),
        "original_message_id": _replied_to(msg),
    }


def _from_list(common: dict) -> tuple[str, ...]:
    return (common["from_address"],) if common["from_address"] else ()


def _get(msg: Message, name: str) -> str | None:
    """A header's text, or None. A value the default policy cannot parse (a truncated address raises
    inside the header registry) comes back as its raw text: a broken header must not stop the sorting."""
    try:
        value = msg.get(name)
        return None if value is None else str(value)
    except Exception:
        return next((str(v) for k, v in msg.raw_items() if k.lower() == name.lower()), None)


def _header(msg: Message, name: str) -> str:
    """A header's decoded text on one line, or ""."""
    value = _get(msg, name)
    return " ".join(value.split()) if value is not None else ""


def _headers(msg: Message, name: str) -> list[str]:
    try:
        return [str(v) for v in (msg.get_all(name) or [])]
    except Exception:  # as in _get: the raw text of each
        return [str(v) for k, v in msg.raw_items() if k.lower() == name.lower()]


_MSGID = re.compile(r"<[^<>\s]+>")


def _message_id(value: object) -> str | None:
    if value is None:
        return None
    found = _MSGID.search(str(value))
    if found:
        return found.group(0)
    text = str(value).strip()
    return f"<{text}>" if text and " " not in text else None


def _replied_to(msg: Message) -> str | None:
    """The mail this one answers: In-Reply-To, else the last of References."""
    mid = _message_id(_get(msg, "In-Reply-To"))
    if mid:
        return mid
    refs = _MSGID.findall(_get(msg, "References") or "")
    return refs[-1] if refs else None


# -- walking a message without entering the copies it returns -------------------------------------

DSN_TYPES = ("message/delivery-status", "message/global-delivery-status", "text/delivery-status")
FEEDBACK_TYPES = ("message/feedback-report",)
ORIGINAL_TYPES = ("message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers",
                  "message/partial")


def _walk(msg: Message) -> Iterator[Message]:
    """Every part, but not inside a returned or forwarded message (its parts are someone else's)."""
    yield msg
    if msg.get_content_type() in ORIGINAL_TYPES or msg.get_content_type() in DSN_TYPES:
        return
    if msg.is_multipart():
        for part in msg.get_payload():  # type: ignore[union-attr]
            if isinstance(part, Message):
                yield from _walk(part)


def _find_part(msg: Message, types: tuple[str, ...]) -> Message | None:
    return next((p for p in _walk(msg) if p.get_content_type() in types), None)


def _text_parts(msg: Message) -> list[str]:
    """The text of every text/plain part that is the report's own (not the returned copy)."""
    texts = []
    for part in _walk(msg):
        if part.get_content_type() == "text/plain" and part.get_content_disposition() != "attachment":
            texts.append(_part_text(part))
    if not texts:  # an HTML-only report
        for part in _walk(msg):
            if part.get_content_type() == "text/html":
                texts.append(_html_text(_part_text(part)))
    return texts


def _part_text(part: Message) -> str:
    """A text part decoded with its charset; undecodable bytes replaced rather than fatal."""
    try:
        return part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError, KeyError, AttributeError, AssertionError):
        data = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "utf-8"
        try:
            return data.decode(charset, "replace")  # type: ignore[union-attr]
        except LookupError:
            return data.decode("utf-8", "replace")  # type: ignore[union-attr]


def _html_text(text: str) -> str:
    text = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", text)
    text = re.sub(r"(?i)<br\s*/?>|</(p|div|tr|li|h\d)>", "\n", text)
    return html.unescape(re.sub(r"<[^>]+>", " ", text))


def _original_headers(msg: Message) -> Message | None:
    """The headers of the returned copy of our mail (message/rfc822, text/rfc822-headers, ...)."""
    part = _find_part(msg, ORIGINAL_TYPES)
    if part is None:
        return None
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    if isinstance(payload, str):
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            return BytesHeaderParser(policy=policy.default).parsebytes(data)
        return HeaderParser(policy=policy.default).parsestr(payload)
    return None


def _original_message_id(msg: Message, texts: Iterable[str] = ()) -> str | None:
    """Our mail's Message-ID in the report: in the returned copy, else a "Message-ID:" line of its text."""
    original = _original_headers(msg)
    if original is not None:
        mid = _message_id(_get(original, "Message-ID"))
        if mid:
            return mid
    for text in texts:
        found = re.search(r"(?im)^\s*Message-ID:\s*(<[^<>\s]+>)", text)
        if found:
            return found.group(1)
    return _replied_to(msg)


# -- RFC 3464 / RFC 6533 delivery status notifications --------------------------------------------

_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_SMTP_CODE = re.compile(r"(?<![\d.])([245])[0-5]\d(?=[ \-]|$)", re.M)


def _dsn(msg: EmailMessage, part: Message | None, key: str, common: dict) -> Returned | None:
    blocks = _status_blocks(part) if part is not None else []
    per_message = blocks[0] if blocks else {}
    recipients = []
    for block in blocks[1:]:
        recipient = _recipient(block)
        if recipient is not None:
            recipients.append(recipient)
    if not recipients:
        # A multipart/report whose status part is empty or missing (Gmail sends some): read it as text.
        return _plain_bounce(msg, key, common, dsn_fields=per_message)
    texts = _text_parts(msg)
    envelope_id = per_message.get("original-envelope-id") or None
    return _report(recipients, key, common, _original_message_id(msg, texts), envelope_id, how="Status")


def _report(recipients: list[Recipient], key: str, common: dict, original: str | None,
            envelope_id: str | None, how: str) -> Returned:
    kind = min((r.kind for r in recipients), key=lambda k: _SEVERITY[k])
    first = next(r for r in recipients if r.kind == kind)
    addresses = tuple(dict.fromkeys(r.address for r in recipients if r.kind == kind))
    reason = f"{how} {first.status}" if first.status else how
    if first.action and first.action != {"bounce": "failed", "delayed": "delayed"}.get(kind, first.action):
        reason += f", Action: {first.action}"
    fields = dict(common, original_message_id=original or common["original_message_id"])
    return Returned(kind=kind, key=key, reason=reason, addresses=addresses, recipients=tuple(recipients),
                    envelope_id=envelope_id, **fields)


def _status_blocks(part: Message) -> list[dict[str, str]]:
    """The status part's field blocks, per-message first, keys lower case (RFC 3464 section 2.1)."""
    payload = part.get_payload()
    if part.get_content_type() == "message/delivery-status" and isinstance(payload, list):
        # The standard library parses each block as a header block of its own.
        return [{k.lower(): " ".join(str(v).split()) for k, v in block.items()} for block in payload
                if isinstance(block, Message)]
    # message/global-delivery-status is parsed like message/rfc822 (its first block as the headers),
    # text/delivery-status as text: take the bytes back and read the blocks here.
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        data = payload[0].as_bytes(policy=policy.compat32)
    elif isinstance(payload, str):
        data = payload.encode("utf-8", "surrogateescape")
    else:
        return []
    cte = (_get(part, "Content-Transfer-Encoding") or "").strip().lower()
    try:
        if cte == "base64":
            data = base64.b64decode(data)
        elif cte == "quoted-printable":
            data = quopri.decodestring(data)
    except (binascii.Error, ValueError):
        return []
    return _parse_blocks(data.decode("utf-8", "replace"))


def _parse_blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = None
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, None
        elif line[:1] in " \t" and last:
            current[last] += " " + line.strip()
        elif ":" in line:
            name, _, value = line.partition(":")
            last = name.strip().lower()
            current[last] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def _recipient(block: dict[str, str]) -> Recipient | None:
    final = _typed_address(block.get("final-recipient", ""))
    original = _typed_address(block.get("original-recipient", ""))
    address = original or final
    if not address:
        return None
    action = (block.get("action") or "").split("(")[0].strip().lower() or None
    diagnostic = block.get("diagnostic-code") or None
    status = _status_of(block.get("status", ""))
    if status is None and diagnostic:
        status = _status_of(diagnostic) or _status_from_code(diagnostic)
    kind = _kind(status, action)
    if kind is None:
        return None
    return Recipient(address=address, kind=kind, status=status, action=action, diagnostic=diagnostic,
                     final_address=final if final and final != address else None,
                     remote_mta=_typed_value(block.get("remote-mta", "")) or None)


def _typed_address(value: str) -> str:
    """``rfc822; user@example.com`` or ``utf-8; 山田@例え.jp`` -> the address, decoded and normalized."""
    value = _typed_value(value)
    # RFC 6533 section 3: a utf-8-address may escape characters as \x{HEX}.
    value = re.sub(r"\\x\{([0-9A-Fa-f]{1,6})\}", lambda m: chr(int(m.group(1), 16)), value)
    return normalize(value)


def _typed_value(value: str) -> str:
    if ";" in value:
        value = value.split(";", 1)[1]
    return value.strip()


def _status_of(text: str) -> str | None:
    found = _STATUS.search(text or "")
    return ".".join(found.groups()) if found else None


def _status_from_code(text: str) -> str | None:
    found = _SMTP_CODE.search(text or "")
    return f"{found.group(1)}.0.0" if found else None


def _kind(status: str | None, action: str | None) -> DeliveryKind | None:
    """By the status class (RFC 3463): 5 permanent, 4 persistent transient, 2 success; else by Action.

    A 4.x.x with Action failed (the sending server gave up after days of retries) stays ``delayed``:
    the address was not found bad, so it is not suppressed; ``action`` says the mail never arrived.
    """
    if status:
        return {"5": "bounce", "4": "delayed", "2": "delivered"}[status[0]]
    return {"failed": "bounce", "delayed": "delayed", "delivered": "delivered", "relayed": "delivered",
            "expanded": "delivered"}.get(action or "")


# -- plain-text reports (qmail, Exim without DSN, Japanese hosts) --------------------------------

_DAEMON = re.compile(r"(?i)^(mailer-daemon|mailer_daemon|mail-daemon|maildaemon|postmaster|mdaemon|"
                     r"mail\.?delivery|bounce[s]?|nobody)$")
_BOUNCE_SUBJECT = re.compile(
    r"(?i)undeliver|undelivered|delivery status notification|mail delivery fail|delivery fail|"
    r"returned mail|failure notice|non[- ]?delivery|could not be delivered|not delivered|"
    r"delivery problem|配信エラー|配送エラー|不達|配信でき|配送でき|送信でき|届きません|エラーメール|未配達")
_BOUNCE_TEXT = re.compile(
    r"(?i)could not be delivered|couldn't be delivered|wasn't delivered|was not delivered|"
    r"undeliverable|delivery (to the following recipients? )?(has )?failed|permanent (fatal )?error|"
    r"following address(es)? failed|does not like recipient|unable to deliver|delivery has failed|"
    r"user unknown|no such user|mailbox unavailable|"
    r"配信できませんでした|配送できませんでした|届けることができませんでした|送信できませんでした|"
    r"配信に失敗|配送に失敗|宛先不明|存在しません")
# Where a plain-text report starts quoting the returned mail: nothing below is about the recipient.
_COPY_MARKER = re.compile(
    r"(?im)^.*(this is a copy of the message|below this line is a copy of the message|"
    r"original message follows|original message headers|^-+\s*original message|"
    r"the original message was received|unsent message below|"
    r"^\s*return-path:|^\s*received:\s+from|元のメッセージ|以下、?元のメール|オリジナルメッセージ|"
    r"送信されたメール(のヘッダ)?は以下)")
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~\-\u0080-\uffff]+@[\w\-\u0080-\uffff]+(?:\.[\w\-\u0080-\uffff]+)+")


def _looks_like_bounce(msg: EmailMessage) -> bool:
    if _get(msg, "X-Failed-Recipients") or _get(msg, "X-MS-Exchange-Message-Is-Ndr") is not None:
        return True
    sender = parseaddr(_header(msg, "From"))
    local = sender[1].split("@")[0] if sender[1] else ""
    from_daemon = bool(_DAEMON.match(local)) or bool(re.search(r"(?i)mail delivery (sub)?system|mailer", sender[0]))
    null_path = _header(msg, "Return-Path").replace(" ", "") in ("<>", "")  and _get(msg, "Return-Path") is not None
    if not (from_daemon or null_path):
        return False
    if _BOUNCE_SUBJECT.search(_header(msg, "Subject")):
        return True
    return any(_BOUNCE_TEXT.search(text) for text in _text_parts(msg))


def _plain_bounce(msg: EmailMessage, key: str, common: dict,
                  dsn_fields: dict[str, str] | None = None) -> Returned | None:
    texts = _text_parts(msg)
    report_text = "\n".join(_before_copy(t) for t in texts)
    exclude = {a for a in (common["from_address"], *common["envelope_to"]) if a}
    original = _original_headers(msg)
    if original is not None:
        exclude.update(normalize(a) for _, a in getaddresses(_headers(original, "From")) if a)
    failed = [normalize(a) for _, a in getaddresses(_headers(msg, "X-Failed-Recipients")) if a]
    found = [a for a in _addresses_in(report_text) if a not in exclude and not _DAEMON.match(a.split("@")[0])]
    candidates = list(dict.fromkeys(failed or found))
    near = {address: _status_near(report_text, address, candidates) for address in candidates}
    if not failed and any(status for status, _ in near.values()):
        # Where some addresses come with a code, the others are the report's own (a help desk, a sender).
        candidates = [address for address in candidates if near[address][0]]
    recipients = []
    for address in candidates:
        status, diagnostic = near[address]
        kind = _kind(status, None)
        if kind is None:  # a failure notice that gives no code: it says the mail could not be delivered
            status, kind = None, "bounce"
            if re.search(r"(?i)temporar|delayed|will (be )?retr|still trying|遅延|再送を試み", report_text):
                kind = "delayed"
        recipients.append(Recipient(address=address, kind=kind, status=status, action=None, diagnostic=diagnostic,
                                    from_text=True))
    mid = _original_message_id(msg, texts)
    envelope_id = (dsn_fields or {}).get("original-envelope-id") or None
    if not recipients:
        if mid is None:
            return None
        # A report that names nobody but returns our Message-ID: the send log knows whom it was sent to.
        return Returned(kind="bounce", key=key, reason="a failure notice naming no recipient",
                        envelope_id=envelope_id, **dict(common, original_message_id=mid))
    return _report(recipients, key, common, mid, envelope_id, how="plain-text report")


def _before_copy(text: str) -> str:
    found = _COPY_MARKER.search(text)
    return text[: found.start()] if found else text


def _addresses_in(text: str) -> list[str]:
    return [normalize(m.group(0).rstrip(".")) for m in _ADDRESS.finditer(text)]


def _status_near(text: str, address: str, candidates: list[str]) -> tuple[str | None, str | None]:
    """The status and the server's line for ``address``: from its mention to the next address's."""
    low = text.lower()
    start = low.find(address)
    if start < 0:
        window = text  # X-Failed-Recipients named it; the text may not
    else:
        ends = [low.find(other, start + len(address)) for other in candidates if other != address]
        ends = [e for e in ends if e > start]
        window = text[start: min(ends) if ends else start + 1500]
    status = _status_of(window) or _status_from_code(window)
    diagnostic = None
    for line in window.splitlines():
        if _STATUS.search(line) or _SMTP_CODE.search(line):
            diagnostic = " ".join(line.split())
            break
    return status, diagnostic


# -- RFC 5965 ARF complaints ---------------------------------------------------------------------

_COMPLAINT_TYPES = {"abuse", "fraud", "virus", "other"}


def _complaint(msg: EmailMessage, key: str, common: dict) -> Returned | None:
    part = _find_part(msg, FEEDBACK_TYPES)
    fields: dict[str, str] = {}
    if part is not None:
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            fields = {k.lower(): " ".join(str(v).split()) for k, v in payload[0].items()}
        elif isinstance(payload, str):
            blocks = _parse_blocks(payload)
            fields = blocks[0] if blocks else {}
    feedback_type = (fields.get("feedback-type") or "").lower() or None
    original = _original_headers(msg)
    addresses = [normalize(a) for _, a in getaddresses([fields.get("original-rcpt-to", "")]) if a]
    if not addresses and original is not None:
        addresses = [normalize(a) for _, a in getaddresses(_headers(original, "To")) if a]
    # Providers redact the complainant (RFC 6590): "xxxxxxxx@example.com" names nobody we can match.
    addresses = [a for a in addresses if "@" in a and not re.fullmatch(r"x+", a.split("@")[0])]
    mid = _message_id(_get(original, "Message-ID")) if original is not None else None
    fields_common = dict(common, original_message_id=mid or common["original_message_id"])
    if feedback_type not in _COMPLAINT_TYPES:
        # auth-failure (DMARC/DKIM reports), not-spam: about the mail system, not the recipient's wish.
        return Returned(kind="other", key=key, reason=f"ARF feedback report, Feedback-Type {feedback_type}",
                        feedback_type=feedback_type, **fields_common)
    return Returned(kind="complaint", key=key, reason=f"ARF Feedback-Type {feedback_type}",
                    addresses=tuple(dict.fromkeys(addresses)), feedback_type=feedback_type, **fields_common)


# -- RFC 3834 automatic replies ------------------------------------------------------------------

_OOO_SUBJECT = re.compile(
    r"(?i)out of (the )?office|automatic reply|auto[- ]?reply|auto[- ]?response|autoresponse|"
    r"away from (the )?office|on vacation|vacation (reply|notice)|abwesenheit|"
    r"不在|自動応答|自動返信|自動返答|自動通知|休暇中|休業|夏季休暇|年末年始")


def auto_reply_reason(msg: Message) -> str | None:
    """Why ``msg`` is an automatic reply (RFC 3834 and the headers and subjects that predate it), or None."""
    auto = _header(msg, "Auto-Submitted").lower()
    if auto and auto.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {auto.split(';')[0].strip()}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply"):
        if _get(msg, name) is not None:
            return f"{name} header"
    precedence = _header(msg, "Precedence").lower()
    if precedence == "auto_reply":
        return "Precedence: auto_reply"
    subject = _header(msg, "Subject")
    found = _OOO_SUBJECT.search(subject)
    if found:
        return f"out-of-office subject ({found.group(0)})"
    return None


# -- opt-outs ------------------------------------------------------------------------------------

# Asking to stop, anywhere in the new text.
_STOP_ANYWHERE = re.compile(
    r"(?i)配信停止|配信の停止|配信解除|配信不要|送信停止|送付停止|unsubscribe|remove me|opt[- ]?out|take me off|"
    r"stop (sending|e-?mailing|mailing|contacting|these|this)|do not (e-?mail|contact) me|"
    r"don't (e-?mail|contact) me|no more (e-?mails?|mails?)|"
    r"停止(して|を)?(ください|下さい|願います|お願い|希望)|送らないで|送信しないで")
# A word that asks to stop only when it is (nearly) all the reply says: "停止", "STOP".
_STOP_ALONE = re.compile(r"(?i)^\W*(stop|停止|停止で?お願いします|停止してください|解除)\W*$")

# Where the new text of a reply ends and the quoted copy begins.
_QUOTE_START = re.compile(
    r"(?i)^(on\b.{0,200}\bwrote:?\s*$|.{0,200}(wrote|のメッセージ|のメール|書きました|さんは書きました)\s*[:：]\s*$"
    r"|-{2,}\s*(original message|forwarded message|元のメッセージ|転送メッセージ|original)\s*-{2,}"
    r"|_{10,}\s*$|(from|差出人|送信者|sent|送信日時)\s*[:：].*$"
    r"|\d{4}[年/.-]\s?\d{1,2}[月/.-]\s?\d{1,2}.{0,80}<[^<>\s]+@[^<>\s]+>\s*[:：]?\s*$"
    r"|--\s*$)"
)


def opt_out_reason(msg: EmailMessage, opt_out_addresses: Iterable[str] = ()) -> str | None:
    """Why ``msg`` is an opt-out of its sender, or None."""
    targets = {normalize(a) for a in opt_out_addresses if a and "@" in a}
    if targets:
        for name in ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To"):
            for _, addr in getaddresses(_headers(msg, name)):
                if normalize(addr) in targets:
                    return f"sent to the opt-out address {normalize(addr)}"
    text = new_text(_body_text(msg))
    found = _STOP_ANYWHERE.search(text)
    if found:
        return f"the reply says {found.group(0)!r}"
    if len(text.strip()) <= 40 and _STOP_ALONE.match(" ".join(text.split())):
        return f"the reply says {text.strip()!r}"
    subject = _header(msg, "Subject")
    # The subject of a reply is our own subject with "Re:": only one the sender typed counts.
    if not _replied_to(msg) and not re.match(r"(?i)\s*(re|aw|sv|fw|fwd|返信|転送)\s*[:：]", subject):
        found = _STOP_ANYWHERE.search(subject) or _STOP_ALONE.match(subject)
        if found:
            return f"the subject says {subject!r}"
    return None


def _body_text(msg: EmailMessage) -> str:
    try:
        body = msg.get_body(preferencelist=("plain", "html"))
    except (KeyError, LookupError):  # pragma: no cover
        body = None
    if body is None:
        return ""
    text = _part_text(body)
    if body.get_content_type() == "text/html":
        # The quote of an HTML reply sits in a blockquote or a marked div: keep what is before it.
        cut = re.search(r'(?is)<blockquote|class="?(gmail_quote|moz-cite-prefix|yahoo_quoted)|'
                        r'id="?(divRplyFwdMsg|appendonsend|mail-editor-reference-message-container)|<hr\b', text)
        text = _html_text(text[: cut.start()] if cut else text)
    return text


def new_text(body: str) -> str:
    """What the sender wrote: the lines before the quoted copy, without the ``>`` lines of an inline quote."""
    kept = []
    lines = body.replace("\r\n", "\n").split("\n")
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith((">", "＞", "|")):
            continue
        if _QUOTE_START.match(stripped):
            break
        # Gmail folds a long attribution: "On Mon, ... Yamada <" / "yamada@example.jp> wrote:".
        if stripped.lower().startswith("on ") and i + 1 < len(lines) and re.search(
                r"(?i)wrote:\s*$", lines[i + 1]):
            break
        kept.append(line)
    return "\n".join(kept).strip()


__all__ = [
    "KINDS", "Kind", "Malformed", "Recipient", "Returned", "auto_reply_reason", "classify", "message_key",
    "new_text", "normalize", "opt_out_reason", "problem_of",
]
