"""The mail contract: what render hands to the send path and the send path to providers.

One module, imported by render, message and every provider, so none of them reaches
into another for it: the per-recipient placeholders and the one way to fill them,
the issue rendered once (``Rendered``), what is the same for every recipient of a
send (``Content``), one recipient's message (``OutgoingMessage``), and what became of
it (``Result`` with its ``Fate``). Nothing here imports Jinja2 or MJML.
"""

from __future__ import annotations

import enum
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# Placeholder name -> the marker render leaves in the HTML and text for it.
PLACEHOLDERS: Mapping[str, str] = {
    "name": "%%BRIEF_NAME%%",
    # The whole greeting line ("Hi Ann," / "Hi there,"), from [newsletter] greeting.
    "greeting": "%%BRIEF_GREETING%%",
    "unsubscribe_url": "%%BRIEF_UNSUBSCRIBE_URL%%",
    "preferences_url": "%%BRIEF_PREFERENCES_URL%%",
    # The reader's part of each tracked link (``/c/``) and of the open pixel (``/o/``):
    # subscriber id and its signature, one value per recipient for every link.
    "click_token": "%%BRIEF_CLICK_TOKEN%%",
}


def fill(template: str, values: Mapping[str, str], *, as_html: bool) -> str:
    """``template`` with each placeholder's marker replaced by its value (escaped for
    HTML when ``as_html``); a missing value is empty."""
    for key, mark in PLACEHOLDERS.items():
        value = values.get(key, "")
        template = template.replace(mark, html.escape(value, quote=True) if as_html else value)
    return template


@dataclass(frozen=True)
class Rendered:
    """An issue rendered once: what every recipient gets, placeholders included."""

    issue_number: int
    subject: str
    preheader: str
    html: str
    text: str
    web_url: str


@dataclass(frozen=True)
class Content:
    """What is the same for every recipient of one send, rendered once.

    ``html`` and ``text`` still hold the per-recipient placeholders
    (``PLACEHOLDERS``); providers that substitute on their side
    (SendGrid substitutions, Mailgun recipient-variables) use these directly.
    """

    issue_number: int
    subject: str
    from_address: str
    from_name: str
    reply_to: str
    html: str
    text: str
    # the same for every recipient (List-Id, X-Brief-Commit)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutgoingMessage:
    """One recipient's message: personal values, headers, and the full MIME bytes."""

    key: str  # stable per delivery: idempotency key, outbox file name
    to_address: str
    to_name: str | None
    content: Content
    values: Mapping[str, str]  # placeholder name -> this recipient's value
    headers: Mapping[str, str]  # this recipient's headers (Message-ID, List-Unsubscribe…)
    raw: bytes  # the complete RFC 5322 message, personalised
    html: str  # personalised HTML part
    text: str  # personalised text part


class Fate(enum.Enum):
    """What happened to one message handed to a provider (or not handed over at all)."""

    SENT = "sent"  # the provider accepted it
    TRANSIENT = "transient"  # refused for now (4xx, 429, 5xx): retry later, counts a try
    PERMANENT = "permanent"  # refused for good for this recipient
    UNKNOWN = "unknown"  # handed over, answer lost: the provider may hold it
    SENDER = "sender"  # the sender or account is wrong: not taken; pause the whole send
    NOT_TAKEN = "not_taken"  # never handed over (unreachable): back to pending, no try counted


# Fates after which the provider cannot hold the message: the row goes back untouched.
UNTOUCHED = frozenset({Fate.SENDER, Fate.NOT_TAKEN})


def scrub(text: str, address: str) -> str:
    """``text`` without the recipient's address (any case), so failures group by their
    cause. No regex: a pattern per address would flood ``re``'s compile cache."""
    if address and text:
        low, needle = text.lower(), address.lower()
        parts, i = [], 0
        while (j := low.find(needle, i)) >= 0:
            parts += [text[i:j], "<recipient>"]
            i = j + len(needle)
        text = "".join(parts) + text[i:]
    return " ".join(text.split())


@dataclass(frozen=True)
class Result:
    """The fate of one message, with the cause of a failure as a class apart from the address.

    ``code`` is the machine part of the cause ("550 5.1.1", "postmark 406", "timeout"),
    ``reason`` a short human text without the recipient's address: together, ``label``,
    they are what ``brief status`` groups by.
    """

    key: str
    fate: Fate
    provider_id: str | None = None
    code: str = ""
    reason: str = ""
    suppress: bool = False  # a permanent "no such mailbox": add a suppression

    @property
    def ok(self) -> bool:
        return self.fate is Fate.SENT

    @property
    def transient(self) -> bool:
        """Worth trying again: a temporary refusal, or never handed over."""
        return self.fate in (Fate.TRANSIENT, Fate.NOT_TAKEN)

    @property
    def label(self) -> str:
        """The failure class: code and reason, the same for every recipient it hit."""
        return " ".join(p for p in (self.code, self.reason) if p)

    @classmethod
    def sent(cls, key: str, provider_id: str | None) -> Result:
        return cls(key, Fate.SENT, provider_id)

    @classmethod
    def temporary(cls, key: str, reason: str, code: str = "") -> Result:
        return cls(key, Fate.TRANSIENT, code=code, reason=reason)

    @classmethod
    def permanent(cls, key: str, reason: str, code: str = "", *, suppress: bool = False) -> Result:
        return cls(key, Fate.PERMANENT, code=code, reason=reason, suppress=suppress)

    @classmethod
    def unknown(cls, key: str, reason: str, code: str = "") -> Result:
        return cls(key, Fate.UNKNOWN, code=code, reason=reason)

    @classmethod
    def sender_problem(cls, key: str, reason: str, code: str = "") -> Result:
        return cls(key, Fate.SENDER, code=code, reason=reason)

    @classmethod
    def not_taken(cls, key: str, reason: str, code: str = "") -> Result:
        return cls(key, Fate.NOT_TAKEN, code=code, reason=reason)


# -- VERP: the delivery key in the envelope sender ---------------------------------------

VERP_PLACEHOLDER = "{key}"
_VERP_AS_IS = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_VERP_KEEP = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def verp_encode(key: str) -> str:
    """``key`` as a piece of a dot-atom local part (RFC 5322 §3.2.3).

    A delivery key ("issue-014.subscriber-9") is one already and passes unchanged; any
    other character, and a dot that would start, end or double up (not allowed in a
    dot-atom), is written ``=XX`` (its UTF-8 bytes in hex), as VERP writes "@" as "=".
    """
    if _VERP_AS_IS.fullmatch(key):  # every delivery key: the per-message path costs ~0.3 µs
        return key
    out = []
    for i, ch in enumerate(key):
        dot_ok = ch != "." or (0 < i < len(key) - 1 and key[i - 1] != "." and key[i + 1] != ".")
        if ch in _VERP_KEEP and dot_ok:
            out.append(ch)
        else:
            out.extend(f"={b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def verp_decode(text: str) -> str:
    """The key ``verp_encode`` wrote (hex in either case: some MTAs fold local parts)."""
    if "=" not in text:
        return text
    parts = re.split(r"=([0-9A-Fa-f]{2})", text)
    raw = bytearray()
    for i, part in enumerate(parts):
        raw += bytes.fromhex(part) if i % 2 else part.encode("utf-8")
    return raw.decode("utf-8", "replace")


def verp_address(template: str, key: str) -> str:
    """The envelope sender for one delivery: ``template`` with ``{key}`` filled in."""
    return template.replace(VERP_PLACEHOLDER, verp_encode(key))
