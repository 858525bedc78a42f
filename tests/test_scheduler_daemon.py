"""The daemon end to end on a real SQLite store: lock, persisted jobs, write-offs, restarts."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from pipeline.daemon.service import ASSEMBLE_JOB, JOBS_TABLE, SEND_JOB, Daemon
from pipeline.store import locks as lock
from pipeline.store.schema import slot_events
from tests.fixtures_scheduler import local, set_status

SLOT1 = local("2026-12-02T07:00")
QUIET = local("2026-11-20T12:00")  # before the anchor: nothing is due


def daemon(settings, engine, load, now, **kw) -> Daemon:
    clock = now if callable(now) else (lambda: now)
    return Daemon(settings, engine, load, clock=clock, poll=0.05, **kw)


def events(engine) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(slot_events.c.slot, slot_events.c.kind, slot_events.c.issue))
        return sorted(tuple(r) for r in rows)


def jobs(engine) -> dict[str, float]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT id, next_run_time FROM {JOBS_TABLE}"))
        return {r.id: r.next_run_time for r in rows}


def wait_for(predicate, timeout: float = 10.0) -> bool:
    pause = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return True
        pause.wait(0.02)
    return predicate()


def in_thread(d: Daemon) -> threading.Thread:
    t = threading.Thread(target=d.run_forever, name="test-daemon")
    t.start()
    return t


def test_an_unapproved_issue_is_skipped_once_and_logged_loudly(
    settings, sched_store, sched_lib, caplog
):
    set_status(sched_lib().issue(1).path, "draft")
    caplog.set_level(logging.INFO, logger="brief")
    at = SLOT1 + timedelta(minutes=1)
    first = daemon(settings, sched_store, sched_lib, at).run_once()
    assert [o.event for o in first] == ["skipped"]
    assert events(sched_store) == [(SLOT1.date(), "skipped", 1)]
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1
    line = loud[0].getMessage()
    assert "slot=2026-12-02T07:00-05:00 issue=001 event=skipped" in line
    assert "not approved" in line
    caplog.clear()
    again = daemon(settings, sched_store, sched_lib, at + timedelta(hours=1)).run_once()
    assert again == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_slot_missed_beyond_grace_is_written_off_once_with_a_log_line(
    settings, sched_store, sched_lib, caplog
):
    caplog.set_level(logging.INFO, logger="brief")
    late = SLOT1 + timedelta(hours=6, minutes=1)
    outcomes = daemon(settings, sched_store, sched_lib, late).run_once()
    assert [o.event for o in outcomes] == ["missed"]
    assert events(sched_store) == [(SLOT1.date(), "missed", 1)]
    assert any(
        "issue=001 event=missed" in r.getMessage() and r.levelno == logging.ERROR
        for r in caplog.records
    )
    # A restart later does not write it off (or send it) again.
    assert daemon(settings, sched_store, sched_lib, late + timedelta(days=1)).run_once() == []
    assert sched_lib().issue(1).status == "approved"


def test_a_daemon_that_does_not_hold_the_lock_performs_nothing(settings, sched_store, sched_lib):
    set_status(sched_lib().issue(1).path, "draft")
    at = SLOT1 + timedelta(minutes=1)
    assert lock.acquire(sched_store, lock.DAEMON_LOCK, "other-daemon", at, timedelta(minutes=5))
    assert daemon(settings, sched_store, sched_lib, at).run_once() is None
    assert events(sched_store) == []
    # Once the other daemon's lock expires without renewal, this one takes over.
    later = at + timedelta(minutes=5)
    assert [o.event for o in daemon(settings, sched_store, sched_lib, later).run_once()] == [
        "skipped"
    ]


def test_run_once_releases_the_lock_for_the_next_pass(settings, sched_store, sched_lib):
    assert daemon(settings, sched_store, sched_lib, QUIET).run_once() == []
    assert lock.holder_of(sched_store, lock.DAEMON_LOCK) is None


def test_the_daemon_stores_its_slot_jobs_and_keeps_them_across_a_restart(
    settings, sched_store, sched_lib
):
    first = daemon(settings, sched_store, sched_lib, QUIET)
    t = in_thread(first)
    assert wait_for(lambda: set(jobs(sched_store)) == {SEND_JOB, ASSEMBLE_JOB})
    first.request_stop()
    t.join(10)
    assert not t.is_alive()
    stored = jobs(sched_store)
    real_next_slot = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # 07:00 New York
    if datetime.now(UTC) < real_next_slot:
        assert stored[SEND_JOB] == real_next_slot.timestamp()
        assert stored[ASSEMBLE_JOB] == (real_next_slot - timedelta(days=3)).timestamp()
    assert lock.holder_of(sched_store, lock.DAEMON_LOCK) is None  # released on stop

    second = daemon(settings, sched_store, sched_lib, QUIET)
    t = in_thread(second)
    assert wait_for(lambda: lock.holder_of(sched_store, lock.DAEMON_LOCK) is not None)
    second.request_stop()
    t.join(10)
    assert jobs(sched_store) == stored


def _backdate(engine, job_id: str, when: datetime) -> None:
    """Pretend the daemon was down when ``job_id`` was due: move its stored run time back."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    store = SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE)
    store.start(BackgroundScheduler(), "default")
    job = store.lookup_job(job_id)
    job._modify(next_run_time=when)
    store.update_job(job)


def _start_and_stop(settings, engine, load, caplog) -> list[str]:
    caplog.clear()
    d = daemon(settings, engine, load, QUIET)
    t = in_thread(d)
    wait_for(lambda: any("event=job_" in r.getMessage() for r in caplog.records), timeout=5)
    d.request_stop()
    t.join(10)
    return [r.getMessage() for r in caplog.records if "event=job_" in r.getMessage()]


def test_a_job_due_while_down_fires_once_within_grace_and_is_reported_missed_after(
    settings, sched_store, sched_lib, caplog
):
    caplog.set_level(logging.INFO, logger="brief")
    d = daemon(settings, sched_store, sched_lib, QUIET)
    t = in_thread(d)
    assert wait_for(lambda: SEND_JOB in jobs(sched_store))
    d.request_stop()
    t.join(10)

    now = datetime.now(UTC)
    _backdate(sched_store, SEND_JOB, now - timedelta(hours=2))
    fired = _start_and_stop(settings, sched_store, sched_lib, caplog)
    assert len(fired) == 1 and f"job={SEND_JOB}" in fired[0] and "event=job_fired" in fired[0]

    _backdate(sched_store, SEND_JOB, now - timedelta(hours=7))
    missed = _start_and_stop(settings, sched_store, sched_lib, caplog)
    assert len(missed) == 1 and "event=job_missed" in missed[0]


def test_a_pass_rolls_clicks_older_than_keep_days_up_into_counts(settings, sched_store, sched_lib):
    from pipeline.store import add_subscriber
    from pipeline.store.schema import clicks, link_counts

    add_subscriber(sched_store, "ann@example.com", confirmed=True, source="test")
    with sched_store.begin() as conn:
        conn.execute(
            clicks.insert(),
            [
                {
                    "issue_number": 1,
                    "link_id": 1,
                    "kind": "click",
                    "subscriber_id": 1,
                    "at": QUIET - timedelta(days=days),
                    "machine": False,
                    "reasons": "",
                }
                for days in (91, 89)
            ],
        )
    assert daemon(settings, sched_store, sched_lib, QUIET).run_once() == []
    with sched_store.connect() as conn:
        left = conn.execute(sa.select(clicks.c.at)).all()
        counts = conn.execute(sa.select(link_counts.c.link_id, link_counts.c.human)).all()
    assert len(left) == 1  # the click 89 days old stays a row
    assert sorted(tuple(r) for r in counts) == [(0, 1), (1, 1)]
