"""Click tracking end to end on both backends: a send through ``outbox``, the tracked
links of the recipients' ``.eml`` files clicked with a real HTTP client against the
public app served by uvicorn on loopback, and the rows that land in ``clicks``."""

from __future__ import annotations

import email
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.fixtures_send import set_keys, subscribe_many
from tests.fixtures_web import outbox_by_recipient
from tests.servers import free_port, serve_in_thread

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
TRACKED = re.compile(r"https?://[^\s\"<>]+/c/[0-9]+\.[0-9]+\.[A-Za-z0-9._-]+")


@dataclass
class Clock:
    """The app's clock, moved on by tests (clicks 'later' than delivery)."""

    offset: timedelta = timedelta(hours=1)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Sent:
    base: str
    settings: object
    engine: object
    emails: list[str]
    messages: dict[str, email.message.EmailMessage]
    clock: Clock
    recorder: object

    def html(self, address: str) -> str:
        return self.messages[address].get_body(preferencelist=("html",)).get_content()

    def text(self, address: str) -> str:
        return self.messages[address].get_body(preferencelist=("plain",)).get_content()

    def links(self, address: str) -> list[str]:
        """The distinct tracked links of one recipient's HTML part, in order."""
        return list(dict.fromkeys(TRACKED.findall(self.html(address).replace("&amp;", "&"))))

    def clicks(self):
        from pipeline.store.clicks import issue_clicks

        return issue_clicks(self.engine, 1)

    def settle(self) -> None:
        """Wait for the recorder's batch (it flushes every half second)."""
        deadline = time.monotonic() + 5
        while self.recorder.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        self.recorder.flush()


def _send(project: Path, store_url: str, *, tracking: dict | None = None, port: int = 0):
    from pipeline.config import load_settings
    from pipeline.content.library import load_library
    from pipeline.send import send_campaign
    from pipeline.store import open_store

    toml = project / "brief.toml"
    if port:
        toml.write_text(
            re.sub(
                r'(?m)^base_url = ".*"$', f'base_url = "http://127.0.0.1:{port}"', toml.read_text()
            )
        )
    set_keys(project, "database", url=f'"{store_url}"')
    if tracking:
        toml.write_text(
            toml.read_text()
            + "\n[tracking]\n"
            + "".join(
                f"{k} = {str(v).lower() if isinstance(v, bool) else v}\n"
                for k, v in tracking.items()
            )
        )
    settings = load_settings(toml, env={})
    engine = open_store(settings.database.url)
    emails = subscribe_many(engine, 3)
    library = load_library(settings.root)
    report = send_campaign(engine, settings, library, library.issue(1), "main", retry_base=0.02)
    assert report.sent == 3
    return settings, engine, emails


@pytest.fixture
def sent(project: Path, store_url: str):
    """Issue 1 sent to three readers through outbox on each backend, and the public app
    serving on the base_url the mails link to; its clock an hour after the send."""
    from pipeline.web.public import create_app

    port = free_port()
    settings, engine, emails = _send(project, store_url, tracking={"opens": True}, port=port)
    clock = Clock()
    app = create_app(settings, engine=engine, now=clock)
    with serve_in_thread(app, port, access_log=False):
        yield Sent(
            f"http://127.0.0.1:{port}",
            settings,
            engine,
            emails,
            outbox_by_recipient(settings),
            clock,
            app.state.brief.clicks,
        )
    engine.dispose()


def _get(url: str, method: str = "GET", **headers: str) -> httpx.Response:
    return httpx.request(
        method, url, headers={"user-agent": BROWSER, **headers}, follow_redirects=False
    )


def test_every_link_in_both_parts_is_tracked_except_the_consent_links(sent):
    from pipeline.store.clicks import issue_links

    ann = sent.emails[0]
    links = sent.links(ann)
    recorded = issue_links(sent.engine, 1)
    assert len(links) == len(recorded) >= 2
    html, text = sent.html(ann), sent.text(ann)
    # The unsubscribe and preferences links stay direct (the way out is never counted).
    assert f"{sent.base}/unsubscribe/" in html and f"{sent.base}/unsubscribe/" in text
    for link in recorded:
        assert f'href="{link.url}"' not in html
    # The text part carries the same tracked links as the HTML part.
    text_links = set(TRACKED.findall(text))
    assert text_links and text_links <= set(links)
    # Each reader has their own token; the static part is the same.
    other = sent.links(sent.emails[1])
    assert [u.rsplit(".", 2)[0] for u in other] == [u.rsplit(".", 2)[0] for u in links]
    assert other != links


def test_a_click_redirects_to_the_original_and_records_a_human_click(sent):
    from pipeline.store.clicks import issue_links

    ann = sent.emails[0]
    link = sent.links(ann)[0]
    answer = _get(link)
    first = issue_links(sent.engine, 1)[0]
    assert answer.status_code == 302
    assert answer.headers["location"] == first.url
    sent.settle()
    [row] = sent.clicks()
    assert (row.kind, row.link_id, row.machine, row.reasons) == ("click", 1, False, "")
    assert row.subscriber_id == 1
    assert row.network == "127.0.0.0/24"  # never the address itself


def test_head_prefetch_and_scanner_agents_are_recorded_as_machine(sent):
    [one, two, three] = [sent.links(a)[0] for a in sent.emails]
    assert _get(one, "HEAD").status_code == 302
    assert _get(two, **{"sec-purpose": "prefetch"}).status_code == 302
    assert httpx.get(three, headers={"user-agent": "Mimecast URL Protect"}).status_code == 302
    sent.settle()
    rows = {r.subscriber_id: r for r in sent.clicks()}
    assert rows[1].machine and "head" in rows[1].reasons.split(",")
    assert rows[2].machine and "prefetch" in rows[2].reasons.split(",")
    assert rows[3].machine and "scanner-ua" in rows[3].reasons.split(",")


def test_a_click_seconds_after_delivery_is_machine(sent):
    sent.clock.offset = timedelta(0)
    _get(sent.links(sent.emails[0])[0])
    sent.settle()
    [row] = sent.clicks()
    assert row.machine and row.reasons == "early"


def test_a_burst_on_every_link_is_machine_even_the_clicks_recorded_before_it(sent):
    links = sent.links(sent.emails[0])
    _get(links[0])
    sent.settle()  # the first click alone looks human and is written so
    assert [r.machine for r in sent.clicks()] == [False]
    for link in links[1:]:
        _get(link)
    sent.settle()
    rows = sent.clicks()
    assert len(rows) == len(links)
    assert all(r.machine and "burst" in r.reasons for r in rows)
    # Another reader clicking one link stays human.
    _get(sent.links(sent.emails[1])[1])
    sent.settle()
    assert [r.machine for r in sent.clicks() if r.subscriber_id == 2] == [False]


def test_a_tampered_token_still_redirects_and_records_nothing(sent):
    link = sent.links(sent.emails[0])[0]
    head, _, mac = link.rpartition(".")
    forged = f"{head}.{'A' * len(mac)}"
    other_person = re.sub(r"\.1\.(?=[^.]+$)", ".2.", link)
    truncated = head.rsplit(".", 1)[0]
    for url in (forged, other_person, truncated, truncated + ".junk"):
        answer = _get(url)
        assert answer.status_code == 302, url
    sent.settle()
    assert sent.clicks() == []


def test_an_unknown_link_is_a_404_page_and_never_an_open_redirect(sent):
    link = sent.links(sent.emails[0])[0]
    token = link.rsplit("/", 1)[1].split(".", 2)[2]
    for path in (
        f"/c/1.999.{token}",
        f"/c/2.1.{token}",
        "/c/1.x",
        "/c/99999999999999999999.1",
        "/c/https%3A%2F%2Fevil.example",
    ):
        answer = _get(sent.base + path)
        assert answer.status_code == 404, path
        assert "location" not in answer.headers
    sent.settle()
    assert sent.clicks() == []


def test_the_open_pixel_records_an_open_and_apple_mpp_as_machine(sent):
    html = sent.html(sent.emails[0])
    [pixel] = re.findall(r'<img src="([^"]+/o/[^"]+)"', html)
    answer = _get(pixel)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
    assert _get(pixel, **{"user-agent": "Mozilla/5.0"}).status_code == 200
    sent.settle()
    rows = sent.clicks()
    assert [(r.kind, r.link_id, r.machine) for r in rows] == [
        ("open", None, False),
        ("open", None, True),
    ]
    assert rows[1].reasons == "apple-mpp"


def test_forgetting_a_person_removes_their_clicks(sent):
    from pipeline.store import forget

    _get(sent.links(sent.emails[0])[0])
    _get(sent.links(sent.emails[1])[0])
    sent.settle()
    assert forget(sent.engine, sent.emails[0])
    assert [r.subscriber_id for r in sent.clicks()] == [2]


def test_rollup_moves_old_clicks_into_counts_and_keeps_the_figures(sent):
    import sqlalchemy as sa

    from pipeline.store.clicks import rollup
    from pipeline.store.schema import link_counts

    links = sent.links(sent.emails[0])
    _get(links[0])
    _get(sent.links(sent.emails[1])[0])
    _get(sent.links(sent.emails[1])[0])
    _get(sent.links(sent.emails[2])[1], "HEAD")
    sent.settle()
    assert len(sent.clicks()) == 4
    # Nothing is old yet: nothing moves.
    assert rollup(sent.engine, 90, datetime.now(UTC)).rolled == 0
    later = datetime.now(UTC) + timedelta(days=92)
    assert rollup(sent.engine, 90, later).rolled == 4
    assert sent.clicks() == []
    with sent.engine.connect() as conn:
        rows = {
            (r.link_id, r.kind): (r.human, r.machine, r.human_people)
            for r in conn.execute(sa.select(link_counts).where(link_counts.c.issue_number == 1))
        }
    assert rows == {
        (1, "click"): (3, 0, 2),
        (2, "click"): (0, 1, 0),
        (0, "click"): (3, 1, 2),
    }
    # A second roll-up adds to the counts instead of replacing them.
    _get(links[0])
    sent.settle()
    rollup(sent.engine, 90, later)
    with sent.engine.connect() as conn:
        total = conn.execute(
            sa.select(link_counts.c.human).where(
                link_counts.c.issue_number == 1, link_counts.c.link_id == 0
            )
        ).scalar_one()
    assert total == 4


def test_tracking_off_leaves_links_untouched(project, store_url):
    from pipeline.store.clicks import issue_links

    settings, engine, emails = _send(project, store_url, tracking={"clicks": False})
    try:
        msg = outbox_by_recipient(settings)[emails[0]]
        html = msg.get_body(preferencelist=("html",)).get_content()
        text = msg.get_body(preferencelist=("plain",)).get_content()
        assert "/c/" not in html and "/c/" not in text and "/o/" not in html
        assert issue_links(engine, 1) == ()
    finally:
        engine.dispose()


def test_the_archive_and_test_copies_carry_no_tracked_links(project, store_url):
    from pipeline.content.library import load_library
    from pipeline.render.issue import render_issue
    from pipeline.render.site import pages
    from pipeline.send.message import sample_message

    settings, engine, _ = _send(project, store_url)
    engine.dispose()
    library = load_library(settings.root)
    site = pages(library, settings)
    for path, page in site.items():
        body = page.render()
        body = body.decode() if isinstance(body, bytes) else body
        assert "/c/" not in body, path
    sample = sample_message(render_issue(library.issue(1), library, settings), settings).decode()
    assert "/c/" not in sample


def test_tracking_settings_default_to_clicks_on_opens_off_and_name_a_bad_key(project):
    from pipeline.config import load_settings
    from pipeline.errors import ConfigError

    t = load_settings(project / "brief.toml", env={}).tracking
    assert (t.clicks, t.opens, t.keep_days) == (True, False, 90)
    toml = project / "brief.toml"
    base = toml.read_text()
    for extra, message in (
        ("[tracking]\npixels = true\n", "tracking.pixels: unknown key"),
        ("[tracking]\nkeep_days = 0\n", "tracking.keep_days"),
        ("[tracking]\nclicks = 'yes'\n", "tracking.clicks"),
    ):
        toml.write_text(base + "\n" + extra)
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_settings(toml, env={})


def test_the_subscribe_page_says_what_is_measured(client):
    page = client.get("/subscribe")
    assert "What we measure: which links in an issue you click" in page.text
    assert "not whether you open the email" in page.text
    assert "No IP addresses are stored" in page.text


def test_brief_tracking_rollup_rolls_up_and_says_so(project, brief, store_url):
    import json

    import sqlalchemy as sa

    from pipeline.store.schema import clicks

    settings, engine, _ = _send(project, store_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                clicks.insert(),
                [
                    {
                        "issue_number": 1,
                        "link_id": 1,
                        "kind": "click",
                        "subscriber_id": 1,
                        "at": datetime.now(UTC) - timedelta(days=days),
                        "machine": False,
                        "reasons": "",
                    }
                    for days in (200, 100, 1)
                ],
            )
        outcome = brief("tracking", "rollup", "--json")
        assert outcome.code == 0, outcome.err
        assert json.loads(outcome.out) == {"rolled": 2, "counts": 2, "keep_days": 90}
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(clicks)).scalar_one() == 1
    finally:
        engine.dispose()


def test_networks_are_kept_truncated_and_scanner_networks_are_machine():
    from pipeline.web.public.scanners import classify, truncate

    assert truncate("203.0.113.77") == "203.0.113.0/24"
    assert truncate("2001:db8:abcd:12::1") == "2001:db8:abcd::/48"
    assert truncate("::ffff:198.51.100.9") == "198.51.100.0/24"
    assert truncate("testclient") is None
    now = datetime.now(UTC)
    common = {"kind": "click", "method": "GET", "headers": {}, "at": now, "sent_at": None}
    assert classify(user_agent=BROWSER, network="198.51.100.0/24", **common) == ()
    assert classify(user_agent=BROWSER, network="205.139.110.0/24", **common) == (
        "scanner-network",
    )
    assert classify(user_agent="", network=None, **common) == ("no-ua",)
    opened = {**common, "kind": "open"}
    assert classify(user_agent=BROWSER, network="17.58.1.0/24", **opened) == ("apple-mpp",)
