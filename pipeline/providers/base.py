"""The provider seam: one small protocol every mail provider implements.

Like listmonk's messenger interface: a name, a push of prepared messages, a
close. Providers are found through the ``brief.providers`` entry-point
group (``pipeline.providers``), built-ins included, so a third party
adds one by installing a package. A provider is built from a ``ProviderSetup``:
its own settings table, checked against the schema it declares, and the secrets
it declares, never from the whole of the settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

# The mail contract lives in pipeline.mail; providers import it from here too.
from pipeline.mail import UNTOUCHED, Content, Fate, OutgoingMessage, Result, scrub
from pipeline.plugins import Key, TableSchema

__all__ = [
    "UNTOUCHED",
    "Content",
    "Fate",
    "ChecksCredentials",
    "KeepsFiles",
    "Key",
    "OutgoingMessage",
    "Provider",
    "ProviderFactory",
    "ProviderSetup",
    "Result",
    "scrub",
]


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


@runtime_checkable
class KeepsFiles(Protocol):
    """A provider that keeps each message as an ``.eml`` file (the outbox) says where."""

    def folder(self, issue_number: int) -> Path:
        """The folder holding the files of one issue."""


@runtime_checkable
class ChecksCredentials(Protocol):
    """Optional: a provider that can prove its credentials without sending (``brief doctor``)."""

    def check_credentials(self) -> str:
        """A no-op call that needs the credentials (an API's read-only endpoint, SMTP's
        login); returns what was checked, or raises ProviderError saying what failed."""


@dataclass(frozen=True)
class ProviderSetup:
    """What a provider is built from: its own table and secrets, and two facts about
    the newsletter every provider may need."""

    name: str
    # [provider.<name>] checked against the provider's settings_schema, every key present.
    table: Mapping[str, Any]
    # Where a relative path in the table is resolved: the folder of brief.toml.
    root: Path
    # The newsletter's sender: the SMTP envelope, Mailgun's sending domain.
    from_address: str
    # The environment variables the provider declared in ``secrets``, those that are set.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)

    def secret(self, name: str) -> str | None:
        """A declared secret from the environment (None when it is not set)."""
        return self.secrets.get(name)

    @property
    def domain(self) -> str:
        """The sending domain: the part of from_address after the @."""
        return self.from_address.rpartition("@")[2].lower()


class ProviderFactory(Protocol):
    """What an entry point names: a class (or callable) that declares its settings table
    and the secrets it reads, and builds a provider from a ``ProviderSetup``."""

    settings_schema: ClassVar[TableSchema]
    secrets: ClassVar[tuple[str, ...]]

    def __call__(self, setup: ProviderSetup) -> Provider: ...


# Keys most providers share, declared once: a timeout must be a positive real for
# socket.settimeout, and past an hour means nothing.
TIMEOUT_KEY = Key((int, float), 30, bounds=(0.001, 3600))
