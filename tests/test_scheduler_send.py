"""The daemon sending for real: outbox provider, SQLite store, the send ledger as proof."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes
from email.policy import default

import sqlalchemy as sa

from pipeline.daemon.service import Daemon
from pipeline.store import add_subscriber, open_store
from tests.fixtures_scheduler import local, outbox_files, set_status, with_schedule

SLOT1 = local("2026-12-02T07:00")
SLOT2 = local("2026-12-16T07:00")


def daemon(settings, engine, load, now, **kw) -> Daemon:
    return Daemon(settings, engine, load, clock=lambda: now, poll=0.05, **kw)


def ledger(engine) -> list[tuple[int, str, int]]:
    """(subscriber_id, state, attempts) of every delivery."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT subscriber_id, state, attempts FROM deliveries ORDER BY subscriber_id")
        )
        return [tuple(r) for r in rows]


def editor_copies(settings) -> list:
    return [p for p in outbox_files(settings) if ".test-" in p.name]


def readers(engine, settings, n: int) -> None:
    for i in range(n):
        add_subscriber(
            engine,
            f"reader{i}@example.org",
            f"Reader {i}",
            list_name=settings.newsletter.default_list,
            confirmed=True,
        )


def test_ahead_of_the_slot_it_assembles_the_issue_and_mails_editors_one_test_copy(
    settings, sched_store, sched_lib, caplog
):
    caplog.set_level(logging.INFO, logger="brief")
    set_status(sched_lib().issue(1).path, "sent")
    ahead = local("2026-12-13T07:00")
    outcomes = daemon(settings, sched_store, sched_lib, ahead).run_once()
    assert [o.event for o in outcomes] == ["assembled", "test_sent"]
    issue = sched_lib().issue(2)
    assert issue.date == SLOT2.date() and issue.status == "draft"
    copies = editor_copies(settings)
    assert len(copies) == 1
    mail = message_from_bytes(copies[0].read_bytes(), policy=default)
    assert mail["To"] == "editor@example.com"
    assert mail["Subject"].startswith("[TEST] ")
    assert "slot=2026-12-16T07:00-05:00 issue=002 event=test_sent sent=1 failed=0" in caplog.text
    # The next pass, or a restart, neither reassembles nor mails the editors again.
    again = daemon(settings, sched_store, sched_lib, ahead + timedelta(hours=2)).run_once()
    assert again == []
    assert len(editor_copies(settings)) == 1
    assert [i.number for i in sched_lib().issues] == [1, 2]


def test_at_the_slot_an_approved_issue_goes_to_every_subscriber_once(
    settings, sched_store, sched_lib, audience3, caplog
):
    caplog.set_level(logging.INFO, logger="brief")
    outcomes = daemon(settings, sched_store, sched_lib, SLOT1).run_once()
    assert [o.event for o in outcomes] == ["sent"]
    assert outcomes[0].counts["sent"] == 3
    assert ledger(sched_store) == [(i, "sent", 1) for i in (1, 2, 3)]
    assert sched_lib().issue(1).status == "sent"
    assert "slot=2026-12-02T07:00-05:00 issue=001 event=sent sent=3 failed=0 unknown=0" in (
        caplog.text
    )
    assert len(outbox_files(settings)) == 3
    # Restarted later in the grace period: already sent, nothing to do.
    assert daemon(settings, sched_store, sched_lib, SLOT1 + timedelta(hours=1)).run_once() == []
    assert ledger(sched_store) == [(i, "sent", 1) for i in (1, 2, 3)]


def test_unapproved_send_policy_sends_a_draft_and_says_so_loudly(
    settings, sched_store, sched_lib, audience3, caplog
):
    caplog.set_level(logging.INFO, logger="brief")
    set_status(sched_lib().issue(1).path, "draft")
    loose = with_schedule(settings, unapproved="send")
    outcomes = daemon(loose, sched_store, sched_lib, SLOT1).run_once()
    assert [o.event for o in outcomes] == ["sent_unapproved"]
    assert len(ledger(sched_store)) == 3
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("event=sent_unapproved" in w and "unapproved = send" in w for w in warned)


def test_a_slot_missed_while_down_is_sent_on_restart_within_grace(
    settings, sched_store, sched_lib, audience3
):
    back = SLOT1 + timedelta(hours=5, minutes=30)
    outcomes = daemon(settings, sched_store, sched_lib, back).run_once()
    assert [o.event for o in outcomes] == ["sent"]
    assert len(ledger(sched_store)) == 3


def test_a_slot_missed_while_down_is_not_sent_after_grace(
    settings, sched_store, sched_lib, audience3
):
    back = SLOT1 + timedelta(hours=6, minutes=30)
    outcomes = daemon(settings, sched_store, sched_lib, back).run_once()
    assert [o.event for o in outcomes] == ["missed"]
    assert ledger(sched_store) == []
    assert outbox_files(settings) == []


def _slow(settings):
    # 1 message a batch at 40 a second: long enough to stop in the middle.
    return replace(
        settings,
        provider=replace(settings.provider, rate_per_second=40, concurrency=1, batch_size=1),
    )


def test_a_send_stopped_midway_is_finished_by_the_next_daemon_without_mailing_anyone_twice(
    settings, sched_store, sched_lib
):
    slow = _slow(settings)
    readers(sched_store, settings, 40)
    first = daemon(slow, sched_store, sched_lib, SLOT1)
    result: list = []
    t = threading.Thread(target=lambda: result.append(first.run_once()))
    t.start()
    pause = threading.Event()
    while t.is_alive() and sum(1 for r in ledger(sched_store) if r[1] == "sent") < 5:
        pause.wait(0.02)
    first.request_stop()  # what SIGTERM does
    t.join(30)
    (stopped,) = result[0]
    assert stopped.event == "send_paused"
    done_first = [r for r in ledger(sched_store) if r[1] == "sent"]
    assert 5 <= len(done_first) < 40
    assert sched_lib().issue(1).status == "approved"

    second = daemon(slow, sched_store, sched_lib, SLOT1 + timedelta(minutes=3)).run_once()
    assert [o.event for o in second] == ["sent"]
    assert second[0].counts["sent_now"] == 40 - len(done_first)
    assert ledger(sched_store) == [(i, "sent", 1) for i in range(1, 41)]
    assert len(outbox_files(slow)) == 40


def test_two_daemons_racing_at_the_slot_send_exactly_once(settings, sched_lib, sched_store):
    slow = _slow(settings)
    readers(sched_store, settings, 20)
    set_status(sched_lib().issue(1).path, "approved")
    # Each daemon with its own engine (connection pool), as two processes would have.
    engines = [open_store(settings.database.url) for _ in range(2)]
    gate = threading.Barrier(2)
    results: dict[int, object] = {}

    def race(n: int) -> None:
        d = daemon(slow, engines[n], sched_lib, SLOT1 + timedelta(minutes=1))
        gate.wait()
        results[n] = d.run_once()

    threads = [threading.Thread(target=race, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for e in engines:
        e.dispose()
    sends = [o for r in results.values() if r for o in r if o.event == "sent"]
    assert len(sends) == 1
    assert sends[0].counts["sent_now"] == 20
    assert ledger(sched_store) == [(i, "sent", 1) for i in range(1, 21)]
    assert len(outbox_files(slow)) == 20
    # The loser either stood by (lock held) or came second and found it sent.
    assert sorted(len(r) if r is not None else -1 for r in results.values()) in ([-1, 1], [0, 1])


def test_slot_events_are_claimed_once_even_by_two_holders_in_turn(settings, sched_store, sched_lib):
    set_status(sched_lib().issue(1).path, "sent")
    ahead = local("2026-12-14T09:00")
    first = daemon(settings, sched_store, sched_lib, ahead).run_once()
    assert [o.event for o in first] == ["assembled", "test_sent"]
    # A different daemon (new holder) the next minute: the test copy is on record.
    second = daemon(settings, sched_store, sched_lib, ahead + timedelta(minutes=1)).run_once()
    assert second == []
    assert len(editor_copies(settings)) == 1


def _paused(engine, settings, reason: str) -> None:
    from pipeline.store import ledger as lg

    campaign = lg.start_campaign(
        engine,
        1,
        settings.newsletter.default_list,
        provider="outbox",
        subject="s",
        content_commit="c",
        holder="elsewhere:1",
    )
    lg.release(engine, campaign.id, "elsewhere:1")
    kind = lg.PauseKind.GUARD if reason.startswith("reputation guard") else lg.PauseKind.STOPPED
    lg.set_state(engine, campaign.id, "paused", reason, kind=kind)


def test_a_campaign_the_reputation_guard_paused_is_not_resumed_by_the_daemon(
    settings, sched_store, sched_lib, audience3
):
    _paused(sched_store, settings, "reputation guard: 30 permanent failures in the first 500")
    assert daemon(settings, sched_store, sched_lib, SLOT1 + timedelta(minutes=2)).run_once() == []
    assert ledger(sched_store) == []


def test_a_campaign_paused_by_a_stop_is_resumed_within_grace(
    settings, sched_store, sched_lib, audience3
):
    _paused(sched_store, settings, "stopped before the end; run the send again to resume")
    outcomes = daemon(settings, sched_store, sched_lib, SLOT1 + timedelta(minutes=2)).run_once()
    assert [o.event for o in outcomes] == ["sent"]
    assert ledger(sched_store) == [(i, "sent", 1) for i in (1, 2, 3)]


def test_a_send_left_with_unknown_deliveries_is_an_error_and_not_done(
    project, sched_store, sched_lib, audience3, smtp_sink, caplog
):
    """Measured (issue 9): the daemon took a send with unknown rows as done."""
    from functools import partial

    from pipeline.config import load_settings
    from pipeline.content.library import load_content
    from tests.fixtures_send import use_smtp

    use_smtp(project, smtp_sink, concurrency=1)
    smtp = load_settings(project / "brief.toml", env={})
    load = partial(load_content, smtp)
    set_status(load().issue(1).path, "approved")
    # The server keeps the second reader's message and drops the line before answering.
    smtp_sink.rules["reader1@example.org"] = ["drop-after-data"]
    with caplog.at_level(logging.INFO, logger="brief"):
        outcomes = daemon(smtp, sched_store, load, SLOT1 + timedelta(minutes=1)).run_once()
    assert [o.event for o in outcomes] == ["send_unresolved"]
    assert any(r.levelno == logging.ERROR and "unknown" in r.getMessage() for r in caplog.records)
    assert load().issue(1).status == "approved"
    # The next wake-up neither sends again nor takes the slot as done.
    again = daemon(smtp, sched_store, load, SLOT1 + timedelta(minutes=3)).run_once()
    assert again == [] and smtp_sink.count() == 3
