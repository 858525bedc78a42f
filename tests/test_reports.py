"""Reports (issue 14): every unsubscribe, complaint and bounce tied to its issue; an
issue's figures exact for a seeded ledger, events and clicks; growth per period in the
newsletter's zone; the CLI's JSON. Each on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from pipeline.store import add_subscriber, audience
from pipeline.store.schema import (
    events,
    memberships,
    subscribers,
)
from tests.fixtures_reports import FORM, ISSUE, seed_campaign, seed_people
from tests.fixtures_web import post_resend


def test_issue_report_figures_are_exact_for_a_seeded_ledger(seeded):
    from pipeline.report.figures import issue_report

    store, _ = seeded
    r = issue_report(store, ISSUE)
    assert (r.deliveries, r.delivered, r.failed, r.unknown, r.waiting) == (10, 6, 2, 1, 1)
    # The provider's hard bounce, the old-style row, and the permanent failure at send.
    assert (r.hard_bounces, r.hard_bounces_at_send, r.soft_bounces) == (3, 1, 1)
    assert (r.complaints, r.unsubscribes) == (1, 1)
    # Two live human clickers (ann twice, bob on two links) and two rolled up.
    assert (r.human_clickers, r.human_clicks, r.machine_clicks) == (4, 4 + 3, 2 + 4)
    assert r.click_rate == round(4 / 6, 4)
    assert (r.opens, r.openers, r.machine_opens) == (1, 1, 1)
    by_id = {link.link_id: link for link in r.links}
    assert (by_id[1].url, by_id[1].text) == ("https://a.example/", "Read A")
    assert (by_id[1].human, by_id[1].human_people, by_id[1].machine) == (3 + 3, 2 + 2, 1 + 4)
    assert (by_id[2].human, by_id[2].human_people, by_id[2].machine) == (1, 1, 1)
    assert [link.link_id for link in r.links] == [1, 2]  # most people first


def test_report_without_tracked_opens_says_none_not_zero(store):
    from pipeline.report.figures import issue_report

    s = seed_people(store, 1)
    with store.begin() as conn:
        seed_campaign(conn, 3, [(s[0], "sent", False, None)])
    r = issue_report(store, 3)
    assert (r.opens, r.openers, r.machine_opens) == (None, None, None)
    assert (r.delivered, r.human_clickers, r.click_rate) == (1, 0, 0.0)


def test_report_of_an_issue_never_sent_is_not_found(store):
    from pipeline.errors import NotFound
    from pipeline.report.figures import issue_report

    with pytest.raises(NotFound, match="issue 042 was never sent"):
        issue_report(store, 42)


def test_issue_for_delivery_by_key_provider_id_or_message_id(seeded):
    from pipeline.store.reports import issue_for_delivery

    store, s = seeded
    key = f"issue-007.subscriber-{s[0]}"
    assert issue_for_delivery(store, delivery_key=key) == 7
    assert issue_for_delivery(store, message_id=f"<{key}.0a1b2c3d4e5f@brief.example.com>") == 7
    assert issue_for_delivery(store, provider_id=f"pm-{s[2]}") == 7
    with store.connect() as conn:  # a connection serves as well as the engine
        assert issue_for_delivery(conn, delivery_key=f"issue-008.subscriber-{s[0]}") == 8
    # A key naming no delivery made, an unknown id, nothing at all: no issue.
    assert issue_for_delivery(store, delivery_key=f"issue-009.subscriber-{s[0]}") is None
    assert issue_for_delivery(store, delivery_key="issue-007.subscriber-999999") is None
    assert issue_for_delivery(store, provider_id="pm-unknown") is None
    assert issue_for_delivery(store, message_id="<someone-else@example.org>") is None
    assert issue_for_delivery(store) is None


# -- attribution through the real public app ------------------------------------------------


def _issue_links(settings, engine, issue: int) -> tuple[str, str, str]:
    """The unsubscribe and preferences links and List-Unsubscribe header of reader1's
    copy of ``issue``, built by the send's own MessageFactory."""
    from pipeline.render.issue import Rendered
    from pipeline.send.message import MessageFactory

    rendered = Rendered(
        issue_number=issue,
        subject="s",
        preheader="p",
        html='<a href="%%BRIEF_UNSUBSCRIBE_URL%%">u</a> <a href="%%BRIEF_PREFERENCES_URL%%">p</a>',
        text="%%BRIEF_UNSUBSCRIBE_URL%%\n%%BRIEF_PREFERENCES_URL%%\n",
        web_url="https://brief.example.com/issues/007/",
    )
    [rcpt] = [r for r in audience(engine, "main") if r.email == "reader1@example.com"]
    msg = MessageFactory(rendered, settings, commit="x").for_recipient("k", rcpt)
    return msg.values["unsubscribe_url"], msg.values["preferences_url"], msg.raw.decode()


def _attributed(engine, kind: str) -> list[int | None]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(events.c.issue_number).where(events.c.kind == kind).order_by(events.c.id)
            ).scalars()
        )


def test_one_click_unsubscribe_from_an_issue_is_attributed_to_it(
    store_client, store, store_settings
):
    from pipeline.report.figures import issue_report

    s = seed_people(store, 2)
    with store.begin() as conn:
        seed_campaign(conn, ISSUE, [(sid, "sent", False, None) for sid in s])
    unsub, prefs, raw = _issue_links(store_settings, store, ISSUE)
    assert unsub.endswith("?i=7") and prefs.endswith("?i=7")
    assert f"List-Unsubscribe: <{unsub}>" in raw
    path = unsub[len(store_settings.newsletter.base_url) :]
    response = store_client.post(path, content=b"List-Unsubscribe=One-Click", headers=FORM)
    assert response.status_code == 200
    assert _attributed(store, "unsubscribed") == [ISSUE]
    assert issue_report(store, ISSUE).unsubscribes == 1


def test_an_old_unsubscribe_link_without_the_issue_still_works_unattributed(
    store_client, store, store_settings
):
    seed_people(store, 1)
    unsub, _, _ = _issue_links(store_settings, store, ISSUE)
    old = unsub[len(store_settings.newsletter.base_url) :].partition("?")[0]
    assert store_client.get(old).status_code == 200
    response = store_client.post(old, content=b"List-Unsubscribe=One-Click", headers=FORM)
    assert response.status_code == 200
    assert _attributed(store, "unsubscribed") == [None]


def test_a_mangled_issue_in_the_link_unsubscribes_but_attributes_nothing(
    store_client, store, store_settings
):
    seed_people(store, 1)
    unsub, _, _ = _issue_links(store_settings, store, ISSUE)
    path = unsub[len(store_settings.newsletter.base_url) :].partition("?")[0]
    response = store_client.post(
        path + "?i=99999999999999999999", content=b"List-Unsubscribe=One-Click", headers=FORM
    )
    assert response.status_code == 200
    assert _attributed(store, "unsubscribed") == [None]


def test_leaving_a_list_on_the_preferences_page_is_attributed(store_client, store, store_settings):
    seed_people(store, 1)
    _, prefs, _ = _issue_links(store_settings, store, ISSUE)
    path = prefs[len(store_settings.newsletter.base_url) :]
    page = store_client.get(path)
    assert page.status_code == 200
    response = store_client.post(
        path, data={}, headers={"Origin": store_settings.newsletter.base_url}
    )
    assert response.status_code == 200
    assert _attributed(store, "unsubscribed") == [ISSUE]


def test_the_mailto_unsubscribe_subject_carries_the_token_alone(store, store_settings):
    from dataclasses import replace

    seed_people(store, 1)
    settings = replace(
        store_settings,
        bounces=replace(store_settings.bounces, unsubscribe_address="leave@brief.example.com"),
    )
    unsub, _, raw = _issue_links(settings, store, ISSUE)
    token = unsub.rsplit("/", 1)[1].partition("?")[0]
    assert f"mailto:leave@brief.example.com?subject=unsubscribe-{token}>" in raw


def test_a_signed_complaint_webhook_is_attributed_by_its_delivery_key(store_client, store):
    from pipeline.providers.resend import KEY_FIELD, tag_value
    from pipeline.report.figures import issue_report

    s = seed_people(store, 2)
    with store.begin() as conn:
        seed_campaign(conn, ISSUE, [(sid, "sent", False, None) for sid in s])
    key = f"issue-007.subscriber-{s[1]}"
    complaint = {
        "type": "email.complained",
        "data": {
            "email_id": "re-1",
            "to": ["reader2@example.com"],
            "tags": [{"name": KEY_FIELD, "value": tag_value(key)}],
        },
    }
    response = post_resend(store_client, complaint, "msg_attr_1")
    assert response.status_code == 200 and response.json()["applied"] == 1
    assert _attributed(store, "complained") == [ISSUE]
    assert issue_report(store, ISSUE).complaints == 1


def test_a_postmark_hard_bounce_is_attributed_by_the_provider_message_id(store_client, store):
    import base64

    from pipeline.report.figures import issue_report

    s = seed_people(store, 1)
    with store.begin() as conn:
        seed_campaign(conn, ISSUE, [(s[0], "sent", False, "pm-0001")])
    auth = base64.b64encode(b"postmark-hook:pm-9f3c2a71e0").decode()
    bounce = {
        "RecordType": "Bounce",
        "ID": 991,
        "Type": "HardBounce",
        "Email": "reader1@example.com",
        "MessageID": "pm-0001",
        "Description": "no such user",
    }
    response = store_client.post(
        "/webhooks/postmark",
        content=json.dumps(bounce),
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200 and response.json()["applied"] == 1
    assert _attributed(store, "bounced") == [ISSUE]
    r = issue_report(store, ISSUE)
    assert (r.hard_bounces, r.soft_bounces) == (1, 0)


# -- growth ----------------------------------------------------------------------------------


def _at(engine, email: str, when: datetime) -> None:
    """Move a person's confirmation (event and membership) to ``when``."""
    with engine.begin() as conn:
        sid = conn.execute(
            sa.select(subscribers.c.id).where(subscribers.c.email == email)
        ).scalar_one()
        conn.execute(
            events.update()
            .where(events.c.subscriber_id == sid, events.c.kind == "confirmed")
            .values(at=when)
        )
        conn.execute(
            memberships.update().where(memberships.c.subscriber_id == sid).values(confirmed_at=when)
        )


def test_growth_buckets_in_the_newsletter_zone(store):
    from pipeline.report.growth import Period, growth
    from pipeline.store import create_list, unsubscribe_by_address
    from pipeline.store.suppress import suppress

    create_list(store, "weekly")
    for n in range(1, 5):
        add_subscriber(store, f"p{n}@example.com", None, confirmed=True, source="test")
    add_subscriber(store, "w1@example.com", None, list_name="weekly", confirmed=True, source="t")
    # 03:00 UTC on 2 March is still 1 March in New York.
    _at(store, "p1@example.com", datetime(2026, 3, 2, 3, 0, tzinfo=UTC))
    _at(store, "p2@example.com", datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    _at(store, "p3@example.com", datetime(2026, 3, 2, 16, 0, tzinfo=UTC))
    _at(store, "p4@example.com", datetime(2026, 3, 9, 16, 0, tzinfo=UTC))
    _at(store, "w1@example.com", datetime(2026, 3, 2, 16, 0, tzinfo=UTC))
    unsubscribe_by_address(store, "p2@example.com", list_name="main", source="test")
    suppress(store, "p3@example.com", "complaint", source="test")
    with store.begin() as conn:  # the leaving happened on 10 March
        conn.execute(
            events.update()
            .where(events.c.kind.in_(("unsubscribed", "complained")))
            .values(at=datetime(2026, 3, 10, 14, 0, tzinfo=UTC))
        )
    tz = ZoneInfo("America/New_York")
    days = [
        (r.list_name, r.period.isoformat(), r.confirmed, r.unsubscribed, r.lost, r.net, r.total)
        for r in growth(store, tz, Period.DAY)
    ]
    assert days == [
        ("main", "2026-03-01", 1, 0, 0, 1, 1),
        ("main", "2026-03-02", 2, 0, 0, 2, 3),
        ("weekly", "2026-03-02", 1, 0, 0, 1, 1),
        ("main", "2026-03-09", 1, 0, 0, 1, 4),
        ("main", "2026-03-10", 0, 1, 1, -2, 2),
    ]
    weeks = [
        (r.list_name, r.period.isoformat(), r.net, r.total) for r in growth(store, tz, Period.WEEK)
    ]
    assert weeks == [
        ("main", "2026-02-23", 1, 1),  # Sunday 1 March belongs to the week of 23 February
        ("main", "2026-03-02", 2, 3),
        ("weekly", "2026-03-02", 1, 1),
        ("main", "2026-03-09", -1, 2),
    ]
    months = growth(store, tz, Period.MONTH, since=datetime(2026, 3, 5).date())
    assert [(r.list_name, r.net, r.total) for r in months] == [("main", 2, 2), ("weekly", 1, 1)]


def test_net_growth_per_issue_runs_from_one_send_to_the_next(store):
    from pipeline.report.growth import net_per_issue
    from pipeline.store import unsubscribe_by_address

    first, second = (
        datetime(2026, 3, 4, 13, 0, tzinfo=UTC),
        datetime(2026, 3, 18, 13, 0, tzinfo=UTC),
    )
    for n, when in enumerate(
        [
            first - timedelta(days=1),
            first + timedelta(days=1),
            first + timedelta(days=2),
            second + timedelta(hours=1),
        ],
        start=1,
    ):
        add_subscriber(store, f"n{n}@example.com", None, confirmed=True, source="test")
        _at(store, f"n{n}@example.com", when)
    unsubscribe_by_address(store, "n1@example.com", list_name="main", source="test")
    with store.begin() as conn:
        conn.execute(
            events.update()
            .where(events.c.kind == "unsubscribed")
            .values(at=second + timedelta(days=1))
        )
    # Before the first issue: counted nowhere; two joined after 001; 002 gained one, lost one.
    assert net_per_issue(store, [(1, first), (2, second)]) == [2, 0]
    assert net_per_issue(store, [(1, None), (2, second)]) == [0, 0]


# -- the CLI ----------------------------------------------------------------------------------


def test_report_cli_json_shape(cli_store, seeded):
    out = cli_store("report", "7", "--json")
    assert out.code == 0, out.err
    data = json.loads(out.out)
    assert set(data) >= {
        "issue_number",
        "delivered",
        "failed",
        "unknown",
        "hard_bounces",
        "hard_bounces_at_send",
        "soft_bounces",
        "complaints",
        "unsubscribes",
        "human_clickers",
        "click_rate",
        "machine_clicks",
        "opens",
        "links",
    }
    assert (data["delivered"], data["human_clickers"], data["complaints"]) == (6, 4, 1)
    assert data["links"][0] == {
        "link_id": 1,
        "url": "https://a.example/",
        "text": "Read A",
        "human": 6,
        "human_people": 4,
        "machine": 5,
    }
    every = cli_store("report", "--json")
    assert [r["issue_number"] for r in json.loads(every.out)] == [7, 8]
    table = cli_store("report")
    assert table.code == 0 and "click rate: " in table.out and "007" in table.out
    text = cli_store("report", "7")
    assert "hard bounces 3 (1 at send)" in text.out and "Read A" in text.out


def test_report_cli_errors_are_one_line(cli_store, store):
    missing = cli_store("report", "42")
    assert missing.code != 0 and missing.err.strip().count("\n") == 0
    assert "never sent" in missing.err
    bad = cli_store("growth", "--since", "last tuesday")
    assert bad.code != 0 and "--since" in bad.err
    assert cli_store("report", "--html", "x").code != 0


def test_growth_cli_json_shape(cli_store, store):
    add_subscriber(store, "g@example.com", None, confirmed=True, source="test")
    out = cli_store("growth", "--json", "--by", "week")
    assert out.code == 0, out.err
    [row] = json.loads(out.out)
    assert set(row) == {"list_name", "period", "confirmed", "unsubscribed", "lost", "net", "total"}
    assert (row["list_name"], row["confirmed"], row["net"], row["total"]) == ("main", 1, 1, 1)


def test_dashboard_command_offers_a_port_but_no_host(cli_store):
    out = cli_store("dashboard", "--help")
    assert out.code == 0 and "--port" in out.out
    # Loopback only: the numbers are the operator's and there is no login.
    assert "--host" not in out.out
