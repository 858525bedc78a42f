"""The provider seam: one small protocol every mail provider implements.

Like listmonk's messenger interface: a name, a push of prepared messages, a
close. Providers are found through the ``brief.providers`` entry-point
group (``pipeline.providers.registry``), built-ins included, so a third party
adds one by installing a package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pipeline.config import Settings

# The mail contract lives in pipeline.mail; providers import it from here too.
from pipeline.mail import UNTOUCHED, Content, Fate, OutgoingMessage, Result, scrub

__all__ = [
    "UNTOUCHED",
    "Content",
    "Fate",
    "OutgoingMessage",
    "Provider",
    "ProviderFactory",
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


class ProviderFactory(Protocol):
    """What an entry point names: a class or callable building a provider from settings."""

    def __call__(self, settings: Settings) -> Provider: ...
