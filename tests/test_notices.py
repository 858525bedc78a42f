"""Confirmation and welcome emails (pipeline.send.notices): sent by `brief subscribers add`
through the outbox and a real SMTP server on loopback, and by the welcome after confirming."""

from __future__ import annotations

import csv
import json
import re
from urllib.parse import urlsplit

import pytest

from pipeline.send.notices import send_confirmation, send_welcome
from pipeline.store import add_subscriber, open_store, resolve, show
from tests.fixtures_send import Sink, set_keys, use_smtp
from tests.fixtures_web import body_text, link_in, outbox_messages
from tests.servers import free_port

ANN = "ann@example.org"


@pytest.fixture
def engine(settings):
    engine = open_store(settings.database.url)
    yield engine
    engine.dispose()


def _token(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1]


def _status(brief, email: str) -> list[tuple[str, str]]:
    shown = json.loads(brief("subscribers", "show", email, "--json").out)
    return [(m["list_name"], m["status"]) for m in shown["memberships"]]


def test_add_mails_one_confirmation_whose_link_confirms_that_membership(brief, settings, engine):
    out = brief("subscribers", "add", ANN, "--name", "Ann")
    assert out.code == 0, out.err
    assert out.out.splitlines()[-1] == f"confirmation email sent to {ANN} through outbox"
    [mail] = outbox_messages(settings)
    assert mail["To"].addresses[0].addr_spec == ANN
    assert mail["Subject"] == "Confirm your subscription to The Brief"
    assert "Hello Ann," in body_text(mail)
    link = link_in(mail, "confirm")
    assert link.startswith("https://brief.example.com/confirm/")
    token = _token(link)
    assert token not in out.out + out.err  # the link is the subscriber's, not the terminal's
    target = resolve(engine, token, "confirm")
    member = show(engine, ANN).memberships[0]
    assert (target.email, target.list_name, target.status, target.stale) == (
        ANN,
        "main",
        "pending",
        False,
    )
    assert (
        target.membership_id
        == resolve(engine, member.unsubscribe_token, "unsubscribe").membership_id
    )


def test_add_again_while_pending_sends_the_link_again(brief, settings):
    assert brief("subscribers", "add", ANN).code == 0
    again = brief("subscribers", "add", ANN)
    assert again.code == 0, again.err
    assert "unchanged: " in again.out and "confirmation email sent" in again.out
    first, second = outbox_messages(settings)
    assert link_in(first, "confirm") == link_in(second, "confirm")


def test_confirmed_add_sends_nothing(brief, settings):
    out = brief("subscribers", "add", ANN, "--confirmed", "--source", "signup sheet")
    assert out.code == 0, out.err
    assert "confirmation" not in out.out
    assert outbox_messages(settings) == []
    # Adding a confirmed person again without --confirmed asks them nothing either.
    assert "confirmation" not in brief("subscribers", "add", ANN).out
    assert outbox_messages(settings) == []


def test_import_without_confirmed_stays_pending_and_mails_nobody(brief, settings, project):
    path = project / "people.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["email", "name"], [ANN, "Ann"], ["bo@example.org", "Bo"]])
    out = brief("subscribers", "import", str(path))
    assert out.code == 0, out.err
    assert _status(brief, ANN) == [("main", "pending")]
    assert outbox_messages(settings) == []
    shown = " ".join(brief("subscribers", "import", "--help").out.split())
    assert "stay pending and get no email" in shown


def test_unreachable_smtp_makes_add_fail_in_one_line_and_keeps_the_person_pending(
    brief, project, smtp_sink
):
    use_smtp(project, Sink(port=free_port()))  # nothing listens there
    out = brief("subscribers", "add", ANN)
    assert out.code == 1
    [line] = out.err.splitlines()
    assert line.startswith(f"error: confirmation email to {ANN} not sent through smtp:")
    assert "cannot connect" in line and "Traceback" not in out.err
    assert "/confirm/" not in out.out + out.err
    assert _status(brief, ANN) == [("main", "pending")]
    # Once the server is back, the same command re-sends the confirmation.
    set_keys(project, "provider.smtp", port=smtp_sink.port)
    retry = brief("subscribers", "add", ANN)
    assert retry.code == 0, retry.err
    assert retry.out.splitlines()[-1] == f"confirmation email sent to {ANN} through smtp"
    [raw] = smtp_sink.received[ANN]
    assert b"/confirm/" in raw


def test_a_refused_recipient_fails_without_the_address_in_the_reason(project, smtp_sink, engine):
    from pipeline.config import load_settings

    use_smtp(project, smtp_sink)
    smtp_sink.always[ANN] = ("rcpt", f"550 5.1.1 <{ANN}>: no such user")
    settings = load_settings(project / "brief.toml", env={})
    added = add_subscriber(engine, ANN, list_name="main")
    result = send_confirmation(settings, ANN, None, "main", added.confirm_token)
    assert not result.ok and not result.transient
    assert "no such user" in result.reason
    assert ANN not in result.reason and added.confirm_token not in result.reason


def test_welcome_carries_the_latest_sent_issue_and_an_unsubscribe_link(
    published_settings, published_library
):
    engine = open_store(published_settings.database.url)
    try:
        add_subscriber(engine, ANN, "Ann", list_name="main", confirmed=True, source="test")
        result = send_welcome(published_settings, engine, published_library, ANN, "Ann", "main")
        assert result.ok, result.reason
        [mail] = outbox_messages(published_settings)
        assert mail["Subject"] == "Welcome to The Brief"
        text = body_text(mail)
        assert "Welcome, Ann!" in text
        # Issue 2 is the newest sent one; draft issue 3 is not offered.
        assert '"Fine-Tuning · Mars Climate Orbiter"' in text
        assert "https://brief.example.com/issues/002/" in text
        assert "/issues/003/" not in text
        html = mail.get_body(preferencelist=("html",)).get_content()
        assert 'href="https://brief.example.com/issues/002/"' in html
        unsub = resolve(engine, _token(link_in(mail, "unsubscribe")), "unsubscribe")
        assert (unsub.email, unsub.list_name) == (ANN, "main")
    finally:
        engine.dispose()


def test_welcome_without_content_has_no_latest_issue_and_still_reads_well(settings, engine):
    add_subscriber(engine, ANN, list_name="main", confirmed=True, source="test")
    result = send_welcome(settings, engine, None, ANN, None, "main")
    assert result.ok, result.reason
    [mail] = outbox_messages(settings)
    text = body_text(mail)
    assert text.startswith("Welcome!")
    assert "latest issue" not in text and not re.search(r"/issues/\d{3}/", text)
    assert "/unsubscribe/" in text
