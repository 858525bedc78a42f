"""Apply verified bounce and complaint events: suppress, log, and remember the event id.

Each event is one transaction that first records ``(provider, event_id)``; a replay
hits the primary key, rolls back, and so changes nothing twice. Hard bounces and
complaints become suppressions; soft bounces are only logged against the person.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from pipeline.errors import StoreError
from pipeline.store.db import read_connection, utcnow
from pipeline.store.events import log_event
from pipeline.store.normalise import hash_normalised, normalise_email
from pipeline.store.schema import subscribers
from pipeline.store.suppress import add_suppression

from .common import Event

webhook_events = sa.Table(
    "webhook_events",
    sa.MetaData(),
    sa.Column("provider", sa.String(32), primary_key=True),
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

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


def apply_events(engine: Engine, events: Iterable[Event]) -> Applied:
    """Apply each event once; returns the tally."""
    applied = duplicates = skipped = 0
    for event in events:
        try:
            address = normalise_email(event.email)
        except StoreError:
            skipped += 1
            continue
        if seen(engine, event.provider, event.event_id):
            duplicates += 1
            continue
        try:
            _apply_one(engine, event, hash_normalised(address))
        except IntegrityError:  # a concurrent delivery of the same event won the race
            duplicates += 1
            continue
        applied += 1
    return Applied(applied, duplicates, skipped)


def _apply_one(engine: Engine, event: Event, hashed: str) -> None:
    source = f"webhook:{event.provider}"
    with engine.begin() as conn:
        conn.execute(
            webhook_events.insert().values(
                provider=event.provider,
                event_id=event.event_id[:200],
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
