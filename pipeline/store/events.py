"""The append-only consent/event log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from pipeline.store.db import utcnow
from pipeline.store.schema import EVENT_KINDS, events


def log_event(
    conn: Connection,
    subscriber_id: int | None,
    list_id: int | None,
    kind: str,
    source: str,
    detail: str | None = None,
    at: datetime | None = None,
    issue_number: int | None = None,
) -> None:
    """Append one event. Callers must never put an address into ``detail``.

    ``issue_number``: the issue whose link, message or delivery the event came from, when
    known, so the issue's report counts it (attribution).
    """
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    conn.execute(
        events.insert().values(
            subscriber_id=subscriber_id,
            list_id=list_id,
            kind=kind,
            source=source[:200],
            detail=detail[:500] if detail else None,
            at=at or utcnow(),
            issue_number=issue_number,
        )
    )
