"""Apply verified bounce and complaint events: suppress, log, and remember the event id.

Each event is one transaction that first records ``(provider, event_id)``; a replay
hits the primary key, rolls back, and so changes nothing twice. Hard bounces and
complaints become suppressions; soft bounces are only logged against the person.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError

from pipeline.errors import StoreError
from pipeline.store.db import read_connection, utcnow
from pipeline.store.events import log_event
from pipeline.store.normalise import hash_normalised, normalise_email
from pipeline.store.schema import subscribers, webhook_events
from pipeline.store.suppress import add_suppression
from pipeline.webhooks.common import Event

log = logging.getLogger("brief.webhooks")
MAX_EVENT_ID = 200
# How long a used signature token is refused again (signatures are fresh for 5 minutes).
TOKEN_MEMORY = timedelta(days=2)

_LOG_KIND = {"hard_bounce": "bounced", "soft_bounce": "bounced", "complaint": "complained"}


@dataclass(frozen=True)
class Applied:
    """How many events changed something, were replays, or named no usable address."""

    applied: int = 0
    duplicates: int = 0
    skipped: int = 0


def seen(engine: Engine, provider: str, event_id: str) -> bool:
    """Whether this provider event was already applied."""
    with read_connection(engine) as conn:
        return (
            conn.execute(
                sa.select(sa.literal(1)).where(
                    webhook_events.c.provider == provider, webhook_events.c.event_id == event_id
                )
            ).first()
            is not None
        )


def _event_key(event_id: str) -> str:
    """The id as stored: a longer one is hashed, so a replay still finds its row."""
    if len(event_id) <= MAX_EVENT_ID:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()


def remember_token(engine: Engine, provider: str, token: str) -> bool:
    """Record a signed request's one-time token; False when it was already used.

    Mailgun signs only timestamp + token, not the event, so a captured signature block
    could carry any event: each token is good for one request, as Mailgun advises. A
    token is remembered for ``TOKEN_MEMORY``, far longer than the 5-minute window in
    which its signature is accepted at all; older ones are forgotten as new ones come.
    """
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    name = f"{provider}:token"[:32]
    now = utcnow()
    try:
        with engine.begin() as conn:
            conn.execute(
                webhook_events.delete().where(
                    webhook_events.c.provider == name,
                    webhook_events.c.received_at < now - TOKEN_MEMORY,
                )
            )
            conn.execute(
                webhook_events.insert().values(
                    provider=name, event_id=digest, kind="token", received_at=now
                )
            )
    except IntegrityError:
        return False
    return True


def apply_events(engine: Engine, events: Iterable[Event]) -> Applied:
    """Apply each event once; returns the tally.

    One bad event never stops the others: an address that is not one, or a value the
    database refuses, is skipped with a one-line warning and the batch goes on, so the
    provider gets its 200 once every good event is stored. A database that is down
    still raises (and the provider retries; replays change nothing twice).
    """
    applied = duplicates = skipped = 0
    for event in events:
        event_id = _event_key(event.event_id)
        try:
            address = normalise_email(event.email)
        except StoreError:
            skipped += 1
            continue
        if seen(engine, event.provider, event_id):
            duplicates += 1
            continue
        try:
            _apply_one(engine, event, event_id, hash_normalised(address))
        except IntegrityError:  # a concurrent delivery of the same event won the race
            duplicates += 1
            continue
        except DataError as exc:
            log.warning(
                "%s event skipped, the database refused it: %s",
                event.provider,
                type(exc.orig).__name__,
            )
            skipped += 1
            continue
        applied += 1
    return Applied(applied, duplicates, skipped)


def _apply_one(engine: Engine, event: Event, event_id: str, hashed: str) -> None:
    source = f"webhook:{event.provider}"
    with engine.begin() as conn:
        conn.execute(
            webhook_events.insert().values(
                provider=event.provider,
                event_id=event_id,
                kind=event.kind,
                received_at=utcnow(),
            )
        )
        subscriber_id = conn.execute(
            sa.select(subscribers.c.id).where(subscribers.c.email_hash == hashed)
        ).scalar_one_or_none()
        if event.kind in ("hard_bounce", "complaint"):
            add_suppression(conn, hashed, event.kind, source)
            detail = f"suppressed: {event.kind}"
        else:
            detail = "soft bounce (not suppressed)"
        if event.detail:
            detail += f"; {event.detail}"
        if subscriber_id is not None:
            log_event(conn, subscriber_id, None, _LOG_KIND[event.kind], source, detail)
