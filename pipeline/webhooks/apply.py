"""Apply verified bounce and complaint events: each once, through ``store.webhook_events``.

Hard bounces and complaints become suppressions; soft bounces are only logged against
the person. One bad event never stops the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.engine import Engine

from pipeline.errors import StoreError
from pipeline.store import webhook_events as store
from pipeline.store.normalise import hash_normalised, normalise_email
from pipeline.store.reports import issue_for_delivery
from pipeline.webhooks.common import Event

log = logging.getLogger("brief.webhooks")
# How long a used signature token is refused again (signatures are fresh for 5 minutes).
TOKEN_MEMORY = timedelta(days=2)

_LOG_KIND = {"hard_bounce": "bounced", "soft_bounce": "bounced", "complaint": "complained"}


@dataclass(frozen=True)
class Applied:
    """How many events changed something, were replays, or named no usable address."""

    applied: int = 0
    duplicates: int = 0
    skipped: int = 0


def remember_token(engine: Engine, provider: str, token: str) -> bool:
    """Record a signed request's one-time token; False when it was already used.

    Mailgun signs only timestamp + token, not the event, so a captured signature block
    could carry any event: each token is good for one request, as Mailgun advises. A
    token is remembered for ``TOKEN_MEMORY``, far longer than the 5-minute window in
    which its signature is accepted at all.
    """
    return store.remember_token(engine, provider, token, TOKEN_MEMORY)


def _issue_of(engine: Engine, event: Event) -> int | None:
    """The issue the event came from: as the event says (the bounce mailbox reads it
    from the VERP key), else by its delivery key, provider message id or Message-ID."""
    if event.issue_number is not None:
        return event.issue_number
    if not (event.delivery_key or event.provider_id or event.message_id):
        return None
    return issue_for_delivery(
        engine,
        delivery_key=event.delivery_key,
        provider_id=event.provider_id,
        message_id=event.message_id,
    )


def apply_events(engine: Engine, events: Iterable[Event]) -> Applied:
    """Apply each event once; returns the tally.

    One bad event never stops the others: an address that is not one, or a value the
    database refuses, is skipped with a one-line warning and the batch goes on, so the
    provider gets its 200 once every good event is stored. A database that is down
    still raises (and the provider retries; replays change nothing twice).
    """
    applied = duplicates = skipped = 0
    for event in events:
        event_id = store.event_key(event.event_id)
        try:
            address = normalise_email(event.email)
        except StoreError:
            skipped += 1
            continue
        if store.seen(engine, event.provider, event_id):
            duplicates += 1
            continue
        suppress = event.kind in ("hard_bounce", "complaint")
        detail = f"suppressed: {event.kind}" if suppress else store.SOFT_BOUNCE_DETAIL
        if event.detail:
            detail += f"; {event.detail}"
        fate = store.apply_event(
            engine,
            provider=event.provider,
            event_id=event_id,
            kind=event.kind,
            address_hash=hash_normalised(address),
            suppress=suppress,
            log_kind=_LOG_KIND[event.kind],
            detail=detail,
            issue_number=_issue_of(engine, event),
        )
        if fate is store.EventFate.DUPLICATE:
            duplicates += 1
        elif fate is store.EventFate.REFUSED:
            log.warning("%s event skipped, the database refused one of its values", event.provider)
            skipped += 1
        else:
            applied += 1
    return Applied(applied, duplicates, skipped)
