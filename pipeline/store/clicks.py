"""Tracked links, clicks and opens, and their roll-up into per-link counts.

``links`` holds each sent issue's links (recorded when its send starts, idempotently),
``clicks`` one row per click or open (with whether a machine made it and why), and
``link_counts`` what clicks older than ``[tracking] keep_days`` were rolled up into.

A click token is ``<subscriber id>.<mac>``: 144 bits of HMAC-SHA256 under the person's
own ``token_key`` over the issue and the subscriber, so a click cannot be forged for
someone else or enumerated, and erasing the person (and their key) voids it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.store.db import insert_ignoring, reading, transaction
from pipeline.store.schema import clicks, deliveries, link_counts, links, subscribers

_CLICK_TOKEN = re.compile(r"^([1-9][0-9]{0,9})\.([A-Za-z0-9_-]{24})$")
MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class Link:
    """One link of an issue: its id in tracked URLs, where it goes, and its text."""

    link_id: int
    url: str
    text: str = ""


@dataclass(frozen=True)
class Hit:
    """One click or open as recorded: who (verified), when, and how it was classed."""

    issue_number: int
    link_id: int | None
    kind: str  # "click" | "open"
    subscriber_id: int
    at: datetime
    machine: bool
    reasons: str
    network: str | None


def _mac(token_key: str, issue: int, subscriber_id: int) -> str:
    msg = f"k{issue}.{subscriber_id}".encode()
    digest = hmac.new(token_key.encode(), msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode("ascii")


def click_token(token_key: str, issue: int, subscriber_id: int) -> str:
    """The per-recipient part of an issue's tracked links and pixel."""
    return f"{subscriber_id}.{_mac(token_key, issue, subscriber_id)}"


def parse_click_token(token: str) -> tuple[int, str] | None:
    """(subscriber id, mac) of a well-formed token, else None."""
    m = _CLICK_TOKEN.match(token)
    if not m or int(m.group(1)) > MAX_ID:
        return None
    return int(m.group(1)), m.group(2)


def verified_subscribers(
    conn: Connection, claims: Iterable[tuple[int, int, str]]
) -> set[tuple[int, int, str]]:
    """The (issue, subscriber id, mac) claims whose mac is right (constant-time compare)."""
    claims = set(claims)
    ids = {sid for _, sid, _ in claims}
    keys: dict[int, str] = {}
    for chunk in _chunks(sorted(ids), 500):
        rows = conn.execute(
            sa.select(subscribers.c.id, subscribers.c.token_key).where(subscribers.c.id.in_(chunk))
        )
        keys.update({r.id: r.token_key for r in rows})
    good = set()
    for issue, sid, mac in claims:
        # A MAC is computed for unknown ids too, so timing does not tell which exist.
        expected = _mac(keys.get(sid, "\0missing"), issue, sid)
        if hmac.compare_digest(expected, mac) and sid in keys:
            good.add((issue, sid, mac))
    return good


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def record_links(engine: Engine, issue_number: int, found: Sequence[Link]) -> None:
    """Record an issue's links when its send starts; again (a resume) changes nothing."""
    if not found:
        return
    with transaction(engine) as conn:
        conn.execute(
            insert_ignoring(conn, links, ["issue_number", "link_id"]),
            [
                {
                    "issue_number": issue_number,
                    "link_id": k.link_id,
                    "url": k.url[:2000],
                    "text": k.text[:500],
                }
                for k in found
            ],
        )


def issue_links(engine: Engine, issue_number: int) -> tuple[Link, ...]:
    """The recorded links of one issue, by link id."""
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(links.c.link_id, links.c.url, links.c.text)
            .where(links.c.issue_number == issue_number)
            .order_by(links.c.link_id)
        ).all()
    return tuple(Link(r.link_id, r.url, r.text) for r in rows)


def link_url(engine: Engine, issue_number: int, link_id: int) -> str | None:
    """Where a tracked link goes, or None when the issue has no such link."""
    if not (0 < issue_number <= MAX_ID and 0 < link_id <= MAX_ID):
        return None
    with reading(engine) as conn:
        return conn.execute(
            sa.select(links.c.url).where(
                links.c.issue_number == issue_number, links.c.link_id == link_id
            )
        ).scalar_one_or_none()


def sent_times(
    conn: Connection, pairs: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], datetime]:
    """When each (issue, subscriber) delivery was sent (absent: not sent)."""
    out: dict[tuple[int, int], datetime] = {}
    by_issue: dict[int, set[int]] = {}
    for issue, sid in pairs:
        by_issue.setdefault(issue, set()).add(sid)
    for issue, sids in by_issue.items():
        for chunk in _chunks(sorted(sids), 500):
            rows = conn.execute(
                sa.select(deliveries.c.subscriber_id, deliveries.c.sent_at).where(
                    deliveries.c.issue_number == issue,
                    deliveries.c.subscriber_id.in_(chunk),
                    deliveries.c.sent_at.is_not(None),
                )
            )
            for r in rows:
                at = r.sent_at if r.sent_at.tzinfo else r.sent_at.replace(tzinfo=UTC)
                out[(issue, r.subscriber_id)] = at
    return out


def link_totals(conn: Connection, issues: Iterable[int]) -> dict[int, int]:
    """How many links each issue has."""
    wanted = sorted(set(issues))
    if not wanted:
        return {}
    rows = conn.execute(
        sa.select(links.c.issue_number, sa.func.count())
        .where(links.c.issue_number.in_(wanted))
        .group_by(links.c.issue_number)
    )
    return {r[0]: r[1] for r in rows}


def insert_hits(conn: Connection, hits: Sequence[Hit]) -> None:
    """Insert classified clicks and opens (one statement for the batch)."""
    if not hits:
        return
    conn.execute(
        clicks.insert(),
        [
            {
                "issue_number": h.issue_number,
                "link_id": h.link_id,
                "kind": h.kind,
                "subscriber_id": h.subscriber_id,
                "at": h.at.astimezone(UTC),
                "machine": h.machine,
                "reasons": h.reasons[:200],
                "network": h.network,
            }
            for h in hits
        ],
    )


def recent_clicks(
    conn: Connection, issue_number: int, subscriber_ids: Iterable[int], since: datetime
) -> dict[int, list[tuple[int, int, datetime, str]]]:
    """Per subscriber: (id, link id, at, reasons) of their clicks on an issue since
    ``since`` (one query for the whole batch)."""
    out: dict[int, list[tuple[int, int, datetime, str]]] = {}
    for chunk in _chunks(sorted(set(subscriber_ids)), 500):
        rows = conn.execute(
            sa.select(
                clicks.c.id, clicks.c.subscriber_id, clicks.c.link_id, clicks.c.at, clicks.c.reasons
            ).where(
                clicks.c.issue_number == issue_number,
                clicks.c.subscriber_id.in_(chunk),
                clicks.c.kind == "click",
                clicks.c.at >= since.astimezone(UTC),
            )
        )
        for r in rows:
            at = r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC)
            out.setdefault(r.subscriber_id, []).append((r.id, r.link_id, at, r.reasons))
    return out


def mark_machine(conn: Connection, reasons_by_id: Mapping[int, str]) -> None:
    """Re-class clicks as machine with their new reasons (a burst seen after the fact)."""
    if not reasons_by_id:
        return
    conn.execute(
        clicks.update()
        .where(clicks.c.id == sa.bindparam("cid"))
        .values(machine=True, reasons=sa.bindparam("why")),
        [{"cid": cid, "why": why[:200]} for cid, why in reasons_by_id.items()],
    )


@dataclass(frozen=True)
class RollupReport:
    """What one roll-up did."""

    rolled: int
    counts: int


def rollup(engine: Engine, keep_days: int, now: datetime) -> RollupReport:
    """Move clicks older than ``keep_days`` into ``link_counts`` and delete them.

    Per (issue, link, kind): human and machine clicks and unique human people; link id 0
    holds the issue's totals (opens live only there). One transaction: a crash leaves
    either the rows or their counts, never both or neither. People are counted per
    roll-up: one person whose clicks on a link fall into two roll-ups counts twice.
    """
    cutoff = (now - timedelta(days=keep_days)).astimezone(UTC)
    old = clicks.c.at < cutoff
    human = sa.func.sum(sa.case((clicks.c.machine, 0), else_=1))
    machine = sa.func.sum(sa.case((clicks.c.machine, 1), else_=0))
    people = sa.func.count(
        sa.distinct(sa.case((clicks.c.machine, None), else_=clicks.c.subscriber_id))
    )
    link0 = sa.func.coalesce(clicks.c.link_id, 0)
    with transaction(engine) as conn:
        per_link = conn.execute(
            sa.select(
                clicks.c.issue_number, link0.label("lid"), clicks.c.kind, human, machine, people
            )
            .where(old, clicks.c.link_id.is_not(None))
            .group_by(clicks.c.issue_number, link0, clicks.c.kind)
        ).all()
        totals = conn.execute(
            sa.select(
                clicks.c.issue_number,
                sa.literal(0).label("lid"),
                clicks.c.kind,
                human,
                machine,
                people,
            )
            .where(old)
            .group_by(clicks.c.issue_number, clicks.c.kind)
        ).all()
        for row in [*per_link, *totals]:
            issue, lid, kind, h, m, p = row
            key = (
                link_counts.c.issue_number == issue,
                link_counts.c.link_id == lid,
                link_counts.c.kind == kind,
            )
            done = conn.execute(
                link_counts.update()
                .where(*key)
                .values(
                    human=link_counts.c.human + int(h or 0),
                    machine=link_counts.c.machine + int(m or 0),
                    human_people=link_counts.c.human_people + int(p or 0),
                    rolled_at=now.astimezone(UTC),
                )
            ).rowcount
            if not done:
                conn.execute(
                    link_counts.insert().values(
                        issue_number=issue,
                        link_id=lid,
                        kind=kind,
                        human=int(h or 0),
                        machine=int(m or 0),
                        human_people=int(p or 0),
                        rolled_at=now.astimezone(UTC),
                    )
                )
        rolled = conn.execute(clicks.delete().where(old)).rowcount
    return RollupReport(rolled=int(rolled or 0), counts=len(per_link) + len(totals))


@dataclass(frozen=True)
class ClickRow:
    """One stored click, as tests and reports read it."""

    issue_number: int
    link_id: int | None
    kind: str
    subscriber_id: int | None
    at: datetime
    machine: bool
    reasons: str
    network: str | None


def issue_clicks(engine: Engine, issue_number: int) -> list[ClickRow]:
    """Every stored click and open of one issue, oldest first."""
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(clicks).where(clicks.c.issue_number == issue_number).order_by(clicks.c.id)
        ).all()
    return [
        ClickRow(
            r.issue_number,
            r.link_id,
            r.kind,
            r.subscriber_id,
            r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC),
            bool(r.machine),
            r.reasons,
            r.network,
        )
        for r in rows
    ]
