"""The leader lock in the database, on SQLite and PostgreSQL (the store fixture runs both)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from pipeline.store.locks import (
    Heartbeat,
    LockLost,
    acquire,
    fence,
    holder_of,
    new_holder,
    release,
    renew,
)

T0 = datetime(2026, 12, 16, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=60)


@pytest.fixture
def name():
    # A lock name of its own, so PostgreSQL runs never see each other's rows.
    return f"test-{uuid.uuid4().hex[:12]}"


def test_the_first_daemon_takes_the_lock_and_a_second_is_refused(store, name):
    a, b = new_holder(), new_holder()
    assert a != b
    assert acquire(store, name, a, T0, TTL)
    assert not acquire(store, name, b, T0 + timedelta(seconds=30), TTL)
    assert holder_of(store, name)[0] == a


def test_the_holder_renews_and_a_renewed_lock_is_not_stolen(store, name):
    a, b = new_holder(), new_holder()
    assert acquire(store, name, a, T0, TTL)
    assert renew(store, name, a, T0 + timedelta(seconds=50), TTL)
    assert not acquire(store, name, b, T0 + timedelta(seconds=70), TTL)
    assert acquire(store, name, a, T0 + timedelta(seconds=70), TTL)  # re-entrant for a


def test_an_expired_lock_is_stolen_and_the_old_holder_cannot_renew_it(store, name):
    a, b = new_holder(), new_holder()
    assert acquire(store, name, a, T0, TTL)
    assert acquire(store, name, b, T0 + TTL, TTL)
    assert holder_of(store, name)[0] == b
    assert not renew(store, name, a, T0 + TTL + timedelta(seconds=1), TTL)


def test_a_released_lock_is_free_at_once(store, name):
    a, b = new_holder(), new_holder()
    assert acquire(store, name, a, T0, TTL)
    release(store, name, b)  # not b's to release: nothing happens
    assert holder_of(store, name)[0] == a
    release(store, name, a)
    assert holder_of(store, name) is None
    assert acquire(store, name, b, T0 + timedelta(seconds=1), TTL)


def test_fence_commits_only_for_the_unexpired_holder(store, name):
    a, b = new_holder(), new_holder()
    assert acquire(store, name, a, T0, TTL)
    with store.begin() as conn:
        fence(conn, name, a, T0 + timedelta(seconds=10))
    with pytest.raises(LockLost), store.begin() as conn:
        fence(conn, name, b, T0 + timedelta(seconds=10))
    with pytest.raises(LockLost), store.begin() as conn:
        fence(conn, name, a, T0 + TTL)


def test_many_racers_for_a_fresh_lock_exactly_one_wins(store, name):
    holders = [new_holder() for _ in range(8)]
    wins: list[str] = []
    gate = threading.Barrier(len(holders))

    def race(h: str) -> None:
        gate.wait()
        if acquire(store, name, h, T0, TTL):
            wins.append(h)

    threads = [threading.Thread(target=race, args=(h,)) for h in holders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert holder_of(store, name)[0] == wins[0]


def test_many_racers_for_an_expired_lock_exactly_one_steals_it(store, name):
    assert acquire(store, name, "gone", T0, TTL)
    holders = [new_holder() for _ in range(8)]
    wins: list[str] = []
    gate = threading.Barrier(len(holders))
    later = T0 + 2 * TTL

    def race(h: str) -> None:
        gate.wait()
        if acquire(store, name, h, later, TTL):
            wins.append(h)

    threads = [threading.Thread(target=race, args=(h,)) for h in holders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_heartbeat_notices_a_stolen_lock(store, name):
    clock = [T0]
    a = new_holder()
    assert acquire(store, name, a, T0, TTL)
    beat = Heartbeat(store, name, a, TTL, lambda: clock[0], interval=0.01).start()
    try:
        # Someone else takes it after a (simulated) expiry.
        with store.begin() as conn:
            from pipeline.store.locks import locks

            conn.execute(sa.update(locks).where(locks.c.name == name).values(holder="thief"))
        assert beat.lost.wait(5), "the heartbeat did not notice the lock was taken"
    finally:
        beat.stop()


def test_heartbeat_keeps_extending_the_lock(store, name):
    clock = [T0]
    a = new_holder()
    assert acquire(store, name, a, T0, TTL)
    beat = Heartbeat(store, name, a, TTL, lambda: clock[0], interval=0.01).start()
    try:
        clock[0] = T0 + timedelta(minutes=10)
        deadline = threading.Event()
        for _ in range(500):
            if holder_of(store, name)[1] == clock[0] + TTL:
                break
            deadline.wait(0.01)
        assert holder_of(store, name)[1] == clock[0] + TTL
        assert not beat.lost.is_set()
    finally:
        beat.stop()


def test_lock_times_must_be_aware(store, name):
    with pytest.raises(ValueError):
        acquire(store, name, "a", T0.replace(tzinfo=None), TTL)


def _gone_holder() -> str:
    """A holder name of this host whose process has exited (as after a SIGKILL)."""
    import socket
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{socket.gethostname()}:{child.pid}:deadbeef"


def test_a_lock_whose_holder_process_is_gone_on_this_host_is_taken_before_expiry(store, name):
    """One lease judgement for the lock and the send ledger: a holder of this host whose
    process no longer exists is dead at once, so a standby takes over in one poll."""
    dead, b = _gone_holder(), new_holder()
    assert acquire(store, name, dead, T0, TTL)
    assert acquire(store, name, b, T0 + timedelta(seconds=5), TTL)
    assert holder_of(store, name)[0] == b


def test_a_lock_held_by_a_live_process_elsewhere_waits_for_expiry(store, name):
    other_host, b = "elsewhere.example:1:abcd", new_holder()
    assert acquire(store, name, other_host, T0, TTL)
    assert not acquire(store, name, b, T0 + timedelta(seconds=5), TTL)
    assert acquire(store, name, b, T0 + TTL, TTL)
