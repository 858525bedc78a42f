"""Provider events applied once, and signed requests' one-time tokens.

Each event is one transaction that first records ``(provider, event_id)``; a replay
finds the row and changes nothing twice. A hard bounce or complaint becomes a
suppression in that same transaction; every event is logged against the person.
"""

from __future__ import annotations

import enum
import hashlib
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, SQLAlchemyError

from pipeline.errors import StoreError
from pipeline.store.db import insert_ignoring, one_line, reading, transaction, utcnow
from pipeline.store.events import log_event
from pipeline.store.schema import events, subscribers, webhook_events
from pipeline.store.suppress import add_suppression

MAX_EVENT_ID = 200
# How a soft bounce is logged against the person (counted by ``soft_bounce_issues``).
SOFT_BOUNCE_DETAIL = "soft bounce (not suppressed)"


class EventFate(enum.StrEnum):
    """What recording one provider event did."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # applied before (a replay, or a concurrent delivery won)
    REFUSED = "refused"  # a value the database refuses (too long, out of range)


def event_key(event_id: str) -> str:
    """The id as stored: a longer one is hashed, so a replay still finds its row."""
    if len(event_id) <= MAX_EVENT_ID:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()


def seen(engine: Engine, provider: str, event_id: str) -> bool:
    """Whether this provider event was already applied."""
    with reading(engine) as conn:
        found = conn.execute(
            sa.select(sa.literal(1)).where(
                webhook_events.c.provider == provider, webhook_events.c.event_id == event_id
            )
        ).first()
    return found is not None


def subscriber_email(engine: Engine, subscriber_id: int) -> str | None:
    """The address of subscriber ``subscriber_id`` (None when there is no such person,
    e.g. erased): a bounce that names only its delivery names the person this way."""
    with reading(engine) as conn:
        return conn.execute(
            sa.select(subscribers.c.email).where(subscribers.c.id == subscriber_id)
        ).scalar_one_or_none()


def soft_bounce_issues(engine: Engine, address_hash: str) -> frozenset[int]:
    """The issues for which this address soft-bounced before (from the event log)."""
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(events.c.issue_number)
            .distinct()
            .select_from(events.join(subscribers, subscribers.c.id == events.c.subscriber_id))
            .where(
                subscribers.c.email_hash == address_hash,
                events.c.kind == "bounced",
                events.c.detail.like(SOFT_BOUNCE_DETAIL + "%"),
                events.c.issue_number.is_not(None),
            )
        ).scalars()
        return frozenset(int(n) for n in rows)


def apply_event(
    engine: Engine,
    *,
    provider: str,
    event_id: str,
    kind: str,
    address_hash: str,
    suppress: bool,
    log_kind: str,
    detail: str,
    issue_number: int | None = None,
) -> EventFate:
    """Record the event once and, in the same transaction, suppress the address (when
    ``suppress``) and log ``log_kind`` against the person (when there is one), attributed
    to ``issue_number`` when the event named its issue.

    Not through ``transaction()``: a refused value must stay apart from a database that
    is down (the first skips one event, the second fails the request so the provider
    retries); both are caught here, and anything else comes out as ``StoreError``.
    """
    source = f"webhook:{provider}"
    try:
        with engine.begin() as conn:
            recorded = conn.execute(
                insert_ignoring(conn, webhook_events, ["provider", "event_id"])
                .values(provider=provider, event_id=event_id, kind=kind, received_at=utcnow())
                .returning(webhook_events.c.event_id)
            ).first()
            if recorded is None:
                return EventFate.DUPLICATE
            subscriber_id = conn.execute(
                sa.select(subscribers.c.id).where(subscribers.c.email_hash == address_hash)
            ).scalar_one_or_none()
            if suppress:
                add_suppression(conn, address_hash, kind, source)
            if subscriber_id is not None:
                log_event(
                    conn,
                    subscriber_id,
                    None,
                    log_kind,
                    source,
                    detail,
                    issue_number=issue_number,
                )
    except DataError:
        return EventFate.REFUSED
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from None
    return EventFate.APPLIED


def remember_token(
    engine: Engine, provider: str, token: str, keep: timedelta, now: datetime | None = None
) -> bool:
    """Record a signed request's one-time token; False when it was already used. Tokens
    older than ``keep`` are forgotten as new ones come (stored hashed)."""
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    name = f"{provider}:token"[:32]
    now = now or utcnow()
    with transaction(engine) as conn:
        conn.execute(
            webhook_events.delete().where(
                webhook_events.c.provider == name, webhook_events.c.received_at < now - keep
            )
        )
        added = conn.execute(
            insert_ignoring(conn, webhook_events, ["provider", "event_id"])
            .values(provider=name, event_id=digest, kind="token", received_at=now)
            .returning(webhook_events.c.event_id)
        ).first()
    return added is not None
