"""Suppressions: hashed addresses that are never mailed, surviving erasure."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.errors import StoreError
from pipeline.store.db import reading, transaction, utcnow
from pipeline.store.events import log_event
from pipeline.store.normalise import clean_source, hash_normalised, normalise_email
from pipeline.store.schema import subscribers, suppressions

REASONS = ("unsubscribed", "hard_bounce", "complaint", "erased")
# A person may lift these themselves by confirming a new subscription; never the others.
SELF_LIFTABLE = ("unsubscribed", "erased")
_EVENT_FOR = {"hard_bounce": "bounced", "complaint": "complained", "unsubscribed": "unsubscribed"}


def suppression_reason(conn: Connection, hashed: str) -> str | None:
    """The reason an address hash is suppressed, or None."""
    return conn.execute(
        sa.select(suppressions.c.reason).where(suppressions.c.address_hash == hashed)
    ).scalar_one_or_none()


def add_suppression(conn: Connection, hashed: str, reason: str, source: str) -> bool:
    """Insert a suppression unless one exists (the first reason stays); True if added."""
    if reason not in REASONS:
        raise StoreError(f"unknown suppression reason {reason!r}; one of {', '.join(REASONS)}")
    if suppression_reason(conn, hashed) is not None:
        return False
    conn.execute(
        suppressions.insert().values(
            address_hash=hashed, reason=reason, source=source, created_at=utcnow()
        )
    )
    return True


def suppress(engine: Engine, email: str, reason: str, source: str) -> None:
    """Never mail ``email`` again (idempotent); logs an event if the person is known."""
    hashed = hash_normalised(normalise_email(email))
    source = clean_source(source, "unknown")
    with transaction(engine) as conn:
        added = add_suppression(conn, hashed, reason, source)
        subscriber_id = conn.execute(
            sa.select(subscribers.c.id).where(subscribers.c.email_hash == hashed)
        ).scalar_one_or_none()
        kind = _EVENT_FOR.get(reason)
        if subscriber_id is not None and kind is not None:
            # Bounces and complaints are facts worth logging even when already suppressed.
            if added or reason != "unsubscribed":
                log_event(conn, subscriber_id, None, kind, source, f"suppressed: {reason}")


def is_suppressed(engine: Engine, email: str) -> bool:
    """Whether ``email`` is on the suppression list."""
    hashed = hash_normalised(normalise_email(email))
    with reading(engine) as conn:
        return suppression_reason(conn, hashed) is not None


def lift_suppression(conn: Connection, hashed: str) -> str | None:
    """Remove a self-liftable suppression (after the person confirmed anew); returns its reason."""
    reason = suppression_reason(conn, hashed)
    if reason in SELF_LIFTABLE:
        conn.execute(suppressions.delete().where(suppressions.c.address_hash == hashed))
        return reason
    return None
