"""Applying what one bounce-mailbox message says (no IMAP): whom the delivery key names,
soft bounces counted per issue, mailto unsubscribes through the link's path; both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures_send import set_keys

DATA = Path(__file__).parent / "data" / "bounces"
PEOPLE = ["dana@mail.example.net", "erik@exim.example.org", "gina@example.org"]


@pytest.fixture
def applied(project, store_url):
    """(engine, settings, process) on ``store_url`` with PEOPLE as subscribers 1-3."""
    from pipeline.bounces.process import process_message
    from pipeline.config import load_settings
    from pipeline.store import add_subscriber, open_store

    set_keys(project, "database", url=f'"{store_url}"')
    set_keys(project, "provider.smtp", return_path='"bounces+{key}@news.example.com"')
    settings = load_settings(project / "brief.toml", env={})
    engine = open_store(store_url)
    for email in PEOPLE:
        add_subscriber(engine, email, None, list_name="main", confirmed=True, source="test")
    yield engine, settings, lambda raw: process_message(engine, settings, raw)
    engine.dispose()


def _gmail(key: str, address: str) -> bytes:
    raw = (DATA / "gmail-hard.eml").read_bytes()
    return raw.replace(b"issue-001.subscriber-3", key.encode()).replace(
        b"gina.gone@gmail.com", address.encode()
    )


def test_the_delivery_key_names_the_person_even_when_the_report_names_a_forward(applied):
    from pipeline.store import is_suppressed

    engine, _, process = applied
    # gina@example.org forwards to an address that no longer exists: the report names
    # the forward's target, the VERP key names the delivery.
    tally = process(_gmail("issue-001.subscriber-3", "gina.old@forward.example.net"))
    assert tally.hard == 1
    assert is_suppressed(engine, "gina@example.org")
    assert not is_suppressed(engine, "gina.old@forward.example.net")


def test_a_key_naming_nobody_falls_back_to_the_address_in_the_report(applied):
    from pipeline.store import is_suppressed

    engine, _, process = applied
    tally = process(_gmail("issue-001.subscriber-999", "erik@exim.example.org"))
    assert tally.hard == 1 and is_suppressed(engine, "erik@exim.example.org")


def test_a_report_naming_nobody_we_can_use_changes_nothing(applied):
    from pipeline.store.subscribers import suppression_count

    engine, _, process = applied
    raw = (DATA / "mangled-hard.eml").read_bytes().replace(b"subscriber-10", b"subscriber-999")
    assert process(raw).unknown == 1
    assert suppression_count(engine) == 0


def test_soft_bounces_without_an_issue_are_never_counted_towards_hard(applied, project):
    from pipeline.store import is_suppressed

    engine, _, process = applied
    soft = (DATA / "postfix-soft.eml").read_bytes()
    # No VERP, no Message-ID of ours: the issue is unknown.
    soft = soft.replace(b"bounces+issue-001.subscriber-6@", b"brief@").replace(
        b"issue-001.subscriber-6.", b"x."
    )
    soft = soft.replace(b"full@mail.example.net", b"dana@mail.example.net")
    for n in range(5):
        tally = process(soft.replace(b"Message-Id: <", f"Message-Id: <{n}.".encode()))
        assert tally.soft == 1
    assert not is_suppressed(engine, "dana@mail.example.net")


def test_a_mailto_unsubscribe_leaves_the_list_of_its_token_once(applied):
    from dataclasses import replace

    from pipeline.bounces.process import process_message
    from pipeline.store.subscribers import show

    engine, settings, _ = applied
    token = show(engine, "erik@exim.example.org").memberships[0].unsubscribe_token
    # The project names no unsubscribe address; these settings do.
    with_mailbox = replace(
        settings,
        bounces=replace(
            settings.bounces, imap_host="127.0.0.1", unsubscribe_address="u@news.example.com"
        ),
    )
    raw = (
        f"From: erik@exim.example.org\r\nTo: u@news.example.com\r\n"
        f"Subject: unsubscribe-{token}\r\nMessage-ID: <x1@exim.example.org>\r\n\r\n\r\n"
    ).encode()
    assert process_message(engine, with_mailbox, raw).unsubscribed == 1
    assert show(engine, "erik@exim.example.org").memberships[0].status == "unsubscribed"
    assert process_message(engine, with_mailbox, raw).duplicates == 1
    events = [e for e in show(engine, "erik@exim.example.org").events if e.source == "mailto"]
    assert len(events) == 1
