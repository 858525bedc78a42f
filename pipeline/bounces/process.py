"""Apply what the bounce mailbox says, each message once, through the webhooks' path.

Bounces and complaints become ``webhooks.common.Event`` (provider ``mailbox``) and go
through ``webhooks.apply.apply_events``: the same suppressions, event log and issue
attribution as a provider's webhook, and the same once-only record (``webhook_events``),
so a message read twice (fetched again after a crash before it was moved, or imported
from a file too) changes nothing twice. A soft bounce for an address that soft-bounced
in ``[bounces] soft_bounce_limit`` different issues is applied as a hard one. Mailto
unsubscribes go through the unsubscribe link's own path (its token, its list).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import Engine

from pipeline.bounces.classify import Classified, Finding, Verdict, classify
from pipeline.bounces.mailbox import mbox_messages, open_mailbox
from pipeline.config import Settings
from pipeline.errors import StoreError, TokenError
from pipeline.store import webhook_events
from pipeline.store.normalise import hash_normalised, normalise_email
from pipeline.store.subscribers import unsubscribe_by_token
from pipeline.webhooks.apply import apply_events
from pipeline.webhooks.common import Event, scrub

log = logging.getLogger("brief.bounces")
PROVIDER = "mailbox"
Handle = TypeVar("Handle")


@dataclass(frozen=True)
class Tally:
    """What one pass over a mailbox did."""

    messages: int = 0
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    unsubscribed: int = 0
    ignored: int = 0  # messages that are none of the above (auto-replies, people, junk)
    duplicates: int = 0  # findings applied before (the message was read already)
    unknown: int = 0  # findings naming nobody we know or no usable address

    def __add__(self, other: Tally) -> Tally:
        return Tally(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def line(self) -> str:
        """One line for the CLI and the daemon's log."""
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


def return_path_of(settings: Settings) -> str:
    """The VERP template the smtp provider sends with ("" when VERP is off)."""
    return str(settings.provider.table("smtp").get("return_path", "") or "")


def process_message(engine: Engine, settings: Settings, raw: bytes) -> Tally:
    """Classify one message and apply what it says; returns what changed."""
    try:
        found = classify(
            raw,
            return_path=return_path_of(settings),
            unsubscribe_address=settings.bounces.unsubscribe_address,
        )
    except Exception as exc:  # noqa: BLE001 - one unreadable message must not block the rest
        # Without this, a message the parser chokes on would fail every pass and keep
        # every message behind it waiting; it is set aside like any ignored one.
        log.warning("bounces: ignored an unreadable message (%s)", type(exc).__name__)
        return Tally(messages=1, ignored=1)
    if not found.findings:
        # The reason only: no address or subject of a stranger's mail in the log.
        log.info("bounces: ignored message %s: %s", _short(found.message_id), found.ignored)
        return Tally(messages=1, ignored=1)
    tally = Tally(messages=1)
    for finding in found.findings:
        if finding.verdict is Verdict.UNSUBSCRIBE:
            tally += _unsubscribe(engine, found, finding)
        else:
            tally += _bounce(engine, settings, found, finding)
    return tally


def process_all(
    engine: Engine,
    settings: Settings,
    messages: Iterable[tuple[Handle, bytes]],
    done: Callable[[Handle], None] | None = None,
) -> Tally:
    """Process each message, then call ``done`` with its handle (move it away): only
    after its result is stored, so a crash in between means reading it again, which
    changes nothing."""
    tally = Tally()
    for handle, raw in messages:
        tally += process_message(engine, settings, raw)
        if done is not None:
            done(handle)
    return tally


def fetch_mailbox(engine: Engine, settings: Settings) -> Tally:
    """``brief bounces fetch``: read the ``[bounces]`` IMAP folder, apply every message,
    move each one after its result is stored."""
    with open_mailbox(settings) as box:
        return process_all(engine, settings, box.messages(), box.done)


def import_mbox(engine: Engine, settings: Settings, path: Path) -> Tally:
    """``brief bounces import FILE.mbox``: the same for a mailbox file (left as it is)."""
    return process_all(engine, settings, mbox_messages(path))


def _short(message_id: str) -> str:
    return scrub(message_id, 120) or "-"


def _unsubscribe(engine: Engine, found: Classified, finding: Finding) -> Tally:
    try:
        changed = unsubscribe_by_token(engine, finding.token, source="mailto", accept_stale=True)
    except TokenError as exc:
        log.warning("bounces: mailto unsubscribe %s ignored: %s", _short(found.message_id), exc)
        return Tally(unknown=1)
    return Tally(unsubscribed=1) if changed else Tally(duplicates=1)


def _person(engine: Engine, finding: Finding) -> str | None:
    """The address the finding is about. The delivery key (VERP or the original
    Message-ID) names the very delivery, even when the report names a forwarding
    target or nobody; the report's own address is the fallback."""
    if finding.subscriber_id is not None:
        email = webhook_events.subscriber_email(engine, finding.subscriber_id)
        if email:
            return email
    return finding.email


def _bounce(engine: Engine, settings: Settings, found: Classified, finding: Finding) -> Tally:
    address = _person(engine, finding)
    try:
        normal = normalise_email(address or "")
    except StoreError:
        log.warning("bounces: %s names no usable address; skipped", _short(found.message_id))
        return Tally(unknown=1)
    kind = finding.verdict.value
    detail = scrub(finding.detail)
    if finding.verdict is Verdict.SOFT and finding.issue_number is not None:
        before = webhook_events.soft_bounce_issues(engine, hash_normalised(normal))
        issues = before | {finding.issue_number}
        limit = settings.bounces.soft_bounce_limit
        if len(issues) >= limit and finding.issue_number not in before:
            kind = Verdict.HARD.value
            detail = f"soft bounces in {len(issues)} issues (limit {limit}); {detail}"
    event = Event(
        provider=PROVIDER,
        event_id=f"{found.message_id}/{finding.delivery_key or normal}",
        kind=kind,
        email=normal,
        detail=detail,
        delivery_key=finding.delivery_key,
        issue_number=finding.issue_number,
    )
    result = apply_events(engine, [event])
    if result.duplicates:
        return Tally(duplicates=1)
    if result.skipped:
        return Tally(unknown=1)
    if kind == Verdict.HARD.value:
        return Tally(hard=1)
    if kind == Verdict.SOFT.value:
        return Tally(soft=1)
    return Tally(complaints=1)


__all__ = [
    "Tally",
    "fetch_mailbox",
    "import_mbox",
    "process_all",
    "process_message",
    "return_path_of",
]
