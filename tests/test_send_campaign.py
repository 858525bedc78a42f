"""Campaigns through a real SMTP server on loopback: ledger, resume, retries, guard."""

from __future__ import annotations

import email
import email.policy
import threading
from pathlib import Path

import pytest

from tests.fixtures_send import set_keys, subscribe_many, use_smtp


def _setup(project: Path, sink, count: int, **provider):
    from pipeline.config import load_settings
    from pipeline.content.library import load_library
    from pipeline.store import open_store

    use_smtp(project, sink, **provider)
    settings = load_settings(project / "brief.toml", env={})
    engine = open_store(settings.database.url)
    emails = subscribe_many(engine, count)
    library = load_library(settings.root)
    return settings, engine, library, library.issue(1), emails


def _send(settings, engine, library, issue, **kw):
    from pipeline.send import send_campaign

    kw.setdefault("retry_base", 0.02)
    return send_campaign(engine, settings, library, issue, "main", **kw)


def test_send_mails_every_subscriber_once_and_leaves_the_file_to_the_caller(project, smtp_sink):
    settings, engine, library, issue, emails = _setup(project, smtp_sink, 25)
    report = _send(settings, engine, library, issue)
    assert report.state == "sent" and report.sent == 25 and report.pending == 0
    assert sorted(smtp_sink.received) == sorted(emails)
    assert all(len(v) == 1 for v in smtp_sink.received.values())
    # The campaign leaves the issue file to its caller (brief send, the daemon).
    assert "status: approved" in issue.path.read_text()
    msg = email.message_from_bytes(
        smtp_sink.received["reader7@example.com"][0], policy=email.policy.default
    )
    assert msg["To"] == "Reader 7 <reader7@example.com>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsub = msg["List-Unsubscribe"]
    # no [bounces] mailbox in this project: no mailto that nothing reads
    assert "https://brief.example.com/unsubscribe/u" in unsub and "mailto:" not in unsub
    html = msg.get_body(("html",)).get_content()
    token = unsub.split("/unsubscribe/")[1].split(">")[0]
    assert f"/unsubscribe/{token}" in html
    assert "%%BRIEF_" not in html and "%%BRIEF_" not in msg.get_body(("plain",)).get_content()


def test_second_send_of_same_issue_mails_nobody_again(project, smtp_sink):
    settings, engine, library, issue, emails = _setup(project, smtp_sink, 10)
    _send(settings, engine, library, issue)
    subscribe_many(engine, 3, start=100)
    again = _send(settings, engine, library, issue)
    assert again.sent == 10 and again.sent_now == 0 and again.joined_since == 3
    included = _send(settings, engine, library, issue, include_new=True)
    assert included.sent == 13 and included.sent_now == 3
    assert all(len(v) == 1 for v in smtp_sink.received.values())
    assert len(smtp_sink.received) == 13


def test_unapproved_issue_is_refused_without_force(project, smtp_sink):
    from pipeline.content.assemble import mark_status
    from pipeline.content.library import load_library
    from pipeline.errors import SendError

    settings, engine, library, issue, _ = _setup(project, smtp_sink, 2)
    mark_status(issue.path, "draft")
    draft = load_library(settings.root).issue(1)
    with pytest.raises(SendError, match="not approved"):
        _send(settings, engine, library, draft)
    assert smtp_sink.count() == 0
    assert _send(settings, engine, library, draft, force=True).sent == 2


def test_transient_refusals_retry_with_backoff_then_deliver_once(project, smtp_sink):
    settings, engine, library, issue, _ = _setup(project, smtp_sink, 6)
    smtp_sink.rules["reader2@example.com"] = [("rcpt", "451 4.7.1 try again later")] * 2
    smtp_sink.rules["reader3@example.com"] = ["drop-rcpt"]
    smtp_sink.rules["reader4@example.com"] = [("data", "452 4.3.1 insufficient storage")]
    report = _send(settings, engine, library, issue)
    assert report.state == "sent" and report.sent == 6 and report.failed == 0
    assert all(len(v) == 1 for v in smtp_sink.received.values())
    assert len(smtp_sink.received) == 6


def test_transient_failures_past_the_limit_stay_failed_and_listed(project, smtp_sink):
    from pipeline.store import ledger

    settings, engine, library, issue, _ = _setup(project, smtp_sink, 4, max_retries=2)
    smtp_sink.always["reader1@example.com"] = ("rcpt", "450 4.2.1 mailbox busy")
    report = _send(settings, engine, library, issue)
    assert report.sent == 3 and report.failed == 1 and report.state == "sent"
    camp = ledger.find_campaign(engine, 1, "main")
    assert ledger.failed_addresses(engine, camp.id)[0][1] == "reader1@example.com"
    assert "gave up after 3 tries" in report.failures[0].reason


def test_no_such_mailbox_fails_for_good_and_adds_a_suppression(project, smtp_sink):
    from pipeline.store import is_suppressed

    settings, engine, library, issue, _ = _setup(project, smtp_sink, 40)
    smtp_sink.always["reader5@example.com"] = ("rcpt", "550 5.1.1 no such user here")
    smtp_sink.always["reader6@example.com"] = ("data", "554 5.7.1 message refused")
    report = _send(settings, engine, library, issue)
    assert report.sent == 38 and report.failed == 2 and report.state == "sent"
    assert is_suppressed(engine, "reader5@example.com")
    assert not is_suppressed(engine, "reader6@example.com")
    assert "reader5@example.com" not in smtp_sink.received


def test_reputation_guard_pauses_then_resumes_when_run_again(project, smtp_sink):
    settings, engine, library, issue, _ = _setup(
        project, smtp_sink, 200, batch_size=10, concurrency=1
    )
    for i in range(1, 13):  # 12 of the first 200: over 5%
        smtp_sink.always[f"reader{i}@example.com"] = ("rcpt", "550 5.1.1 user unknown")
    paused = _send(settings, engine, library, issue)
    assert paused.state == "paused" and "reputation guard" in paused.reason
    assert paused.pending > 0 and "status: approved" in issue.path.read_text()
    resumed = _send(settings, engine, library, issue)
    assert resumed.state == "sent" and resumed.sent == 188 and resumed.failed == 12
    assert all(len(v) == 1 for v in smtp_sink.received.values())


def test_connection_dropped_after_data_is_unknown_and_not_resent(project, smtp_sink):
    settings, engine, library, issue, _ = _setup(project, smtp_sink, 5)
    smtp_sink.rules["reader3@example.com"] = ["drop-after-data"]
    report = _send(settings, engine, library, issue)
    assert report.unknown == 1 and report.sent == 4
    again = _send(settings, engine, library, issue)
    assert again.unknown == 1 and again.sent_now == 0
    assert len(smtp_sink.received["reader3@example.com"]) == 1
    retried = _send(settings, engine, library, issue, retry_unknown=True)
    assert retried.unknown == 0 and retried.sent == 5
    # --retry-unknown is the operator's explicit choice to risk a second copy.
    assert len(smtp_sink.received["reader3@example.com"]) == 2


def test_stop_event_finishes_the_batch_in_flight_and_pauses(project, smtp_sink):
    settings, engine, library, issue, _ = _setup(
        project, smtp_sink, 40, batch_size=5, concurrency=1
    )
    stop = threading.Event()
    seen = []

    def progress(p):
        seen.append(p.sent)
        if p.sent >= 10:
            stop.set()

    report = _send(settings, engine, library, issue, stop=stop, progress=progress)
    assert report.state == "paused" and report.reason.startswith("stopped")
    assert report.sent == smtp_sink.count() and 10 <= report.sent < 40
    assert report.unknown == 0
    done = _send(settings, engine, library, issue)
    assert done.sent == 40 and all(len(v) == 1 for v in smtp_sink.received.values())


def test_unreachable_server_pauses_nothing_and_loses_nobody(project, smtp_sink):
    from tests.servers import free_port

    settings, engine, library, issue, _ = _setup(project, smtp_sink, 3)
    set_keys(project, "provider.smtp", port=free_port())
    from pipeline.config import load_settings

    dead = load_settings(project / "brief.toml", env={})
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    report = _send(dead, engine, library, issue, stop=stop)
    timer.cancel()
    assert report.state == "paused" and report.pending == 3 and report.unknown == 0
    assert _send(settings, engine, library, issue).sent == 3
