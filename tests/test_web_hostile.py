"""Issue 10: the public pages under hostile traffic. Each test reproduces one measured
defect (on SQLite and PostgreSQL where the store is involved): out-of-range token ids,
stale one-click unsubscribes, cross-site confirms, error pages without security
headers, per-IP limits behind a proxy, and subscribe answers whose timing told who
is on the list."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from pipeline.store import (
    add_subscriber,
    audience,
    audience_count,
    resolve,
    show,
    unsubscribe_by_token,
)
from pipeline.store import confirm as store_confirm
from pipeline.web.public import create_app
from tests.fixtures_web import outbox_messages

ANN = "ann@example.com"


def _assert_security_headers(response) -> None:
    assert "frame-ancestors 'none'" in response.headers.get("content-security-policy", "")
    assert response.headers.get("x-frame-options") == "DENY"
    assert response.headers.get("x-content-type-options") == "nosniff"
    assert response.headers.get("referrer-policy") == "no-referrer"


# -- item 6: token ids past the database's integer range -----------------------------------


@pytest.mark.parametrize("kind", ["unsubscribe", "preferences", "confirm"])
@pytest.mark.parametrize("ident", [2**31, 2**63, 10**18 - 1])
def test_token_id_past_the_integer_range_is_a_plain_404(store_client, kind, ident):
    letter = {"unsubscribe": "u", "preferences": "p", "confirm": "c"}[kind]
    token = f"{letter}{ident}.0.AAAAAAAAAAAAAAAAAAAAAAAA"
    for method in ("GET", "POST"):
        response = store_client.request(
            method, f"/{kind}/{token}", data={"List-Unsubscribe": "One-Click"}
        )
        assert response.status_code == 404, (method, response.text)
        assert "This link is not valid" in response.text


# -- item 9: a one-click POST from an old email always unsubscribes ------------------------


def test_stale_one_click_post_unsubscribes_on_each_backend(store_client, store):
    add_subscriber(store, ANN, "Ann", confirmed=True, source="test")
    old = next(audience(store, "main")).unsubscribe_token
    unsubscribe_by_token(store, old, source="test")
    again = add_subscriber(store, ANN, source="test")
    store_confirm(store, again.confirm_token)
    assert audience_count(store, "main") == 1
    assert resolve(store, old, "unsubscribe").stale
    # What a mailbox provider sends for RFC 8058: no confirm_stale, nobody to ask.
    response = store_client.post(
        f"/unsubscribe/{old}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and "unsubscribed" in response.text
    assert audience_count(store, "main") == 0


# -- item 13: POST /confirm is a form post like the others --------------------------------


def test_cross_site_confirm_post_is_refused_and_confirms_nothing(store_client, store):
    pending = add_subscriber(store, ANN, "Ann", source="test")
    response = store_client.post(
        f"/confirm/{pending.confirm_token}", headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert {m.status for m in show(store, ANN).memberships} == {"pending"}
    same_site = store_client.post(
        f"/confirm/{pending.confirm_token}", headers={"Origin": "https://brief.example.com"}
    )
    assert same_site.status_code == 200
    assert {m.status for m in show(store, ANN).memberships} == {"confirmed"}


# -- item 5: deep JSON, and error pages with the security headers ----------------------------


@pytest.mark.parametrize("provider", ["mailgun", "ses", "postmark", "sendgrid", "resend"])
def test_deeply_nested_json_is_refused_without_500_or_traceback(client, provider, caplog):
    caplog.set_level(logging.DEBUG)
    deep = b"[" * 5000 + b"]" * 5000
    nested_object = b'{"a":' * 5000 + b"1" + b"}" * 5000
    for body in (deep, nested_object):
        response = client.post(
            f"/webhooks/{provider}", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code in (400, 401), response.text
        _assert_security_headers(response)
    assert not any(r.exc_info for r in caplog.records)
    assert "Traceback" not in caplog.text


def test_a_500_page_carries_the_security_headers_and_logs_one_line(web_settings, caplog):
    def broken():
        raise RuntimeError("the content loader fell over")

    caplog.set_level(logging.DEBUG)
    app = create_app(web_settings, load_library=broken)
    with TestClient(app, raise_server_exceptions=False) as raw:
        response = raw.get("/issues/")
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    _assert_security_headers(response)
    ours = [r for r in caplog.records if r.name.startswith("brief")]
    assert ours and not any(r.exc_info for r in ours)


# -- item 7: the per-IP limit behind a trusted proxy ----------------------------------------


def _web(settings, **changes):
    return replace(settings, web=replace(settings.web, **changes))


def _signup(client, email, forwarded=None):
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return client.post(
        "/subscribe", data={"email": email, "list": "main", "website": ""}, headers=headers
    )


def test_per_ip_limit_counts_the_forwarded_client_behind_a_trusted_proxy(web_settings, web_engine):
    settings = _web(web_settings, subscribe_per_ip_per_hour=2, trusted_proxies=("10.0.0.0/8",))
    app = create_app(settings, engine=web_engine)
    proxy = TestClient(app, base_url=settings.newsletter.base_url, client=("10.0.0.5", 40000))
    # Two people behind the same proxy: each gets their own allowance.
    for n in range(2):
        assert _signup(proxy, f"a{n}@example.com", "203.0.113.7").status_code == 200
        assert _signup(proxy, f"b{n}@example.com", "198.51.100.9").status_code == 200
    assert _signup(proxy, "a9@example.com", "203.0.113.7").status_code == 429
    # A client-chosen entry to the left of the real one changes nothing.
    assert _signup(proxy, "a8@example.com", "192.0.2.1, 203.0.113.7").status_code == 429


def test_spoofed_forwarded_for_from_a_direct_client_is_ignored(web_settings, web_engine):
    settings = _web(web_settings, subscribe_per_ip_per_hour=2, trusted_proxies=("10.0.0.0/8",))
    app = create_app(settings, engine=web_engine)
    direct = TestClient(app, base_url=settings.newsletter.base_url, client=("198.51.100.20", 5))
    assert _signup(direct, "c1@example.com", "192.0.2.1").status_code == 200
    assert _signup(direct, "c2@example.com", "192.0.2.2").status_code == 200
    assert _signup(direct, "c3@example.com", "192.0.2.3").status_code == 429


def test_without_trusted_proxies_forwarded_for_is_never_believed(web_settings, web_engine):
    settings = _web(web_settings, subscribe_per_ip_per_hour=1)
    assert settings.web.trusted_proxies == ()
    app = create_app(settings, engine=web_engine)
    local = TestClient(app, base_url=settings.newsletter.base_url, client=("127.0.0.1", 5))
    assert _signup(local, "d1@example.com", "192.0.2.1").status_code == 200
    assert _signup(local, "d2@example.com", "192.0.2.2").status_code == 429


@pytest.mark.parametrize(
    "value",
    ["'10.0.0.1'", '["not-an-address"]'],
)
def test_bad_trusted_proxies_setting_names_the_key(published, value):
    from pipeline.config import load_settings
    from pipeline.errors import ConfigError

    toml = published / "brief.toml"
    text = toml.read_text(encoding="utf-8")
    if "[web]" in text:
        text = text.replace("[web]", f"[web]\ntrusted_proxies = {value}", 1)
    else:
        text += f"\n[web]\ntrusted_proxies = {value}\n"
    toml.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="web.trusted_proxies"):
        load_settings(toml, env={})


# -- item 8: mail leaves the request; every address costs the request the same work ----------


def _queued(engine) -> list:
    from pipeline.send.notices import queued

    return queued(engine)


def test_subscribe_does_the_same_work_for_every_address_and_mails_later(
    store_client, store, store_settings
):
    from pipeline.send.notices import drain
    from pipeline.store import suppress

    add_subscriber(store, "known@example.com", confirmed=True, source="test")
    suppress(store, "gone@example.com", "complaint", "test")
    add_subscriber(store, "waiting@example.com", source="test")
    before = {e: len(show(store, e).events) for e in ("known@example.com", "waiting@example.com")}
    answers = set()
    for email in ("known@example.com", "gone@example.com", "waiting@example.com", ANN):
        response = _signup(store_client, email)
        assert response.status_code == 200
        answers.add(response.text)
    assert len(answers) == 1
    # The request only queued the attempt: no mail and no store change yet, for anyone.
    assert outbox_messages(store_settings, deliver=False) == []
    assert [n.kind.value for n in _queued(store)] == ["subscribe"] * 4
    assert {e: len(show(store, e).events) for e in before} == before
    report = drain(store_settings, store)
    assert report.sent == 2 and report.failed == 0
    sent_to = sorted(
        m["To"].addresses[0].addr_spec for m in outbox_messages(store_settings, deliver=False)
    )
    assert sent_to == [ANN, "waiting@example.com"]
    assert _queued(store) == []


def _smtp_settings(settings, port: int):
    tables = dict(settings.provider.tables)
    tables["smtp"] = {**tables["smtp"], "host": "127.0.0.1", "port": port, "tls": "none"}
    return replace(settings, provider=replace(settings.provider, name="smtp", tables=tables))


def test_a_failed_confirmation_is_retried_later_and_sent_once(store, store_settings, smtp_sink):
    from datetime import UTC, datetime, timedelta

    from pipeline.send.notices import drain, enqueue_subscribe
    from tests.servers import free_port

    down = _smtp_settings(store_settings, free_port())  # nothing listens there
    enqueue_subscribe(store, ANN, "Ann", "main", "web:subscribe")
    now = datetime.now(UTC)
    first = drain(down, store, now=now)
    assert first.sent == 0 and first.failed == 1
    [waiting] = _queued(store)
    assert waiting.attempts == 1 and waiting.kind.value == "confirmation"
    # Not due again at once: a retry waits.
    assert drain(down, store, now=now).failed == 0
    up = _smtp_settings(store_settings, smtp_sink.port)
    later = drain(up, store, now=now + timedelta(hours=1))
    assert later.sent == 1
    assert list(smtp_sink.received) == [ANN] and len(smtp_sink.received[ANN]) == 1
    assert drain(up, store, now=now + timedelta(hours=2)).sent == 0
    assert _queued(store) == []


def test_confirm_answers_at_once_and_the_welcome_follows_from_the_queue(
    store_client, store, store_settings
):
    from pipeline.send.notices import drain

    pending = add_subscriber(store, ANN, "Ann", source="test")
    response = store_client.post(f"/confirm/{pending.confirm_token}")
    assert response.status_code == 200
    assert outbox_messages(store_settings, deliver=False) == []
    assert [n.kind.value for n in _queued(store)] == ["welcome"]
    assert drain(store_settings, store).sent == 1
    [welcome] = outbox_messages(store_settings, deliver=False)
    assert welcome["Subject"] == "Welcome to The Brief"


def test_serve_drains_the_queue_in_the_background(live_public):
    import time

    import httpx

    base, settings, engine = live_public
    response = httpx.post(
        f"{base}/subscribe", data={"email": ANN, "list": "main", "website": ""}, timeout=10
    )
    assert response.status_code == 200
    deadline = time.monotonic() + 10
    while not outbox_messages(settings, deliver=False) and time.monotonic() < deadline:
        time.sleep(0.05)
    [mail] = outbox_messages(settings, deliver=False)
    assert mail["To"].addresses[0].addr_spec == ANN


def test_brief_run_sends_what_the_public_app_queued(settings, brief):
    from pipeline.send.notices import enqueue_subscribe
    from pipeline.store import open_store

    engine = open_store(settings.database.url)
    try:
        enqueue_subscribe(engine, ANN, "Ann", "main", "web:subscribe")
    finally:
        engine.dispose()
    outcome = brief("run", "--once")
    assert outcome.code == 0, outcome.err
    [mail] = outbox_messages(settings, deliver=False)
    assert mail["To"].addresses[0].addr_spec == ANN
    assert "Confirm your subscription" in mail["Subject"]


# -- item 5: uvicorn's own 400 (before the app) carries the security headers too ----------


def test_uvicorn_own_400_for_an_unparseable_request_carries_the_security_headers(
    web_settings, web_engine
):
    import socket

    from pipeline.web.security import h11_protocol
    from tests.servers import serve_in_thread

    app = create_app(web_settings, engine=web_engine)
    with serve_in_thread(app, http=h11_protocol(), access_log=False) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := raw.recv(4096):
                answer += chunk
    head = answer.decode("latin-1").lower()
    assert head.startswith("http/1.1 400")
    assert "content-security-policy:" in head and "frame-ancestors 'none'" in head
    assert "x-frame-options: deny" in head and "referrer-policy: no-referrer" in head


def test_an_over_long_name_gets_the_form_back_and_queues_nothing(store_client, store):
    response = store_client.post(
        "/subscribe", data={"email": ANN, "name": "N" * 201, "list": "main", "website": ""}
    )
    assert response.status_code == 400
    assert "Please shorten your name" in response.text and 'name="email"' in response.text
    assert _queued(store) == []


def test_control_characters_typed_into_the_form_never_reach_the_store(
    store_client, store, store_settings
):
    from pipeline.send.notices import drain

    response = _signup_named(store_client, ANN, "Ann\u0000\x1b[31m\u2028Smith")
    assert response.status_code == 200
    drain(store_settings, store)
    name = show(store, ANN).name
    assert name is not None and "Ann" in name and "Smith" in name
    assert not any(ch in name for ch in "\x00\x1b\u2028")


def _signup_named(client, email, name):
    return client.post(
        "/subscribe", data={"email": email, "name": name, "list": "main", "website": ""}
    )


def test_a_welcome_for_someone_erased_meanwhile_is_dropped_not_retried(store, store_settings):
    from pipeline.send.notices import drain, enqueue_welcome
    from pipeline.store import forget

    add_subscriber(store, ANN, "Ann", confirmed=True, source="test")
    enqueue_welcome(store, ANN, "Ann", "main", "web:confirm")
    forget(store, ANN, source="test")
    report = drain(store_settings, store)
    assert (report.sent, report.failed) == (0, 0)
    assert _queued(store) == []
    assert outbox_messages(store_settings, deliver=False) == []
