"""The provider seam: one small protocol every mail provider implements.

Like listmonk's messenger interface: a name, a push of prepared messages, a
close. Providers are found through the ``brief.providers`` entry-point
group (``pipeline.providers.registry``), built-ins included, so a third party
adds one by installing a package.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..config import Settings


@dataclass(frozen=True)
class Content:
    """What is the same for every recipient of one send, rendered once.

    ``html`` and ``text`` still hold the per-recipient placeholders
    (``pipeline.render.PLACEHOLDERS``); providers that substitute on their side
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

    # The two constructors every provider used before fates were explicit.
    @classmethod
    def accepted(cls, key: str, provider_id: str | None) -> Result:
        return cls.sent(key, provider_id)

    @classmethod
    def failed(cls, key: str, reason: str, *, transient: bool, suppress: bool = False) -> Result:
        from . import UNKNOWN_PREFIX

        if reason.startswith(UNKNOWN_PREFIX):
            return cls.unknown(key, reason[len(UNKNOWN_PREFIX) :])
        if transient:
            return cls.temporary(key, reason)
        return cls.permanent(key, reason, suppress=suppress)


@runtime_checkable
class Provider(Protocol):
    """A mail provider. One instance per worker; not shared across threads."""

    name: str
    max_batch: int  # most messages one push may carry
    # A message handed over twice is delivered once, whatever it is batched with (outbox:
    # one file per delivery key). Then rows a crash left unknown are resent without asking.
    idempotent: bool

    def open(self) -> None:
        """Connect or create the session; called once before the first push."""

    def push(self, messages: Sequence[OutgoingMessage]) -> list[Result]:
        """Hand over a batch; one Result per message, in order, partial outcomes included:
        what was accepted before a failure is ``SENT``, what was never handed over is
        ``NOT_TAKEN`` (unreachable) or ``SENDER`` (the sender or account is refused).
        Raising ProviderUnavailable / ProviderError instead means the same for every
        message of the batch (``NOT_TAKEN`` / ``SENDER``)."""

    def close(self) -> None:
        """Release connections; safe to call twice."""


class ProviderFactory(Protocol):
    """What an entry point names: a class or callable building a provider from settings."""

    def __call__(self, settings: Settings) -> Provider: ...
