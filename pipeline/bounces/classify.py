"""What one message in the bounce mailbox is: a pure function of its bytes.

A message is one of:

- an RFC 3464 delivery status notification (``multipart/report; report-type=
  delivery-status``): per recipient, ``Action: failed`` with a ``5.x.x`` status is a hard
  bounce, with ``4.x.x`` a soft one; ``delayed`` is a warning, not a bounce;
- an RFC 5965 abuse report (``report-type=feedback-report``, ``Feedback-Type: abuse``): a
  complaint;
- a bounce in an older shape (Exim's ``X-Failed-Recipients``, Yahoo's, qmail's …), read
  by ``flufl.bounce``, Mailman's detectors: permanent or temporary failures;
- a mailto unsubscribe: addressed to the List-Unsubscribe mailto address, the subject
  carrying the unsubscribe token (``unsubscribe-<token>``);
- anything else (auto-replies, spam, people writing in): ignored, with the reason.

The delivery is named by the VERP key in the bounce's own recipient (``[provider.smtp]
return_path``) or by the original message's Message-ID (``<issue-014.subscriber-9.…@…>``),
whichever survived the remote server; either names the issue for attribution.
"""

from __future__ import annotations

import email
import email.message
import enum
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import getaddresses, parseaddr

from pipeline.mail import VERP_PLACEHOLDER, verp_decode

# Our delivery keys (send/workers.delivery_key) and the Message-IDs built on them.
_DELIVERY_KEY = re.compile(r"\b(issue-(\d{1,6})\.subscriber-(\d{1,12}))\b")
_MESSAGE_ID = re.compile(r"<(issue-\d{1,6}\.subscriber-\d{1,12})\.[0-9a-f]{6,64}@[^>\s]+>")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_TOKEN = re.compile(r"\bunsubscribe-([A-Za-z0-9._~-]{4,200})")
# Headers naming who a bounce was delivered to: the VERP address survives in them.
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Cc")
# An auto-reply (RFC 3834, and the headers of mail systems that predate it).
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response)|out of (the )?office|abwesenheit|vacation)", re.I
)


class Verdict(enum.StrEnum):
    """What a finding asks for."""

    HARD = "hard_bounce"
    SOFT = "soft_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True)
class Finding:
    """One thing a message says about one person.

    ``email`` is the address the report names (None when only the delivery key is left,
    e.g. a DSN that lost its recipient); ``delivery_key``, ``issue_number`` and
    ``subscriber_id`` come from the VERP address or the original Message-ID.
    """

    verdict: Verdict
    email: str | None
    detail: str = ""
    status: str = ""
    delivery_key: str | None = None
    issue_number: int | None = None
    subscriber_id: int | None = None
    token: str = ""


@dataclass(frozen=True)
class Classified:
    """One message read: its id (for applying it once), what it says, or why nothing."""

    message_id: str
    findings: tuple[Finding, ...]
    ignored: str = ""  # the reason, when there are no findings


def message_key(raw: bytes, msg: email.message.Message) -> str:
    """The id a message is applied under: its Message-ID, or a hash of its bytes."""
    found = parseaddr(str(msg.get("Message-ID", "")))[1] or str(msg.get("Message-ID", "")).strip()
    if found and len(found) <= 180:
        return found
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def classify(raw: bytes, *, return_path: str = "", unsubscribe_address: str = "") -> Classified:
    """Read one message from the bounce mailbox (see the module docstring)."""
    msg = email.message_from_bytes(raw)
    key = message_key(raw, msg)
    verp = _verp_key(msg, return_path)
    if unsubscribe_address and _addressed_to(msg, unsubscribe_address):
        return _unsubscribe(key, msg)
    ctype = msg.get_content_type()
    report = str(msg.get_param("report-type", "", header="content-type") or "").lower()
    if ctype == "multipart/report" and report == "feedback-report":
        return Classified(key, _complaint(msg, verp))
    if ctype == "multipart/report" and report == "delivery-status":
        findings, reason = _dsn(msg, verp)
        return Classified(key, findings, "" if findings else reason)
    if _auto_reply(msg):
        return Classified(key, (), "an auto-reply, not a bounce")
    findings = _legacy(msg, verp)
    if findings:
        return Classified(key, findings)
    if verp is not None:
        return Classified(key, (), "sent to the bounce address but not a bounce report")
    return Classified(key, (), "not a bounce, complaint or unsubscribe")


# -- who and which delivery -------------------------------------------------------------


def _verp_pattern(return_path: str) -> re.Pattern[str] | None:
    if VERP_PLACEHOLDER not in return_path:
        return None
    before, _, after = return_path.partition(VERP_PLACEHOLDER)
    return re.compile(re.escape(before) + r"([^@\s<>\"]+?)" + re.escape(after), re.I)


def _verp_key(msg: email.message.Message, return_path: str) -> str | None:
    """The delivery key in the VERP address the bounce was sent to, if any."""
    pattern = _verp_pattern(return_path)
    if pattern is None:
        return None
    for header in _RECIPIENT_HEADERS:
        for _, address in getaddresses([str(v) for v in msg.get_all(header, [])]):
            found = pattern.fullmatch(address)
            if found:
                key = verp_decode(found.group(1)).lower()
                if _DELIVERY_KEY.fullmatch(key):
                    return key
    return None


def _original_key(msg: email.message.Message) -> str | None:
    """The delivery key in the Message-ID of the original message a report quotes (its
    message/rfc822 or text/rfc822-headers part), else in the report's own threading
    headers (Gmail and Microsoft 365 set In-Reply-To), else anywhere in its text."""
    candidates: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], email.message.Message):
                candidates.append(str(inner[0].get("Message-ID", "")))
        elif ctype == "text/rfc822-headers":
            found = re.search(r"(?im)^message-id:\s*(<[^>]*>)", _as_text(part))
            candidates.append(found.group(1) if found else "")
    candidates += [str(msg.get(h, "")) for h in ("In-Reply-To", "References")]
    candidates.append(_as_text(msg))
    for text in candidates:
        if found_id := _MESSAGE_ID.search(text):
            return found_id.group(1)
    return None


def _delivery(key: str | None) -> dict[str, object]:
    if key is None:
        return {}
    m = _DELIVERY_KEY.fullmatch(key)
    if m is None:
        return {}
    return {"delivery_key": key, "issue_number": int(m.group(2)), "subscriber_id": int(m.group(3))}


def _addressed_to(msg: email.message.Message, address: str) -> bool:
    wanted = address.lower()
    for header in _RECIPIENT_HEADERS:
        for _, found in getaddresses([str(v) for v in msg.get_all(header, [])]):
            if found.lower() == wanted:
                return True
    return False


def _as_text(part: email.message.Message) -> str:
    """A part's text, whatever its encoding; a message part as its headers and body."""
    if part.is_multipart():
        return "\n".join(
            _as_text(p) for p in part.get_payload() if isinstance(p, email.message.Message)
        )
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    return str(part.get_payload())


def _address(text: str) -> str | None:
    """``rfc822; ann@example.com`` (a DSN or ARF address field) as the bare address."""
    value = text.partition(";")[2] if ";" in text else text
    address = parseaddr(value.strip())[1].strip()
    return address if "@" in address else None


# -- the shapes -------------------------------------------------------------------------


def _unsubscribe(key: str, msg: email.message.Message) -> Classified:
    if _auto_reply(msg):
        return Classified(key, (), "an auto-reply to the unsubscribe address")
    found = _TOKEN.search(_subject(msg))
    if found is None:
        return Classified(key, (), "to the unsubscribe address without a token in the subject")
    sender = parseaddr(str(msg.get("From", "")))[1] or None
    return Classified(
        key, (Finding(Verdict.UNSUBSCRIBE, sender, "mailto unsubscribe", token=found.group(1)),)
    )


def _complaint(msg: email.message.Message, verp: str | None) -> tuple[Finding, ...]:
    fields: dict[str, str] = {}
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            fields = _fields(_as_text(part) if not part.is_multipart() else _blocks_text(part))
    kind = fields.get("feedback-type", "abuse").lower()
    delivery = _delivery(verp or _original_key(msg))
    # Many feedback loops redact the recipient (Yahoo, Microsoft): then the delivery key
    # names the person, and the original's To (often "redacted@…") is the last resort.
    address = _address(fields.get("original-rcpt-to", ""))
    if address is None and not delivery:
        original = _original_part(msg)
        if original is not None:
            address = _address(str(original.get("To", "")))
    detail = f"ARF {kind}"
    return (Finding(Verdict.COMPLAINT, address, detail, **delivery),)  # type: ignore[arg-type]


def _blocks_text(part: email.message.Message) -> str:
    """The text of a part the parser split into header blocks (message/delivery-status)."""
    blocks = [p for p in part.get_payload() if isinstance(p, email.message.Message)]
    return "\n\n".join("\n".join(f"{k}: {v}" for k, v in b.items()) for b in blocks)


def _fields(text: str) -> dict[str, str]:
    """``Name: value`` lines (continuations joined) as a dict, lower-case names."""
    out: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and last:
            out[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep and name.strip():
            last = name.strip().lower()
            out.setdefault(last, value.strip())
    return out


def _original_part(msg: email.message.Message) -> email.message.Message | None:
    for part in msg.walk():
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], email.message.Message):
                return inner[0]
        if part.get_content_type() == "text/rfc822-headers":
            return email.message_from_string(_as_text(part))
    return None


def _dsn_blocks(msg: email.message.Message) -> list[dict[str, str]]:
    for part in msg.walk():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            if part.is_multipart():
                return [
                    {k.lower(): str(v) for k, v in b.items()}
                    for b in part.get_payload()
                    if isinstance(b, email.message.Message)
                ]
            text = _as_text(part).replace("\r\n", "\n")
            return [_fields(block) for block in re.split(r"\n\s*\n", text) if block.strip()]
    return []


def _dsn(msg: email.message.Message, verp: str | None) -> tuple[tuple[Finding, ...], str]:
    blocks = _dsn_blocks(msg)
    recipients = [b for b in blocks[1:] if "action" in b or "final-recipient" in b]
    if not recipients:
        recipients = [b for b in blocks if "action" in b]
    delivery = _delivery(verp or _original_key(msg))
    findings: list[Finding] = []
    warned = False
    for block in recipients:
        action = block.get("action", "").strip().lower()
        status = _STATUS.search(block.get("status", "")) or _STATUS.search(
            block.get("diagnostic-code", "")
        )
        if action != "failed":
            warned = warned or action == "delayed"
            continue  # delayed, delivered, relayed, expanded: nothing bounced (yet)
        code = status.group(0) if status else "5.0.0"
        verdict = Verdict.HARD if code.startswith("5") else Verdict.SOFT
        address = _address(block.get("original-recipient", "")) or _address(
            block.get("final-recipient", "")
        )
        diagnostic = " ".join(block.get("diagnostic-code", "").split())
        detail = f"{code} {diagnostic}".strip()
        findings.append(Finding(verdict, address, detail, code, **delivery))  # type: ignore[arg-type]
    if findings:
        return tuple(_one_per_address(findings)), ""
    return (), ("a delay warning, not a bounce" if warned else "a report with no failed recipient")


def _legacy(msg: email.message.Message, verp: str | None) -> tuple[Finding, ...]:
    """Bounces that are not RFC 3464 reports, through flufl.bounce's detectors."""
    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # noqa: BLE001 - a heuristic tripping on odd input is "no finding"
        return ()
    delivery = _delivery(verp or _original_key(msg))
    text = _as_text(msg)
    found = [
        Finding(verdict, raw.decode("ascii", "replace"), "", _status_near(text, raw), **delivery)  # type: ignore[arg-type]
        for verdict, addresses in ((Verdict.HARD, permanent), (Verdict.SOFT, temporary))
        for raw in sorted(addresses)
    ]
    out = []
    for f in found:
        code = f.status or ("5.0.0" if f.verdict is Verdict.HARD else "4.0.0")
        verdict = Verdict.SOFT if code.startswith("4") else f.verdict
        out.append(
            Finding(verdict, f.email, code, code, f.delivery_key, f.issue_number, f.subscriber_id)
        )
    return tuple(_one_per_address(out))


def _status_near(text: str, address: bytes) -> str:
    """The enhanced status code on the lines after ``address`` in a plain-text bounce."""
    where = text.lower().find(address.decode("ascii", "replace").lower())
    if where < 0:
        return ""
    found = _STATUS.search(text, where, where + 600)
    return found.group(0) if found else ""


def _one_per_address(findings: Iterable[Finding]) -> list[Finding]:
    seen: set[str | None] = set()
    out = []
    for f in findings:
        who = f.email.lower() if f.email else None
        if who in seen:
            continue
        seen.add(who)
        out.append(f)
    return out


def _subject(msg: email.message.Message) -> str:
    """The Subject as text: some clients send even "unsubscribe-…" RFC 2047-encoded."""
    from email.header import decode_header, make_header

    raw = str(msg.get("Subject", ""))
    try:
        return str(make_header(decode_header(raw)))
    except (ValueError, LookupError, UnicodeError):
        return raw


def _auto_reply(msg: email.message.Message) -> bool:
    """An RFC 3834 auto-reply, or a vacation message in the older conventions."""
    auto = str(msg.get("Auto-Submitted", "no")).strip().lower()
    sender = parseaddr(str(msg.get("From", "")))[1].lower()
    daemon = sender.startswith(("mailer-daemon@", "postmaster@")) or sender == ""
    if auto.startswith("auto-replied") and not daemon:
        return True
    if msg.get("X-Autoreply") or msg.get("X-Autorespond"):
        return True
    if str(msg.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.match(_subject(msg)))
