"""Slot events: the once-per-slot things the daemon did that have no ledger of their own
(the [TEST] copy, a skip, a miss), each recorded once, fenced by the daemon's lock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.store.db import insert_ignoring, reading, transaction
from pipeline.store.locks import fence
from pipeline.store.schema import slot_events


def record(
    engine: Engine,
    lock: str,
    *,
    slot: date,
    kind: str,
    issue: int | None,
    holder: str,
    now: datetime,
    detail: str = "",
) -> bool:
    """Record ``kind`` for ``slot`` in the transaction that proves ``holder`` holds
    ``lock``; False when it was recorded already (by us earlier, or by another daemon).
    LockLost when the lock went to another daemon."""
    with transaction(engine) as conn:
        fence(conn, lock, holder, now)
        added = conn.execute(
            insert_ignoring(conn, slot_events, ["slot", "kind"])
            .values(
                slot=slot,
                kind=kind,
                issue=issue,
                holder=holder,
                detail=detail[:500],
                at=now.astimezone(UTC),
            )
            # RETURNING, not rowcount: psycopg reports -1 for this INSERT on PostgreSQL.
            .returning(slot_events.c.slot)
        ).first()
    return added is not None


def recorded(engine: Engine, days: Iterable[date]) -> Mapping[date, frozenset[str]]:
    """The kinds recorded per slot day, for ``days``."""
    found: dict[date, set[str]] = {}
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(slot_events.c.slot, slot_events.c.kind).where(
                slot_events.c.slot.in_(sorted(set(days)))
            )
        )
        for row in rows:
            found.setdefault(row.slot, set()).add(row.kind)
    return {day: frozenset(kinds) for day, kinds in found.items()}


def fenced(engine: Engine, lock: str, holder: str, now: datetime) -> None:
    """Prove ``holder`` still holds ``lock`` (LockLost otherwise), e.g. before a send."""
    with transaction(engine) as conn:
        fence(conn, lock, holder, now)
