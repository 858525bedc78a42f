"""An issue's report: the store's counts with the rates and totals people read."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from pipeline.errors import NotFound
from pipeline.store.reports import IssueCounts, LinkCount, issue_counts, sent_issues

SPARKS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class IssueReport:
    """How one issue did. ``hard_bounces`` counts both the provider's later hard bounces
    and the permanent failures at send (``hard_bounces_at_send``, read from the ledger:
    the address was refused outright, which is a hard bounce of this issue)."""

    issue_number: int
    subject: str
    sent_at: datetime | None
    deliveries: int
    delivered: int
    failed: int
    unknown: int
    waiting: int
    hard_bounces: int
    hard_bounces_at_send: int
    soft_bounces: int
    complaints: int
    unsubscribes: int
    human_clickers: int
    click_rate: float
    human_clicks: int
    machine_clicks: int
    opens: int | None
    openers: int | None
    machine_opens: int | None
    links: tuple[LinkCount, ...]

    @property
    def label(self) -> str:
        """The issue as people write it: 014."""
        return f"{self.issue_number:03d}"

    def as_json(self) -> dict[str, Any]:
        """The report as plain JSON values (``brief report --json``)."""
        data = asdict(self)
        data["sent_at"] = self.sent_at.isoformat() if self.sent_at else None
        data["links"] = [asdict(link) for link in self.links]
        return data


def rate(part: int, whole: int) -> float:
    """``part / whole`` rounded to 4 places; 0 when nothing was delivered."""
    return round(part / whole, 4) if whole else 0.0


def from_counts(c: IssueCounts) -> IssueReport:
    """The report of the counts ``c``. Opens are None when the issue had no open tracked
    (the pixel is off by default): "0 opens" would claim a measurement nobody made."""
    tracked_opens = bool(c.opens or c.machine_opens)
    return IssueReport(
        issue_number=c.issue_number,
        subject=c.subject,
        sent_at=c.sent_at,
        deliveries=c.deliveries,
        delivered=c.delivered,
        failed=c.failed,
        unknown=c.unknown,
        waiting=c.waiting,
        hard_bounces=c.hard_bounces + c.failed_permanent,
        hard_bounces_at_send=c.failed_permanent,
        soft_bounces=c.soft_bounces,
        complaints=c.complaints,
        unsubscribes=c.unsubscribes,
        human_clickers=c.human_clickers,
        click_rate=rate(c.human_clickers, c.delivered),
        human_clicks=c.human_clicks,
        machine_clicks=c.machine_clicks,
        opens=c.opens if tracked_opens else None,
        openers=c.openers if tracked_opens else None,
        machine_opens=c.machine_opens if tracked_opens else None,
        links=tuple(sorted(c.links, key=lambda link: (-link.human_people, link.link_id))),
    )


def issue_report(engine: Engine, issue_number: int) -> IssueReport:
    """The report of one sent issue; NotFound when it was never sent."""
    counts = issue_counts(engine, issue_number)
    if counts is None:
        raise NotFound(f"issue {issue_number:03d} was never sent")
    return from_counts(counts)


def all_reports(engine: Engine) -> list[IssueReport]:
    """One report per sent issue, oldest first."""
    return [issue_report(engine, n) for n in sent_issues(engine)]


def sparkline(values: list[float]) -> str:
    """One block character per value, scaled from 0 to the largest (all low when 0)."""
    top = max(values, default=0.0)
    if top <= 0:
        return SPARKS[0] * len(values)
    return "".join(
        SPARKS[min(len(SPARKS) - 1, int(v / top * (len(SPARKS) - 1) + 0.5))] for v in values
    )
