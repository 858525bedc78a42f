"""Reports' fixtures: a seeded issue (ledger, events, links, clicks, roll-ups) on each
backend, and the helpers that seed it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from pipeline.store import add_subscriber
from pipeline.store.events import log_event
from pipeline.store.schema import campaigns, clicks, deliveries, link_counts, links, subscribers
from pipeline.store.webhook_events import SOFT_BOUNCE_DETAIL

ISSUE = 7
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
T0 = datetime(2026, 11, 4, 15, 0, tzinfo=UTC)


def seed_people(engine, count: int) -> list[int]:
    ids = []
    for n in range(1, count + 1):
        add_subscriber(engine, f"reader{n}@example.com", f"R{n}", confirmed=True, source="test")
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(subscribers.c.id).order_by(subscribers.c.id)).scalars())
    return ids


def seed_campaign(
    conn, issue: int, states: list[tuple[int, str, bool, str | None]], at: datetime = T0
) -> None:
    """A campaign of ``issue`` with one delivery per (subscriber, state, permanent, provider id)."""
    cid = conn.execute(
        campaigns.insert()
        .values(
            issue_number=issue,
            list_name="main",
            provider="outbox",
            subject=f"Issue {issue}",
            state="sent",
            created_at=at,
            started_at=at,
        )
        .returning(campaigns.c.id)
    ).scalar_one()
    for sid, state, permanent, provider_id in states:
        conn.execute(
            deliveries.insert().values(
                campaign_id=cid,
                issue_number=issue,
                subscriber_id=sid,
                state=state,
                permanent=permanent,
                provider_id=provider_id,
                created_at=T0,
                updated_at=T0,
            )
        )


def seed_click(conn, sid, link_id, *, machine=False, kind="click", issue=ISSUE):
    conn.execute(
        clicks.insert().values(
            issue_number=issue,
            link_id=link_id,
            kind=kind,
            subscriber_id=sid,
            at=T0 + timedelta(hours=1),
            machine=machine,
            reasons="scanner" if machine else "",
        )
    )


@pytest.fixture
def seeded(store):
    """Issue 7 to ten people: 6 sent, 2 failed (1 permanently), 1 unknown, 1 waiting;
    bounces, a complaint, an unsubscribe, clicks and opens, and rolled-up old clicks."""
    s = seed_people(store, 10)
    with store.begin() as conn:
        seed_campaign(
            conn,
            ISSUE,
            [(sid, "sent", False, f"pm-{sid}") for sid in s[:6]]
            + [(s[6], "failed", True, None), (s[7], "failed", False, None)]
            + [(s[8], "unknown", False, None), (s[9], "pending", False, None)],
        )
        seed_campaign(conn, 8, [(s[0], "sent", False, None)])
        hard = "suppressed: hard_bounce; 550 no such user"
        log_event(conn, s[0], None, "bounced", "webhook:postmark", hard, issue_number=ISSUE)
        # An old row, from before soft and hard were told apart this way, reads as hard.
        log_event(conn, s[5], None, "bounced", "cli", "suppressed: bounced", issue_number=ISSUE)
        for _ in range(2):  # the same person soft-bounced twice: one person
            log_event(conn, s[1], None, "bounced", "webhook:x", SOFT_BOUNCE_DETAIL, issue_number=7)
        log_event(
            conn, s[2], None, "complained", "webhook:x", "suppressed: complaint", issue_number=7
        )
        # One unsubscribe "from everything" logs per list and once more: one person.
        log_event(conn, s[3], 1, "unsubscribed", "web:unsubscribe", "list main", issue_number=7)
        log_event(conn, s[3], None, "unsubscribed", "web:unsubscribe", "all lists", issue_number=7)
        # Other issues' and unattributed events count nowhere here.
        log_event(
            conn, s[4], None, "complained", "webhook:x", "suppressed: complaint", issue_number=8
        )
        log_event(conn, s[4], 1, "unsubscribed", "cli", "list main")
        conn.execute(
            links.insert(),
            [
                {
                    "issue_number": ISSUE,
                    "link_id": 1,
                    "url": "https://a.example/",
                    "text": "Read A",
                },
                {"issue_number": ISSUE, "link_id": 2, "url": "https://b.example/", "text": "B"},
            ],
        )
        seed_click(conn, s[0], 1)
        seed_click(conn, s[0], 1)
        seed_click(conn, s[1], 1)
        seed_click(conn, s[1], 2)
        seed_click(conn, s[4], 2, machine=True)
        seed_click(conn, s[5], 1, machine=True)
        seed_click(conn, s[2], 1, issue=8)  # another issue's click
        seed_click(conn, s[0], None, kind="open")
        seed_click(conn, s[4], None, kind="open", machine=True)
        rolled = {"human": 3, "machine": 4, "human_people": 2, "rolled_at": T0}
        conn.execute(
            link_counts.insert(),
            [
                {"issue_number": ISSUE, "link_id": 0, "kind": "click", **rolled},
                {"issue_number": ISSUE, "link_id": 1, "kind": "click", **rolled},
            ],
        )
    return store, s


@pytest.fixture
def cli_store(brief, project, store_url):
    """The ``brief`` command pointed at the parametrised store."""
    from tests.fixtures_send import set_keys

    set_keys(project, "database", url=f'"{store_url}"')
    return brief
