"""The send ledger and campaigns on both backends: SQLite and the real PostgreSQL on loopback.

Every test here runs twice through the ``store_url`` fixture (tests/fixtures_store.py);
the PostgreSQL half is skipped with its reason when no server answers (a failure in CI).
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from datetime import UTC

import pytest

from tests.fixtures_send import set_keys, subscribe_many


def _dead_holder() -> str:
    """The holder name of a process on this host that has exited (a crashed sender)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return f"{socket.gethostname()}:{child.pid}"


def _crash_mid_send(env, claim: int) -> list[int]:
    """What a sender killed mid-batch leaves: its campaign held, every recipient
    written down, ``claim`` rows marked in flight and never answered."""
    from pipeline.store import audience
    from pipeline.store import ledger as lg

    campaign = lg.start_campaign(
        env.engine,
        env.issue.number,
        "main",
        provider="smtp",
        subject="crashed",
        content_commit="test",
        holder=_dead_holder(),
    )
    ids = [r.subscriber_id for r in audience(env.engine, "main")]
    assert lg.enqueue(env.engine, campaign.id, env.issue.number, ids) == len(ids)
    claimed = lg.claim(env.engine, campaign.id, claim, lg.utcnow())
    # Handed over: a provider had these when the sender died.
    lg.write_step(env.engine, inflight=[c.id for c in claimed])
    return [c.subscriber_id for c in claimed]


def _addresses(env, subscriber_ids: list[int]) -> set[str]:
    from pipeline.store.audience import recipients_by_id

    found = recipients_by_id(env.engine, "main", subscriber_ids)
    return {found[i].email for i in subscriber_ids}


def test_full_send_reaches_everyone_once_and_keeps_times_aware(send_env, smtp_sink):
    from pipeline.store import ledger as lg

    env = send_env(smtp_sink, concurrency=4, batch_size=7)
    emails = subscribe_many(env.engine, 30)
    report = env.send()
    assert (report.state, report.sent, report.pending, report.unknown) == ("sent", 30, 0, 0)
    assert sorted(smtp_sink.received) == sorted(emails)
    assert all(len(v) == 1 for v in smtp_sink.received.values())
    campaign = lg.find_campaign(env.engine, 1, "main")
    assert campaign.state == "sent" and campaign.holder is None and campaign.total == 30
    first, last = lg.timing(env.engine, campaign.id)
    for moment in (campaign.created_at, campaign.started_at, campaign.finished_at, first, last):
        assert moment is not None and moment.utcoffset() == UTC.utcoffset(None)
    assert campaign.created_at <= first <= last <= campaign.finished_at


def test_enqueue_twice_writes_each_recipient_once(send_env, smtp_sink):
    from pipeline.store import ledger as lg

    env = send_env(smtp_sink)
    subscribe_many(env.engine, 5)
    campaign = lg.start_campaign(
        env.engine, 1, "main", provider="smtp", subject="s", content_commit="c", holder="me:1"
    )
    ids = [1, 2, 3, 4, 5]
    assert lg.enqueue(env.engine, campaign.id, 1, ids) == 5
    assert lg.enqueue(env.engine, campaign.id, 1, [*ids, 4, 5]) == 0
    assert sum(lg.state_counts(env.engine, campaign.id).values()) == 5


def test_rows_in_flight_at_a_crash_become_unknown_and_nobody_is_mailed_twice(send_env, smtp_sink):
    env = send_env(smtp_sink, batch_size=5)
    subscribe_many(env.engine, 12)
    inflight = _crash_mid_send(env, claim=4)
    report = env.send()
    assert report.found_inflight == 4 and report.unknown == 4 and report.sent == 8
    # Nothing pending, but not sent: the unknown ones wait for the operator's decision.
    assert report.state == "unresolved"
    lost = _addresses(env, inflight)
    assert lost.isdisjoint(smtp_sink.received)
    assert len(smtp_sink.received) == 8
    again = env.send()
    assert again.sent_now == 0 and again.unknown == 4 and smtp_sink.count() == 8
    retried = env.send(retry_unknown=True)
    assert retried.unknown == 0 and retried.sent == 12 and retried.sent_now == 4
    assert set(smtp_sink.received) >= lost
    assert all(len(v) == 1 for v in smtp_sink.received.values())


def test_an_idempotent_provider_resends_rows_left_in_flight_without_asking(send_env, smtp_sink):
    from pipeline.config import load_settings
    from pipeline.send import send_campaign

    env = send_env(smtp_sink)
    set_keys(env.project, "provider", name='"outbox"')
    settings = load_settings(env.project / "brief.toml", env={})
    subscribe_many(env.engine, 6)
    inflight = _crash_mid_send(env, claim=3)
    report = send_campaign(env.engine, settings, env.library, env.issue, "main")
    assert report.found_inflight == 3 and report.unknown == 0 and report.sent == 6
    outbox = settings.root / settings.provider.table("outbox")["dir"] / "001"
    files = sorted(p.name for p in outbox.glob("*.eml"))
    assert len(files) == 6  # one file per delivery key: a re-send overwrites, never doubles
    assert all(f"subscriber-{sid}.eml" in " ".join(files) for sid in inflight)


def test_a_second_send_is_refused_while_the_first_is_sending(send_env, gated_sink):
    from pipeline.errors import SendError
    from pipeline.store import ledger as lg

    env = send_env(gated_sink, concurrency=1, batch_size=2)
    subscribe_many(env.engine, 6)
    first: dict = {}
    runner = threading.Thread(target=lambda: first.update(report=env.send()), daemon=True)
    runner.start()
    try:
        assert gated_sink.arrived.wait(10), "the first send never reached the SMTP server"
        with pytest.raises(SendError, match="being sent right now"):
            env.send()
        # The refusal took nothing: the first sender still holds the campaign.
        campaign = lg.find_campaign(env.engine, 1, "main")
        assert campaign.holder is not None and campaign.state == "sending"
    finally:
        gated_sink.gate.set()
        runner.join(20)
    assert first["report"].state == "sent" and first["report"].sent == 6
    assert gated_sink.count() == 6 and all(len(v) == 1 for v in gated_sink.received.values())


def test_a_sender_waiting_on_a_slow_batch_keeps_its_heartbeat(send_env, gated_sink, monkeypatch):
    import sqlalchemy as sa

    from pipeline.send import campaign as send
    from pipeline.store import ledger as lg

    # The real interval is 10 s; a shorter one shows the same loop without the wait.
    monkeypatch.setattr(send, "HEARTBEAT_EVERY", 0.05)
    env = send_env(gated_sink, concurrency=1, batch_size=5)
    subscribe_many(env.engine, 3)
    runner = threading.Thread(target=env.send, daemon=True)
    runner.start()

    def beat():
        with env.engine.connect() as conn:
            return conn.execute(sa.select(lg.campaigns.c.heartbeat)).scalar_one()

    try:
        assert gated_sink.arrived.wait(10), "the send never reached the SMTP server"
        first = beat()
        later = first
        for _ in range(500):  # the batch is held at DATA the whole time
            later = beat()
            if later != first:
                break
            time.sleep(0.01)
        assert later > first and gated_sink.count() == 0
    finally:
        gated_sink.gate.set()
        runner.join(20)
    assert gated_sink.count() == 3


def test_two_sends_started_together_one_refused_each_recipient_mailed_once(send_env, gated_sink):
    from pipeline.errors import SendError
    from pipeline.send import render

    env = send_env(gated_sink, concurrency=2, batch_size=3)
    subscribe_many(env.engine, 20)
    rendered = render(env.issue, env.library, env.settings)  # both reach the ledger at once
    start = threading.Barrier(2)
    outcomes: list = []

    def run() -> None:
        start.wait()
        try:
            outcomes.append(env.send(rendered=rendered))
        except Exception as exc:  # noqa: BLE001 - judged below
            outcomes.append(exc)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        # The winner is held at DATA; the other must be turned away meanwhile.
        assert gated_sink.arrived.wait(10), "no send reached the SMTP server"
        for _ in range(1000):
            if outcomes:
                break
            time.sleep(0.01)
        assert len(outcomes) == 1 and isinstance(outcomes[0], SendError), outcomes
        assert "being sent right now" in str(outcomes[0])
    finally:
        gated_sink.gate.set()
        for t in threads:
            t.join(30)
    report = outcomes[1]
    assert report.state == "sent" and report.sent == 20
    assert gated_sink.count() == 20 and all(len(v) == 1 for v in gated_sink.received.values())


def test_concurrent_claims_never_hand_out_a_row_twice(send_env, smtp_sink):
    from pipeline.store import ledger as lg

    env = send_env(smtp_sink)
    campaign = lg.start_campaign(
        env.engine, 1, "main", provider="smtp", subject="s", content_commit="c", holder="me:1"
    )
    lg.enqueue(env.engine, campaign.id, 1, list(range(1, 601)))
    got: list[list[int]] = [[], [], []]
    errors: list[Exception] = []
    start = threading.Barrier(len(got))

    def drain(mine: list[int]) -> None:
        start.wait()
        try:
            while claimed := lg.claim(env.engine, campaign.id, 25, lg.utcnow()):
                mine.extend(c.subscriber_id for c in claimed)
        except Exception as exc:  # noqa: BLE001 - reported below, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(g,)) for g in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    everything = [sid for g in got for sid in g]
    assert sorted(everything) == list(range(1, 601))  # each row once, none lost
    assert lg.state_counts(env.engine, campaign.id)["claimed"] == 600


def test_reputation_guard_pauses_and_resumes_on_each_backend(send_env, smtp_sink):
    from dataclasses import replace

    from pipeline.config import load_settings
    from pipeline.store.ledger import PauseKind

    env = send_env(smtp_sink, batch_size=10, concurrency=1)
    set_keys(env.project, "send", guard_window=40)
    env = replace(env, settings=load_settings(env.project / "brief.toml", env={}))
    subscribe_many(env.engine, 60)
    for i in range(1, 5):  # 4 of the first 40 refused for good: over 5%
        smtp_sink.always[f"reader{i}@example.com"] = ("rcpt", "550 5.1.1 user unknown")
    paused = env.send()
    assert paused.state == "paused" and paused.pause_kind is PauseKind.GUARD
    assert paused.pending > 0 and "status: approved" in env.issue.path.read_text()
    resumed = env.send()
    assert resumed.state == "sent" and resumed.sent == 56 and resumed.failed == 4
    assert all(len(v) == 1 for v in smtp_sink.received.values())


def test_scheduler_reads_slot_events_and_the_ledger_on_each_backend(send_env, smtp_sink):
    from datetime import datetime, timedelta

    from pipeline.daemon.actions import claim, read_state
    from pipeline.daemon.decide import Action
    from pipeline.store import ledger as lg
    from pipeline.store import locks as lock

    env = send_env(smtp_sink)
    subscribe_many(env.engine, 2)
    zone = env.settings.schedule.timezone
    slot = datetime.combine(env.issue.date, env.settings.schedule.send_time, tzinfo=zone)
    now = slot - timedelta(days=1)
    empty = read_state(env.engine, env.library, [slot], "main")
    assert (empty.kinds(slot), empty.sent, dict(empty.held)) == (frozenset(), frozenset(), {})
    holder = lock.new_holder()
    assert lock.acquire(env.engine, lock.DAEMON_LOCK, holder, now, timedelta(minutes=5))
    action = Action("test", slot, env.issue)
    assert claim(env.engine, action, "test_sent", holder, now) is True
    assert claim(env.engine, action, "test_sent", holder, now) is False
    campaign = lg.start_campaign(
        env.engine, 1, "main", provider="smtp", subject="s", content_commit="c", holder="me:1"
    )
    lg.set_state(
        env.engine, campaign.id, "paused", "reputation guard: test", kind=lg.PauseKind.GUARD
    )
    state = read_state(env.engine, env.library, [slot], "main")
    assert state.kinds(slot) == frozenset({"test_sent"})
    assert state.held == {1: "reputation guard: test"} and state.sent == frozenset()
    lg.release(env.engine, campaign.id, "me:1")
    assert env.send().state == "sent"
    state = read_state(env.engine, env.library, [slot], "main")  # the file as it was read
    assert state.held == {} and state.sent == frozenset({1})


def test_a_stop_when_nothing_is_left_to_send_ends_the_campaign_sent(send_env, smtp_sink):
    """A joined sender stopped after the others finished every row must write `sent`, not
    `paused` (found by the workers_may_join test: all 300 sent, campaign left paused)."""
    import threading

    from pipeline.store import ledger as lg

    env = send_env(smtp_sink)
    subscribe_many(env.engine, 3)
    assert env.send().state == "sent"
    campaign = lg.find_campaign(env.engine, 1, "main")
    # As a sender that finished first leaves it while another still held rows.
    lg.set_state(env.engine, campaign.id, lg.CampaignState.SENDING, None)
    stop = threading.Event()
    stop.set()
    report = env.send(stop=stop)
    assert report.state == "sent" and report.sent == 3 and report.pause_kind is None
    assert lg.find_campaign(env.engine, 1, "main").state == "sent"
