"""The public pages, posted to with good and bad input: subscribe (double opt-in, no
enumeration, honeypot, rate limits), confirm, one-click unsubscribe, preferences,
tampered tokens, oversized bodies, cross-site posts, headers and the served archive."""

from __future__ import annotations

import logging
from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from pipeline.store import (
    add_subscriber,
    audience,
    audience_count,
    create_list,
    show,
    unsubscribe_by_token,
)
from pipeline.store import confirm as store_confirm
from tests.fixtures_web import body_text, link_in, outbox_messages

ANN = "ann@example.com"


def _path(url: str) -> str:
    return urlsplit(url).path


def _subscribe(client, email=ANN, name="Ann", **extra):
    return client.post(
        "/subscribe", data={"name": name, "email": email, "list": "main", "website": "", **extra}
    )


def test_subscribe_sends_a_confirmation_and_the_link_confirms_with_a_welcome(
    client, web_settings, web_engine
):
    response = _subscribe(client)
    assert response.status_code == 200
    assert "Check your inbox" in response.text
    [mail] = outbox_messages(web_settings)  # sent from the queue, as `brief serve` does
    assert audience_count(web_engine, "main") == 0  # double opt-in: nothing until confirmed
    assert mail["To"].addresses[0].addr_spec == ANN
    assert "Confirm your subscription" in mail["Subject"]
    link = link_in(mail, "confirm")
    assert link.startswith("https://brief.example.com/confirm/")
    page = client.get(_path(link))
    assert page.status_code == 200 and "Yes, subscribe me" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert audience_count(web_engine, "main") == 0  # opening the link is not consent
    done = client.post(_path(link))
    assert done.status_code == 200 and "subscribed" in done.text
    assert audience_count(web_engine, "main") == 1
    welcome = outbox_messages(web_settings)[-1]
    assert welcome["Subject"] == "Welcome to The Brief"
    text = body_text(welcome)
    assert "Fine-Tuning · Mars Climate Orbiter" in text
    assert "https://brief.example.com/issues/002/" in text
    assert "/unsubscribe/" in text
    # Confirming twice sends no second welcome.
    assert client.post(_path(link)).status_code == 200
    assert len(outbox_messages(web_settings)) == 2


def test_no_welcome_email_when_settings_turn_it_off(client_for, web_settings, web_engine):
    client = client_for(replace(web_settings, web=replace(web_settings.web, welcome_email=False)))
    _subscribe(client)
    link = link_in(outbox_messages(web_settings)[0], "confirm")
    assert client.post(_path(link)).status_code == 200
    assert audience_count(web_engine, "main") == 1
    assert len(outbox_messages(web_settings)) == 1


def test_subscribe_answers_the_same_for_known_and_unknown_addresses(client, web_engine):
    add_subscriber(web_engine, ANN, confirmed=True, source="test")
    known = _subscribe(client, ANN)
    unknown = _subscribe(client, "zed@example.com")
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text


def test_suppressed_address_gets_the_same_answer_and_no_mail(client, web_settings, web_engine):
    from pipeline.store import suppress

    suppress(web_engine, ANN, "complaint", "test")
    fresh = _subscribe(client, "zed@example.com")
    blocked = _subscribe(client, ANN)
    assert blocked.status_code == 200 and blocked.text == fresh.text
    assert [m["To"].addresses[0].addr_spec for m in outbox_messages(web_settings)] == [
        "zed@example.com"
    ]


def test_honeypot_filled_answers_like_success_and_does_nothing(client, web_settings, web_engine):
    response = _subscribe(client, website="http://spam.example")
    assert response.status_code == 200 and "Check your inbox" in response.text
    assert outbox_messages(web_settings) == []
    with pytest.raises(Exception, match="no subscriber"):
        show(web_engine, ANN)


def test_per_address_limit_stops_list_bombing_one_inbox(client, web_settings):
    limit = web_settings.web.subscribe_per_address_per_hour
    answers = {_subscribe(client).text for _ in range(limit + 2)}
    assert len(answers) == 1
    assert len(outbox_messages(web_settings)) == limit


def test_per_ip_limit_answers_429(client_for, web_settings):
    client = client_for(
        replace(web_settings, web=replace(web_settings.web, subscribe_per_ip_per_hour=2))
    )
    assert _subscribe(client, "a1@example.com").status_code == 200
    assert _subscribe(client, "a2@example.com").status_code == 200
    third = _subscribe(client, "a3@example.com")
    assert third.status_code == 429 and "Too many" in third.text
    assert len(outbox_messages(web_settings)) == 2


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"name": "Ann"}, "Please enter your email address."),
        ({"email": "not-an-address"}, "does not look like an email address"),
        ({"email": ANN, "list": "no-such-list"}, "choose one of the lists"),
    ],
)
def test_bad_subscribe_input_gets_the_form_back_with_a_message(client, web_settings, data, says):
    response = client.post("/subscribe", data=data)
    assert response.status_code == 400
    assert says in response.text
    assert 'name="email"' in response.text
    assert outbox_messages(web_settings) == []


def test_cross_site_form_post_is_refused(client, web_settings):
    response = client.post(
        "/subscribe", data={"email": ANN}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert outbox_messages(web_settings) == []


def test_oversized_bodies_get_413_declared_or_streamed(client, web_settings):
    big = b"email=" + b"a" * (web_settings.web.max_body_bytes + 10)
    declared = client.post(
        "/subscribe", content=big, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert declared.status_code == 413

    def chunks():
        for _ in range(0, len(big), 4096):
            yield b"a" * 4096

    streamed = client.post("/webhooks/postmark", content=chunks())
    assert streamed.status_code == 413
    assert outbox_messages(web_settings) == []


@pytest.fixture
def member(web_engine):
    add_subscriber(web_engine, ANN, "Ann", confirmed=True, source="test")
    return next(audience(web_engine, "main"))


def _tampered(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("kind", ["confirm", "unsubscribe", "preferences"])
def test_bad_or_tampered_tokens_get_a_plain_404_page(client, web_engine, member, kind, method):
    good = {
        "unsubscribe": member.unsubscribe_token,
        "preferences": member.preferences_token,
        "confirm": member.unsubscribe_token,
    }[kind]  # a real token of the wrong purpose
    for token in (
        _tampered(good),
        "not-a-token-zq",
        "u1.0.AAAAAAAAAAAAAAAAAAAAAAAA",
        good if kind == "confirm" else _tampered(good),
    ):
        response = client.request(
            method, f"/{kind}/{token}", data={"List-Unsubscribe": "One-Click"}
        )
        assert response.status_code == 404, (kind, token)
        assert "This link is not valid" in response.text
        assert "Traceback" not in response.text and token not in response.text
    assert audience_count(web_engine, "main") == 1


def test_one_click_unsubscribe_post_needs_no_cookie_and_no_confirmation(client, web_engine, member):
    page = client.get(f"/unsubscribe/{member.unsubscribe_token}")
    assert page.status_code == 200
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert "a…@example.com" in page.text and ANN not in page.text
    # What a mailbox provider sends for RFC 8058: a bare POST, no cookie, no Origin.
    response = client.post(
        f"/unsubscribe/{member.unsubscribe_token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and "unsubscribed" in response.text
    assert "set-cookie" not in response.headers
    assert audience_count(web_engine, "main") == 0


def test_unsubscribe_post_without_the_one_click_body_changes_nothing(client, web_engine, member):
    response = client.post(f"/unsubscribe/{member.unsubscribe_token}", data={})
    assert response.status_code == 400
    assert audience_count(web_engine, "main") == 1


def test_stale_unsubscribe_link_says_so_and_its_one_click_post_still_unsubscribes(
    client, web_engine, member
):
    old = member.unsubscribe_token
    unsubscribe_by_token(web_engine, old, source="test")
    again = add_subscriber(web_engine, ANN, source="test")
    store_confirm(web_engine, again.confirm_token)
    assert audience_count(web_engine, "main") == 1
    page = client.get(f"/unsubscribe/{old}")
    assert page.status_code == 200 and "subscribed again" in page.text
    # The one-click POST is the consent, from the page or from a mail client (RFC 8058).
    done = client.post(f"/unsubscribe/{old}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "unsubscribed" in done.text
    assert audience_count(web_engine, "main") == 0


def test_preferences_switch_lists_and_new_lists_need_confirmation(
    client, web_settings, web_engine, member
):
    create_list(web_engine, "weekly", "The weekly digest")
    url = f"/preferences/{member.preferences_token}"
    page = client.get(url)
    assert page.status_code == 200
    assert 'value="main" checked' in page.text and 'value="weekly">' in page.text
    saved = client.post(url, data={"list": "weekly"})
    assert saved.status_code == 200 and "Saved." in saved.text
    status = {m.list_name: m.status for m in show(web_engine, ANN).memberships}
    assert status == {"main": "unsubscribed", "weekly": "pending"}
    [mail] = outbox_messages(web_settings)
    assert "(weekly)" in body_text(mail)
    assert client.post(_path(link_in(mail, "confirm"))).status_code == 200
    assert audience_count(web_engine, "weekly") == 1


def test_preferences_post_from_another_site_is_refused(client, web_engine, member):
    response = client.post(
        f"/preferences/{member.preferences_token}",
        data={},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert audience_count(web_engine, "main") == 1


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/subscribe",
        "/glossary/",
        "/feed.xml",
        "/static/style.css",
        "/issues/999/",
        "/confirm/x",
    ],
)
def test_every_response_carries_the_security_headers(client, path):
    response = client.get(path)
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_served_archive_is_the_built_site(client, brief, published, tmp_path):
    out = tmp_path / "built"
    assert brief("site", "build", "--out", str(out)).code == 0
    for path, file in [
        ("/issues/002/", "issues/002/index.html"),
        ("/glossary/", "glossary/index.html"),
        ("/museum/knight-capital/", "museum/knight-capital/index.html"),
        ("/feed.xml", "feed.xml"),
    ]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.content == (out / file).read_bytes(), path
    assert client.get("/feed.xml").headers["content-type"].startswith("application/atom+xml")
    moved = client.get("/issues/002", follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"] == "/issues/002/"
    assert client.get("/issues/003/").status_code == 404  # a draft is not public


def test_tokens_never_reach_the_logs(client, web_settings, web_engine, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    assert _subscribe(client).status_code == 200
    link = link_in(outbox_messages(web_settings)[0], "confirm")
    token = link.rsplit("/", 1)[1]
    # Every request really ran its route: a test of silence must see the work done.
    assert client.get(_path(link)).status_code == 200
    assert client.post(_path(link)).status_code == 200
    assert audience_count(web_engine, "main") == 1
    assert client.get(f"/unsubscribe/{_tampered(token)}").status_code == 404
    # The test client (httpx) logs the URLs it requests: so the capture sees DEBUG records
    # carrying the token, and a line of ours carrying it would be seen the same way.
    theirs = [r.getMessage() for r in caplog.records if r.name.startswith("httpx")]
    assert sum(token in m for m in theirs) == 2
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert token not in ours
    assert ANN not in ours
    # Nor printed past the logging module, on stdout or stderr.
    printed = capfd.readouterr()
    assert token not in printed.out + printed.err
    assert ANN not in printed.out + printed.err


def test_null_origin_form_post_is_judged_by_fetch_metadata(client, web_settings):
    # Browsers send Origin: null under Referrer-Policy: no-referrer, even for our own forms.
    foreign = client.post(
        "/subscribe",
        data={"email": ANN},
        headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    )
    assert foreign.status_code == 403
    bare = client.post("/subscribe", data={"email": ANN}, headers={"Origin": "null"})
    assert bare.status_code == 403
    own = client.post(
        "/subscribe",
        data={"email": ANN},
        headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},
    )
    assert own.status_code == 200
    assert len(outbox_messages(web_settings)) == 1


def test_archive_requests_do_not_query_the_store_each_time(client, web_engine):
    """Measured (bench_clicks' 404 baseline on SQLite: 141 req/s, median 13 s at 500/s):
    every archive GET read the campaigns' fingerprints and hashed the sent issues' files.
    The pages and their "updated on" marks are kept until the content changes (or a
    minute passes, for a send that records a new fingerprint)."""
    import sqlalchemy as sa

    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    assert client.get("/issues/002/").status_code == 200
    sa.event.listen(web_engine, "before_cursor_execute", seen)
    try:
        for path in ("/issues/002/", "/glossary/", "/no-such-page"):
            client.get(path)
    finally:
        sa.event.remove(web_engine, "before_cursor_execute", seen)
    assert statements == []
