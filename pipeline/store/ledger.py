"""The send ledger: campaigns and one delivery row per recipient (the code's view of 0002).

A recipient is written down (``pending``) before any provider sees them, marked
``inflight`` in its own committed transaction just before the hand-over, and
``sent`` or ``failed`` after. A crash leaves ``inflight`` rows, which the next
run turns into ``unknown``: the provider may or may not have taken them.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from pipeline.errors import SendError
from pipeline.store.db import as_utc, reading, transaction, utcnow
from pipeline.store.schema import UTC_TIME, BigId, metadata, subscribers

STATES = ("pending", "inflight", "sent", "failed", "unknown")
CAMPAIGN_STATES = ("sending", "paused", "sent")
# A holder on another machine is presumed dead after this long without a heartbeat.
STALE_AFTER = timedelta(minutes=2)

campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("issue_number", sa.Integer, nullable=False),
    sa.Column("list_name", sa.String(64), nullable=False),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(500), nullable=False, server_default=""),
    sa.Column("content_commit", sa.String(64), nullable=False, server_default="unknown"),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("pause_reason", sa.String(500)),
    sa.Column("total", sa.Integer, nullable=False, server_default="0"),
    sa.Column("holder", sa.String(200)),
    sa.Column("heartbeat", UTC_TIME),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("started_at", UTC_TIME),
    sa.Column("finished_at", UTC_TIME),
    sa.UniqueConstraint("issue_number", "list_name", name="uq_campaigns_issue_list"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column(
        "campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("issue_number", sa.Integer, nullable=False),
    sa.Column("subscriber_id", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("permanent", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("provider_id", sa.String(300)),
    sa.Column("last_error", sa.String(500)),
    sa.Column("next_attempt_at", UTC_TIME),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("updated_at", UTC_TIME, nullable=False),
    sa.Column("sent_at", UTC_TIME),
    sa.UniqueConstraint("issue_number", "subscriber_id", name="uq_deliveries_issue_subscriber"),
    sa.Index("ix_deliveries_work", "campaign_id", "state", "subscriber_id"),
)


@dataclass(frozen=True)
class Campaign:
    """One issue sent to one list."""

    id: int
    issue_number: int
    list_name: str
    provider: str
    subject: str
    content_commit: str
    state: str
    pause_reason: str | None
    total: int
    holder: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class Claimed:
    """A delivery row handed to a worker."""

    id: int
    subscriber_id: int
    attempts: int


def holder_name() -> str:
    """Who is sending: ``host:pid:nonce``, new for every send, so that two sends in one
    process (the daemon's and an operator's thread) are told apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _holder_alive(holder: str | None, heartbeat: datetime | None, now: datetime) -> bool:
    if not holder:
        return False
    host, _, rest = holder.partition(":")
    pid, _, nonce = rest.partition(":")
    fresh = heartbeat is not None and now - as_utc(heartbeat) < STALE_AFTER
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            # Another send of this very process: alive while it beats. A name without a
            # nonce is from before sends were told apart: an earlier, finished call.
            return bool(nonce) and fresh
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return fresh


def _campaign(row: sa.Row) -> Campaign:
    return Campaign(
        id=row.id,
        issue_number=row.issue_number,
        list_name=row.list_name,
        provider=row.provider,
        subject=row.subject,
        content_commit=row.content_commit,
        state=row.state,
        pause_reason=row.pause_reason,
        total=row.total,
        holder=row.holder,
        created_at=as_utc(row.created_at),
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at),
    )


def find_campaign(engine: Engine, issue_number: int, list_name: str) -> Campaign | None:
    """The campaign of an issue to a list, if one was started."""
    with reading(engine) as conn:
        row = conn.execute(
            sa.select(campaigns).where(
                campaigns.c.issue_number == issue_number, campaigns.c.list_name == list_name
            )
        ).first()
    return _campaign(row) if row else None


def campaigns_of(engine: Engine, issue_number: int) -> list[Campaign]:
    """Every campaign of one issue, oldest first."""
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(campaigns)
            .where(campaigns.c.issue_number == issue_number)
            .order_by(campaigns.c.id)
        ).all()
    return [_campaign(r) for r in rows]


def start_campaign(
    engine: Engine,
    issue_number: int,
    list_name: str,
    *,
    provider: str,
    subject: str,
    content_commit: str,
    holder: str,
) -> Campaign:
    """Create or resume the campaign and hold it; SendError while another sender holds it."""
    now = utcnow()
    key = (campaigns.c.issue_number == issue_number, campaigns.c.list_name == list_name)
    with transaction(engine) as conn:
        # Write before reading. SQLite then holds the write lock for the whole check (a
        # read that later writes fails at once if another sender wrote in between), and
        # PostgreSQL makes a concurrent creator wait here instead of both going ahead.
        cid = conn.execute(
            _insert_ignoring(conn, campaigns, ["issue_number", "list_name"])
            .values(
                issue_number=issue_number,
                list_name=list_name,
                provider=provider,
                subject=subject[:500],
                content_commit=content_commit[:64],
                state="sending",
                holder=holder,
                heartbeat=now,
                created_at=now,
                started_at=now,
            )
            .returning(campaigns.c.id)
        ).scalar_one_or_none()
        if cid is None:
            # FOR UPDATE: two senders resuming at once must not both see a dead holder.
            row = conn.execute(sa.select(campaigns).where(*key).with_for_update()).one()
            if row.holder != holder and _holder_alive(row.holder, row.heartbeat, now):
                raise SendError(
                    f"issue {issue_number:03d} to list {list_name!r} is being sent right now "
                    f"by {row.holder}; wait for it or stop it first"
                )
            cid = row.id
            conn.execute(
                campaigns.update()
                .where(campaigns.c.id == cid)
                .values(holder=holder, heartbeat=now, provider=provider)
            )
        row = conn.execute(sa.select(campaigns).where(campaigns.c.id == cid)).one()
    return _campaign(row)


def heartbeat(engine: Engine, campaign_id: int, holder: str) -> None:
    """Prove the holder is alive."""
    with transaction(engine) as conn:
        conn.execute(
            campaigns.update()
            .where(campaigns.c.id == campaign_id, campaigns.c.holder == holder)
            .values(heartbeat=utcnow())
        )


def release(engine: Engine, campaign_id: int, holder: str) -> None:
    """Let go of the campaign so another run may pick it up at once."""
    with transaction(engine) as conn:
        conn.execute(
            campaigns.update()
            .where(campaigns.c.id == campaign_id, campaigns.c.holder == holder)
            .values(holder=None, heartbeat=None)
        )


def set_state(
    engine: Engine,
    campaign_id: int,
    state: str,
    reason: str | None = None,
    total: int | None = None,
) -> None:
    """Move a campaign to sending, paused (with a reason) or sent."""
    if state not in CAMPAIGN_STATES:
        raise ValueError(state)
    values: dict = {"state": state, "pause_reason": reason}
    if state == "sent":
        values["finished_at"] = utcnow()
    if total is not None:
        values["total"] = total
    with transaction(engine) as conn:
        conn.execute(campaigns.update().where(campaigns.c.id == campaign_id).values(**values))


def _insert_ignoring(conn: Connection, table: sa.Table, unique: list[str]):
    """INSERT ... ON CONFLICT (``unique``) DO NOTHING in the connection's dialect."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=unique)


def enqueue(
    engine: Engine, campaign_id: int, issue_number: int, subscriber_ids: Sequence[int]
) -> int:
    """Write a pending row per subscriber not yet in this issue's ledger; returns how many."""
    if not subscriber_ids:
        return 0
    now = utcnow()
    rows = [
        {
            "campaign_id": campaign_id,
            "issue_number": issue_number,
            "subscriber_id": sid,
            "state": "pending",
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for sid in subscriber_ids
    ]
    with transaction(engine) as conn:
        before = _count(conn, campaign_id)
        conn.execute(_insert_ignoring(conn, deliveries, ["issue_number", "subscriber_id"]), rows)
        return _count(conn, campaign_id) - before


def _count(conn: Connection, campaign_id: int) -> int:
    return conn.execute(
        sa.select(sa.func.count()).where(deliveries.c.campaign_id == campaign_id)
    ).scalar_one()


def settle_inflight(engine: Engine, campaign_id: int, *, retry_unknown: bool) -> tuple[int, int]:
    """After a crash: inflight rows become unknown; with ``retry_unknown`` unknown rows
    go back to pending. Returns (rows found in flight, rows put back to pending)."""
    now = utcnow()
    with transaction(engine) as conn:
        found = conn.execute(
            deliveries.update()
            .where(deliveries.c.campaign_id == campaign_id, deliveries.c.state == "inflight")
            .values(
                state="unknown",
                last_error="in flight when a send stopped; the provider may have it",
                updated_at=now,
            )
        ).rowcount
        back = 0
        if retry_unknown:
            back = conn.execute(
                deliveries.update()
                .where(deliveries.c.campaign_id == campaign_id, deliveries.c.state == "unknown")
                .values(state="pending", next_attempt_at=None, updated_at=now)
            ).rowcount
    return found, back


def claim(engine: Engine, campaign_id: int, limit: int, now: datetime) -> list[Claimed]:
    """Mark up to ``limit`` due pending rows in flight, lowest subscriber id first."""
    d = deliveries.c
    due = sa.or_(d.next_attempt_at.is_(None), d.next_attempt_at <= now)
    pick = (
        sa.select(d.id)
        .where(d.campaign_id == campaign_id, d.state == "pending", due)
        .order_by(d.subscriber_id)
        .limit(limit)
    )
    if engine.dialect.name == "postgresql":
        # Under READ COMMITTED two claimers would pick the same rows; skip the locked ones.
        pick = pick.with_for_update(skip_locked=True)
    # MATERIALIZED: as a plain IN (subquery) PostgreSQL rescans the LIMIT per row,
    # skipping the rows it has just moved, and so claims the whole campaign.
    picked = pick.cte("picked").prefix_with("MATERIALIZED")
    # One statement that returns only the rows it moved: a row is handed out once,
    # and SQLite takes its write lock up front instead of failing on an upgrade.
    with transaction(engine) as conn:
        rows = conn.execute(
            deliveries.update()
            .where(d.id.in_(sa.select(picked.c.id)), d.state == "pending")
            .values(state="inflight", updated_at=now)
            .returning(d.id, d.subscriber_id, d.attempts)
        ).all()
    rows.sort(key=lambda r: r.subscriber_id)
    return [Claimed(r.id, r.subscriber_id, r.attempts) for r in rows]


def next_due(engine: Engine, campaign_id: int) -> datetime | None:
    """When the earliest waiting retry is due; None when nothing is pending."""
    d = deliveries.c
    with reading(engine) as conn:
        row = conn.execute(
            sa.select(sa.func.count(), sa.func.min(d.next_attempt_at)).where(
                d.campaign_id == campaign_id, d.state == "pending"
            )
        ).one()
    if not row[0]:
        return None
    return as_utc(row[1]) or utcnow()


@dataclass(frozen=True)
class Outcome:
    """What to write for one delivery after the provider answered."""

    id: int
    state: str  # sent | pending (retry later) | failed
    provider_id: str | None = None
    error: str | None = None
    permanent: bool = False
    next_attempt_at: datetime | None = None


def record(engine: Engine, outcomes: Iterable[Outcome], now: datetime | None = None) -> None:
    """Write the providers' answers for a batch in one transaction."""
    now = now or utcnow()
    sent, rest = [], []
    for o in outcomes:
        if o.state == "sent":
            sent.append({"b_id": o.id, "b_pid": (o.provider_id or "")[:300] or None})
        else:
            rest.append(
                {
                    "b_id": o.id,
                    "b_state": o.state,
                    "b_err": (o.error or "")[:500],
                    "b_perm": o.permanent,
                    "b_next": o.next_attempt_at,
                }
            )
    d = deliveries.c
    with transaction(engine) as conn:
        if sent:
            conn.execute(
                deliveries.update()
                .where(d.id == sa.bindparam("b_id"))
                .values(
                    state="sent",
                    provider_id=sa.bindparam("b_pid"),
                    attempts=d.attempts + 1,
                    last_error=None,
                    sent_at=now,
                    updated_at=now,
                ),
                sent,
            )
        if rest:
            conn.execute(
                deliveries.update()
                .where(d.id == sa.bindparam("b_id"))
                .values(
                    state=sa.bindparam("b_state"),
                    last_error=sa.bindparam("b_err"),
                    permanent=sa.bindparam("b_perm"),
                    next_attempt_at=sa.bindparam("b_next"),
                    attempts=d.attempts + 1,
                    updated_at=now,
                ),
                rest,
            )


def state_counts(engine: Engine, campaign_id: int) -> dict[str, int]:
    """How many deliveries of a campaign are in each state (every state present)."""
    d = deliveries.c
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(d.state, sa.func.count())
            .where(d.campaign_id == campaign_id)
            .group_by(d.state)
        ).all()
    out = dict.fromkeys(STATES, 0)
    out.update({state: n for state, n in rows})
    return out


def permanent_failures(engine: Engine, campaign_id: int) -> int:
    """How many deliveries failed for good (not counting exhausted retries)."""
    d = deliveries.c
    with reading(engine) as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(
                d.campaign_id == campaign_id, d.state == "failed", d.permanent.is_(True)
            )
        ).scalar_one()


def failures(engine: Engine, campaign_id: int, limit: int = 20) -> list[tuple[str, bool, int]]:
    """Failed deliveries grouped by reason: (reason, permanent, count), biggest first."""
    d = deliveries.c
    n = sa.func.count().label("n")
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(d.last_error, d.permanent, n)
            .where(d.campaign_id == campaign_id, d.state.in_(("failed", "unknown")))
            .group_by(d.last_error, d.permanent)
            .order_by(n.desc(), d.last_error)
            .limit(limit)
        ).all()
    return [(r.last_error or "", bool(r.permanent), r.n) for r in rows]


def failed_addresses(
    engine: Engine, campaign_id: int, limit: int = 50
) -> list[tuple[int, str | None, str, str]]:
    """The failed or unknown deliveries: (subscriber id, email if still known, state, reason)."""
    d = deliveries.c
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(d.subscriber_id, subscribers.c.email, d.state, d.last_error)
            .select_from(deliveries.outerjoin(subscribers, subscribers.c.id == d.subscriber_id))
            .where(d.campaign_id == campaign_id, d.state.in_(("failed", "unknown")))
            .order_by(d.subscriber_id)
            .limit(limit)
        ).all()
    return [(r.subscriber_id, r.email, r.state, r.last_error or "") for r in rows]


def timing(engine: Engine, campaign_id: int) -> tuple[datetime | None, datetime | None]:
    """The first and last moment a delivery of the campaign was recorded sent."""
    d = deliveries.c
    with reading(engine) as conn:
        row = conn.execute(
            sa.select(sa.func.min(d.sent_at), sa.func.max(d.sent_at)).where(
                d.campaign_id == campaign_id, d.state == "sent"
            )
        ).one()
    return as_utc(row[0]), as_utc(row[1])


def release_claims(engine: Engine, ids: Sequence[int], next_attempt_at: datetime | None) -> None:
    """Put claimed rows back to pending without counting an attempt: no provider saw them
    (a stop before the hand-over, or a provider that could not be reached)."""
    if not ids:
        return
    now = utcnow()
    d = deliveries.c
    with transaction(engine) as conn:
        conn.execute(
            deliveries.update()
            .where(d.id.in_(list(ids)), d.state == "inflight")
            .values(state="pending", next_attempt_at=next_attempt_at, updated_at=now)
        )
