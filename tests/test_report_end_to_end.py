"""Issue 14's "Done means", end to end on both backends: issue 1 sent through ``outbox``,
the tracked links of the readers' ``.eml`` files clicked with a real HTTP client against
the public app served by uvicorn (human clicks later, a HEAD, a scanner's user agent, a
burst on every link at once, a tampered token), a one-click unsubscribe and two signed
webhooks (a complaint, a hard bounce); then ``brief report 1 --json`` gives exactly the
human and machine figures, per link, and the attributed counts; erasing a person removes
their clicks from the report."""

from __future__ import annotations

import email
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from pipeline.cli.main import main
from tests.fixtures_send import set_keys, subscribe_many
from tests.fixtures_web import WEBHOOK_ENV, outbox_by_recipient, post_resend
from tests.servers import free_port, serve_in_thread

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"
TRACKED = re.compile(r"https?://[^\s\"<>]+/c/[0-9]+\.[0-9]+\.[A-Za-z0-9._-]+")


def _links(msg: email.message.EmailMessage) -> list[str]:
    html = msg.get_body(preferencelist=("html",)).get_content().replace("&amp;", "&")
    return list(dict.fromkeys(TRACKED.findall(html)))


def _get(url: str, method: str = "GET", agent: str = BROWSER) -> httpx.Response:
    return httpx.request(method, url, headers={"user-agent": agent}, follow_redirects=False)


def _report(toml: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["--config", str(toml), "report", "1", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_sent_issue_report_counts_people_not_scanners_and_attributes_what_left(
    project, store_url, capsys, monkeypatch
):
    from pipeline.config import load_settings
    from pipeline.content.library import load_library
    from pipeline.providers.resend import KEY_FIELD, tag_value
    from pipeline.send import delivery_key, send_campaign
    from pipeline.store import forget, open_store
    from pipeline.web.public import create_app

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    toml = project / "brief.toml"
    toml.write_text(re.sub(r'(?m)^base_url = ".*"$', f'base_url = "{base}"', toml.read_text()))
    set_keys(project, "database", url=f'"{store_url}"')
    settings = load_settings(toml, env=WEBHOOK_ENV)
    engine = open_store(settings.database.url)
    ann, bob, cat, dan = subscribe_many(engine, 4)
    library = load_library(settings.root)
    sent = send_campaign(engine, settings, library, library.issue(1), "main", retry_base=0.02)
    assert sent.sent == 4
    mails = outbox_by_recipient(settings)
    links = {who: _links(mails[who]) for who in (ann, bob, cat, dan)}
    n_links = len(links[ann])
    assert n_links >= 3, "issue 1 carries several links"

    # The app's clock an hour after the send: clicks "later", not a scanner's first seconds.
    app = create_app(settings, engine=engine, now=lambda: datetime.now(UTC) + timedelta(hours=1))
    recorder = app.state.brief.clicks
    with serve_in_thread(app, port, access_log=False):
        # Ann reads: two links, a few seconds apart.
        assert _get(links[ann][0]).status_code == 302
        time.sleep(2.5)
        assert _get(links[ann][1]).status_code == 302
        # Bob's mail server looks first: a HEAD, then a scanner's GET.
        assert _get(links[bob][0], "HEAD").status_code == 302
        time.sleep(2.5)
        assert _get(links[bob][2], agent=SCANNER).status_code == 302
        # Cat's gateway opens every link of her message at once.
        for url in links[cat]:
            assert _get(url).status_code == 302
        # A tampered token still takes the reader to the page, and counts nothing.
        tampered = links[dan][0][:-3] + ("AAA" if not links[dan][0].endswith("AAA") else "BBB")
        answer = _get(tampered)
        assert answer.status_code == 302 and answer.headers["location"].startswith("http")

        # Cat leaves through the one-click POST of her List-Unsubscribe header.
        unsub = mails[cat]["List-Unsubscribe"].split(",")[0].strip().strip("<>")
        assert "?i=1" in unsub
        left = httpx.post(unsub, data={"List-Unsubscribe": "One-Click"})
        assert left.status_code == 200
        # Dan complains (a signed Resend webhook); Bob's address bounces for good.
        for who, kind, extra, msg_id in (
            (dan, "email.complained", {}, "msg_e2e_complaint"),
            (bob, "email.bounced", {"bounce": {"type": "Permanent"}}, "msg_e2e_bounce"),
        ):
            sid = int(mails[who]["Message-ID"].split("subscriber-")[1].split(".")[0])
            key = delivery_key(1, sid)
            payload = {
                "type": kind,
                "data": {
                    "email_id": f"re-{sid}",
                    "to": [who],
                    "tags": [{"name": KEY_FIELD, "value": tag_value(key)}],
                    **extra,
                },
            }
            # Signed at the app's clock, an hour ahead of the machine's.
            with httpx.Client(base_url=base) as web:
                hook = post_resend(web, payload, msg_id, timestamp=int(time.time() + 3600))
            assert hook.status_code == 200 and hook.json()["applied"] == 1
        deadline = time.monotonic() + 5
        while recorder.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        recorder.flush()

    report = _report(toml, capsys)
    assert report["delivered"] == 4
    assert report["human_clickers"] == 1  # Ann, and only Ann
    assert report["click_rate"] == 0.25
    assert report["machine_clicks"] == 2 + n_links  # Bob's HEAD and scanner, Cat's burst
    assert (report["unsubscribes"], report["complaints"]) == (1, 1)
    assert (report["hard_bounces"], report["soft_bounces"]) == (1, 0)
    per_link = {row["link_id"]: row for row in report["links"]}
    assert [per_link[i]["human"] for i in sorted(per_link)][:3] == [1, 1, 0]
    assert [per_link[i]["human_people"] for i in sorted(per_link)][:3] == [1, 1, 0]
    assert [per_link[i]["machine"] for i in sorted(per_link)][:3] == [2, 1, 2]
    assert sum(row["machine"] for row in report["links"]) == 2 + n_links
    assert all(row["url"].startswith("http") and "/c/" not in row["url"] for row in report["links"])

    # Erasing Ann removes her clicks: the report has no human clicker left.
    forget(engine, ann)
    after = _report(toml, capsys)
    assert after["human_clickers"] == 0
    assert sum(row["human"] for row in after["links"]) == 0
    engine.dispose()
