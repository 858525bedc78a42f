"""Growth over time: per list and per day, week or month (in the newsletter's time
zone), the new confirmed, the unsubscribed, the lost to hard bounces and complaints,
the net change and the total after it."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from pipeline.store.reports import growth_events


class Period(enum.StrEnum):
    """How wide one row of growth is."""

    DAY = "day"
    WEEK = "week"  # Monday to Sunday
    MONTH = "month"


@dataclass(frozen=True)
class GrowthRow:
    """One list in one period. ``total`` is the list's size at the period's end, counted
    from every event since the list began (not only those after ``--since``)."""

    list_name: str
    period: date
    confirmed: int
    unsubscribed: int
    lost: int
    net: int
    total: int

    def as_json(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {**asdict(self), "period": self.period.isoformat()}


def net_per_issue(engine: Engine, sent: list[tuple[int, datetime | None]]) -> list[int]:
    """Net growth (all lists) from each issue's send to the next one's (to now for the
    last): confirmed minus unsubscribed and lost. ``sent``: (issue, sent_at), oldest
    first; an issue that never started counts 0. Events before the first issue count
    nowhere."""
    starts = [at for _, at in sent]
    nets = [0] * len(sent)
    for event in growth_events(engine):
        # The last issue sent at or before the event.
        owner = None
        for i, at in enumerate(starts):
            if at is not None and at <= event.at:
                owner = i
        if owner is not None:
            nets[owner] += 1 if event.kind == "confirmed" else -1
    return nets


def bucket(at: datetime, tz: ZoneInfo, by: Period) -> date:
    """The first day of the period ``at`` falls in, on the calendar of ``tz``."""
    day = at.astimezone(tz).date()
    if by is Period.WEEK:
        return day - timedelta(days=day.weekday())
    if by is Period.MONTH:
        return day.replace(day=1)
    return day


def growth(
    engine: Engine, tz: ZoneInfo, by: Period = Period.MONTH, since: date | None = None
) -> list[GrowthRow]:
    """Rows per list and period (periods with no event are left out), oldest first and
    by list name within a period; ``since``: only periods that end on or after it."""
    counts: dict[tuple[str, date], list[int]] = {}
    for event in growth_events(engine):
        key = (event.list_name, bucket(event.at, tz, by))
        row = counts.setdefault(key, [0, 0, 0])
        row[("confirmed", "unsubscribed", "lost").index(event.kind)] += 1
    totals: dict[str, int] = {}
    rows = []
    for (name, period), (confirmed, unsubscribed, lost) in sorted(
        counts.items(), key=lambda kv: (kv[0][1], kv[0][0])
    ):
        net = confirmed - unsubscribed - lost
        totals[name] = totals.get(name, 0) + net
        rows.append(GrowthRow(name, period, confirmed, unsubscribed, lost, net, totals[name]))
    if since is not None:
        start = bucket(datetime.combine(since, datetime.min.time(), tz), tz, by)
        rows = [r for r in rows if r.period >= start]
    return rows
