"""The queries behind reports: an issue's counts, its links' clicks, growth events, and
the one mapping from a provider's event to the issue it came from (attribution).

Only counting here; ``pipeline/report`` turns the counts into figures and pictures.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.store.db import as_utc, reading
from pipeline.store.schema import (
    campaigns,
    clicks,
    deliveries,
    events,
    link_counts,
    links,
    lists,
    memberships,
)
from pipeline.store.webhook_events import SOFT_BOUNCE_DETAIL

# send/workers.delivery_key: "issue-014.subscriber-9"; the Message-ID is built on it
# ("<issue-014.subscriber-9.1a2b3c4d5e6f@example.com>").
_KEY = re.compile(r"issue-(\d{1,9})\.subscriber-(\d{1,12})(?![0-9])")


@dataclass(frozen=True)
class LinkCount:
    """One tracked link of an issue and its clicks (live rows plus rolled-up counts)."""

    link_id: int
    url: str
    text: str
    human: int
    human_people: int
    machine: int


@dataclass(frozen=True)
class IssueCounts:
    """What the store knows of one issue: its deliveries, the events attributed to it,
    its clicks and opens. Unique people rolled up by retention are added to the live
    ones (a person counted in both is counted twice: the roll-up forgot who they were)."""

    issue_number: int
    subject: str
    sent_at: datetime | None
    deliveries: int
    delivered: int
    failed: int
    failed_permanent: int
    unknown: int
    waiting: int
    hard_bounces: int
    soft_bounces: int
    complaints: int
    unsubscribes: int
    human_clicks: int
    human_clickers: int
    machine_clicks: int
    opens: int
    openers: int
    machine_opens: int
    links: tuple[LinkCount, ...]


@dataclass(frozen=True)
class GrowthEvent:
    """One event that changes a list's size: ``kind`` is confirmed, unsubscribed, or lost
    (a hard bounce or complaint, which suppresses the person on every list they are on)."""

    at: datetime
    list_name: str
    kind: str


def _scalar(conn: Connection | Engine, query: sa.Select) -> object:
    if isinstance(conn, Engine):
        with reading(conn) as c:
            return c.execute(query).scalar_one_or_none()
    return conn.execute(query).scalar_one_or_none()


def issue_for_delivery(
    conn: Connection | Engine,
    delivery_key: str | None = None,
    provider_id: str | None = None,
    message_id: str | None = None,
) -> int | None:
    """The issue a bounce, complaint or unsubscribe came from, by whatever the provider
    or the returned message still names: our delivery key (echoed as a tag or in a VERP
    address), the provider's own message id (``deliveries.provider_id``), or our
    Message-ID. None when nothing names a delivery we know."""
    for text in (delivery_key, message_id):
        found = _KEY.search(text or "")
        if found:
            number = int(found.group(1))
            # The key must name a delivery that was made: a forged or mangled one
            # attributes nothing.
            made = _scalar(
                conn,
                sa.select(deliveries.c.issue_number).where(
                    deliveries.c.issue_number == number,
                    deliveries.c.subscriber_id == int(found.group(2)),
                ),
            )
            if made is not None:
                return int(str(made))
    if provider_id:
        made = _scalar(
            conn,
            sa.select(sa.func.min(deliveries.c.issue_number)).where(
                deliveries.c.provider_id == provider_id[:300]
            ),
        )
        if made is not None:
            return int(str(made))
    return None


def sent_issues(engine: Engine) -> list[int]:
    """The issues with at least one delivery, oldest first."""
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(campaigns.c.issue_number).distinct().order_by(campaigns.c.issue_number)
        ).scalars()
        return [int(n) for n in rows]


def _bounce_hard(detail: str | None) -> bool:
    # Old rows and new ones alike: webhooks/apply writes "suppressed: hard_bounce" or
    # SOFT_BOUNCE_DETAIL; a manual suppression "suppressed: bounced". Soft is the one
    # marked so; anything else bounced is hard.
    return not (detail or "").startswith(SOFT_BOUNCE_DETAIL)


def issue_counts(engine: Engine, issue_number: int) -> IssueCounts | None:
    """Everything counted for ``issue_number``, or None when it was never sent."""
    n = int(issue_number)
    d = deliveries
    with reading(engine) as conn:
        camp = conn.execute(
            sa.select(
                sa.func.max(campaigns.c.subject),
                sa.func.min(campaigns.c.started_at),
                sa.func.count(),
            ).where(campaigns.c.issue_number == n)
        ).one()
        if not camp[2]:
            return None
        states: dict[tuple[str, bool], int] = {}
        for state, permanent, count in conn.execute(
            sa.select(d.c.state, d.c.permanent, sa.func.count())
            .where(d.c.issue_number == n)
            .group_by(d.c.state, d.c.permanent)
        ):
            states[(state, bool(permanent))] = int(count)

        def state_total(name: str) -> int:
            return sum(v for (s, _), v in states.items() if s == name)

        hard = soft = 0
        for detail, people in conn.execute(
            sa.select(events.c.detail, sa.func.count(sa.distinct(events.c.subscriber_id)))
            .where(events.c.issue_number == n, events.c.kind == "bounced")
            .group_by(events.c.detail)
        ):
            if _bounce_hard(detail):
                hard += int(people)
            else:
                soft += int(people)
        people_by_kind: dict[str, int] = dict(
            conn.execute(
                sa.select(events.c.kind, sa.func.count(sa.distinct(events.c.subscriber_id)))
                .where(
                    events.c.issue_number == n,
                    events.c.kind.in_(("complained", "unsubscribed")),
                )
                .group_by(events.c.kind)
            ).all()
        )

        live, unique_people = _live_clicks(conn, n)
        rolled: dict[tuple[str, int], tuple[int, int, int]] = {
            (r.kind, int(r.link_id)): (int(r.human), int(r.machine), int(r.human_people))
            for r in conn.execute(
                sa.select(link_counts).where(link_counts.c.issue_number == n)
            ).all()
        }
        link_rows = conn.execute(
            sa.select(links.c.link_id, links.c.url, links.c.text)
            .where(links.c.issue_number == n)
            .order_by(links.c.link_id)
        ).all()

    def kind_total(kind: str, machine: bool) -> int:
        return sum(v[0] for (k, m, _), v in live.items() if k == kind and m is machine)

    def rolled_total(kind: str) -> tuple[int, int, int]:
        return rolled.get((kind, 0), (0, 0, 0))

    link_list = []
    for row in link_rows:
        lid = int(row.link_id)
        human, human_people = live.get(("click", False, lid), (0, 0))
        machine = live.get(("click", True, lid), (0, 0))[0]
        r_human, r_machine, r_people = rolled.get(("click", lid), (0, 0, 0))
        link_list.append(
            LinkCount(
                lid,
                row.url,
                row.text,
                human + r_human,
                human_people + r_people,
                machine + r_machine,
            )
        )
    rc, ro = rolled_total("click"), rolled_total("open")
    return IssueCounts(
        issue_number=n,
        subject=camp[0] or "",
        sent_at=as_utc(camp[1]),
        deliveries=sum(states.values()),
        delivered=state_total("sent"),
        failed=state_total("failed"),
        failed_permanent=states.get(("failed", True), 0),
        unknown=state_total("unknown"),
        waiting=state_total("pending") + state_total("claimed") + state_total("inflight"),
        hard_bounces=hard,
        soft_bounces=soft,
        complaints=int(people_by_kind.get("complained", 0)),
        unsubscribes=int(people_by_kind.get("unsubscribed", 0)),
        human_clicks=kind_total("click", False) + rc[0],
        human_clickers=int(unique_people.get("click", 0)) + rc[2],
        machine_clicks=kind_total("click", True) + rc[1],
        opens=kind_total("open", False) + ro[0],
        openers=int(unique_people.get("open", 0)) + ro[2],
        machine_opens=kind_total("open", True) + ro[1],
        links=tuple(link_list),
    )


def _live_clicks(
    conn: Connection, n: int
) -> tuple[dict[tuple[str, bool, int | None], tuple[int, int]], dict[str, int]]:
    """Issue ``n``'s clicks and opens not rolled up yet: (kind, machine, link) -> (count,
    people), and kind -> unique human people. Both from ix_clicks_report alone.

    PostgreSQL sorts for every COUNT(DISTINCT), so there the people are grouped first
    and counted after (2.1 s -> 0.65 s at 1M clicks); SQLite walks the index in order
    for COUNT(DISTINCT) and is twice as slow with the nested grouping (0.48 s -> 0.98 s),
    so each gets its faster form (benchmarks/bench_report.py).
    """
    c = clicks.c
    live: dict[tuple[str, bool, int | None], tuple[int, int]] = {}
    if conn.dialect.name == "postgresql":
        per_person = (
            sa.select(c.kind, c.machine, c.link_id, c.subscriber_id, sa.func.count().label("n"))
            .where(c.issue_number == n)
            .group_by(c.kind, c.machine, c.link_id, c.subscriber_id)
            .subquery()
        )
        p = per_person.c
        grouped = sa.select(
            p.kind,
            p.machine,
            p.link_id,
            sa.func.sum(p.n),
            sa.func.count(p.subscriber_id),  # an erased person's NULL is nobody
        ).group_by(p.kind, p.machine, p.link_id)
        people_of = (
            sa.select(c.kind, c.subscriber_id)
            .where(c.issue_number == n, c.machine.is_(False))
            .group_by(c.kind, c.subscriber_id)
            .subquery()
        )
        unique = sa.select(people_of.c.kind, sa.func.count(people_of.c.subscriber_id)).group_by(
            people_of.c.kind
        )
    else:
        grouped = (
            sa.select(
                c.kind,
                c.machine,
                c.link_id,
                sa.func.count(),
                sa.func.count(sa.distinct(c.subscriber_id)),
            )
            .where(c.issue_number == n)
            .group_by(c.kind, c.machine, c.link_id)
        )
        unique = (
            sa.select(c.kind, sa.func.count(sa.distinct(c.subscriber_id)))
            .where(c.issue_number == n, c.machine.is_(False))
            .group_by(c.kind)
        )
    for kind, machine, link_id, total, people in conn.execute(grouped):
        live[(kind, bool(machine), link_id)] = (int(total), int(people))
    unique_people = {kind: int(people) for kind, people in conn.execute(unique)}
    return live, unique_people


def growth_events(engine: Engine, until: datetime | None = None) -> Iterator[GrowthEvent]:
    """Every event that changed a list's size, oldest first: confirmations and
    unsubscribes of a list, and hard bounces and complaints (the person is lost on every
    list they had confirmed by then)."""
    e = events.c
    with reading(engine) as conn:
        listed = conn.execute(
            sa.select(e.at, lists.c.name, e.kind)
            .join(lists, lists.c.id == e.list_id)
            .where(e.kind.in_(("confirmed", "unsubscribed")))
            .where(e.at <= until if until is not None else sa.true())
            .order_by(e.at, e.id)
        ).all()
        lost = conn.execute(
            sa.select(e.at, lists.c.name, e.detail, e.kind)
            .join(memberships, memberships.c.subscriber_id == e.subscriber_id)
            .join(lists, lists.c.id == memberships.c.list_id)
            .where(
                e.kind.in_(("bounced", "complained")),
                memberships.c.confirmed_at.is_not(None),
                memberships.c.confirmed_at <= e.at,
                # Someone who had already left the list is not lost to it again.
                sa.or_(
                    memberships.c.unsubscribed_at.is_(None), memberships.c.unsubscribed_at > e.at
                ),
            )
            .where(e.at <= until if until is not None else sa.true())
            .order_by(e.at, e.id)
        ).all()
    merged = [GrowthEvent(as_utc(r.at), r.name, r.kind) for r in listed]  # type: ignore[arg-type]
    merged += [
        GrowthEvent(as_utc(r.at), r.name, "lost")  # type: ignore[arg-type]
        for r in lost
        if r.kind == "complained" or _bounce_hard(r.detail)
    ]
    merged.sort(key=lambda g: g.at)
    yield from merged
