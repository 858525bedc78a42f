"""The provider seam: one small protocol every mail provider implements.

Like listmonk's messenger interface: a name, a push of prepared messages, a
close. Providers are found through the ``brief.providers`` entry-point
group (``pipeline.providers.registry``), built-ins included, so a third party
adds one by installing a package.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Result:
    """The fate of one message: accepted with an id, or failed transient/permanent."""

    key: str
    ok: bool
    provider_id: str | None = None
    transient: bool = False  # worth retrying later (4xx SMTP, 429, 5xx, timeouts)
    reason: str = ""
    suppress: bool = False  # a permanent "no such mailbox": add a suppression

    @classmethod
    def accepted(cls, key: str, provider_id: str | None) -> Result:
        return cls(key, True, provider_id)

    @classmethod
    def failed(cls, key: str, reason: str, *, transient: bool, suppress: bool = False) -> Result:
        return cls(key, False, None, transient, reason, suppress)


@runtime_checkable
class Provider(Protocol):
    """A mail provider. One instance per worker; not shared across threads."""

    name: str
    max_batch: int  # most messages one push may carry
    idempotent: bool  # honours idempotency keys (a resend cannot duplicate)

    def open(self) -> None:
        """Connect or create the session; called once before the first push."""

    def push(self, messages: Sequence[OutgoingMessage]) -> list[Result]:
        """Hand over a batch; one Result per message, in order. Raises ProviderError only
        when the provider as a whole is unusable (bad credentials, unreachable)."""

    def close(self) -> None:
        """Release connections; safe to call twice."""


class ProviderFactory(Protocol):
    """What an entry point names: a class or callable building a provider from settings."""

    def __call__(self, settings: Settings) -> Provider: ...
