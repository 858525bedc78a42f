"""Sending at scale (issue 11): queries driven by the indexes they need, whatever the
planner knows, and queueing that does not grow with the campaign."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.fixtures_store import pg_empty_schema


@pytest.fixture
def pg_store_url() -> Iterator[str]:
    """An empty PostgreSQL schema: the planner questions here are PostgreSQL's alone
    (SQLite plans by its indexes)."""
    with pg_empty_schema() as url:
        yield url


def _start_send(project, *args: str):
    """``brief send 1 --yes`` (plus ``args``) in the background, as an operator starts it."""
    import os
    import subprocess

    from tests.test_send_cli import BRIEF

    return subprocess.Popen(
        [*BRIEF, "send", "1", "--yes", *args],
        env={**os.environ, "BRIEF_CONFIG": str(project / "brief.toml")},
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(sink, count: int, seconds: float = 30) -> None:
    """Until the sink has ``count`` messages (or ``seconds`` passed)."""
    import time

    deadline = time.monotonic() + seconds
    while sink.count() < count and time.monotonic() < deadline:
        time.sleep(0.01)


def _members(engine, count: int) -> int:
    """``count`` confirmed members of list main and as many suppressions of others,
    written in bulk as an import would."""
    from pipeline.store import add_subscriber, suppress
    from pipeline.store.lists import list_id_conn
    from pipeline.store.schema import memberships, subscribers, suppressions

    add_subscriber(engine, "first@example.com", None, list_name="main", confirmed=True)
    with engine.begin() as conn:
        list_id = list_id_conn(conn, "main")
        template = conn.execute(sa.select(subscribers).limit(1)).mappings().one()
        member = conn.execute(sa.select(memberships).limit(1)).mappings().one()
        people = [
            {
                **{k: v for k, v in template.items() if k != "id"},
                "email": f"bulk{i}@example.com",
                "email_hash": f"{i:064x}",
            }
            for i in range(count)
        ]
        conn.execute(subscribers.insert(), people)
        ids = conn.execute(sa.select(subscribers.c.id).where(subscribers.c.id > 1)).scalars()
        conn.execute(
            memberships.insert(),
            [
                {**{k: v for k, v in member.items() if k != "id"}, "subscriber_id": sid}
                for sid in ids
            ],
        )
    suppress(engine, "gone@example.com", "hard_bounce", "test")
    with engine.begin() as conn:
        row = conn.execute(sa.select(suppressions).limit(1)).mappings().one()
        conn.execute(
            suppressions.insert(),
            [{**row, "address_hash": f"s{i:063x}"} for i in range(count)],
        )
    return list_id


def _rows_read(plan: dict, table: str) -> int:
    """Rows a plan's nodes on ``table`` read: returned plus removed by a filter, per loop."""
    total = 0
    if plan.get("Relation Name") == table:
        loops = plan.get("Actual Loops", 1)
        total += (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * loops
    for child in plan.get("Plans", []):
        total += _rows_read(child, table)
    return total


@pytest.mark.postgres
def test_a_batch_of_recipients_reads_its_own_rows_without_planner_statistics(pg_store_url):
    """Measured: right after an import (no ANALYZE yet) each batch of 200 ids walked every
    membership of the list: 1.09 s a batch at 100,000 subscribers, 9.0 s at 1,000,000."""
    from pipeline.store import open_store
    from pipeline.store.audience import audience_select

    engine = open_store(pg_store_url)
    try:
        with engine.begin() as conn:
            for table in ("subscribers", "memberships", "suppressions"):
                conn.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        list_id = _members(engine, 20_000)
        with engine.connect() as conn:
            analysed = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stats WHERE tablename = 'memberships'"
            ).scalar_one()
            assert analysed == 0, "the test needs a table without statistics"
            ids = list(range(5_000, 5_200))
            query = audience_select(list_id, ids, lateral=True).compile(
                engine, compile_kwargs={"literal_binds": True}
            )
            plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}").scalar_one()
        for table in ("memberships", "subscribers", "suppressions"):
            read = _rows_read(plan[0]["Plan"], table)
            assert read <= 2 * len(ids), f"read {read} rows of {table} for {len(ids)} ids"
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------
# More than one sender


def test_join_on_sqlite_is_refused_with_the_reason(project, brief):
    from tests.fixtures_send import subscribe_many
    from tests.test_send_cli import _engine

    subscribe_many(_engine(project), 2)
    out = brief("send", "1", "--yes", "--join")
    assert out.code == 1
    assert "--join needs PostgreSQL" in out.err and "one writer at a time" in out.err
    assert len(out.err.strip().splitlines()) == 1


def test_join_needs_a_running_send(project, pg_store_url, brief):
    from tests.fixtures_send import set_keys, subscribe_many
    from tests.test_send_cli import _engine

    set_keys(project, "database", url=f'"{pg_store_url}"')
    engine = _engine(project)
    subscribe_many(engine, 2)
    out = brief("send", "1", "--yes", "--join")
    engine.dispose()
    assert out.code == 1 and "not being sent right now: nothing to join" in out.err


def test_two_joined_senders_one_killed_mail_nobody_twice(project, pg_store_url, smtp_sink):
    """Two processes send one campaign on PostgreSQL; one is SIGKILLed mid-way. The other
    settles the dead one's claimed rows and finishes; the server got each message once
    and what is unknown is at most the dead one's connections."""
    import os
    import signal
    import time

    from pipeline.store import ledger as lg
    from tests.fixtures_send import set_keys, subscribe_many, use_smtp
    from tests.test_send_cli import _engine

    total, concurrency = 400, 2
    set_keys(project, "database", url=f'"{pg_store_url}"')
    use_smtp(project, smtp_sink, rate_per_second=0, concurrency=concurrency, batch_size=20)
    engine = _engine(project)
    subscribe_many(engine, total)
    # The first sender is slowed by the rate limit so the second has something to take.
    set_keys(project, "provider", rate_per_second=40)
    first = _start_send(project)
    _wait_for(smtp_sink, 20)
    deadline = time.monotonic() + 30
    second = _start_send(project, "--join")

    def senders() -> int:
        with engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.count(sa.distinct(lg.deliveries.c.sender))).where(
                    lg.deliveries.c.state == "sent"
                )
            ).scalar_one()

    # Kill the joined sender once it has sent some of its own.
    while senders() < 2 and time.monotonic() < deadline and second.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)
    assert second.poll() is None, second.stderr.read()
    os.kill(second.pid, signal.SIGKILL)
    second.wait()
    out, err = first.communicate(timeout=60)
    campaign = lg.find_campaign(engine, 1, "main")
    counts = lg.state_counts(engine, campaign.id)
    assert senders() == 2, "the joined sender sent nothing before it was killed"
    engine.dispose()
    assert counts["claimed"] == 0 and counts["inflight"] == 0 and counts["pending"] == 0
    assert counts["unknown"] <= concurrency, counts
    assert counts["sent"] + counts["unknown"] == total, counts
    assert all(len(v) == 1 for v in smtp_sink.received.values()), "someone got it twice"
    assert smtp_sink.count() >= counts["sent"]
    assert first.returncode == (1 if counts["unknown"] else 0), err


def test_workers_may_join_is_refused_on_sqlite_naming_the_key(project):
    from pipeline.config import load_settings
    from pipeline.errors import ConfigError
    from tests.fixtures_send import set_keys

    set_keys(project, "send", workers_may_join="true")
    with pytest.raises(ConfigError, match=r"^send\.workers_may_join: needs PostgreSQL"):
        load_settings(start=project, env={})


def test_a_standing_by_daemon_with_workers_may_join_takes_rows_of_a_running_send(
    project, pg_store_url, smtp_sink, caplog
):
    """`brief send` runs the campaign; a daemon standing by (another daemon leads) joins it
    through the same claims: both send, nobody twice, the campaign ends sent."""
    import logging
    import threading
    from datetime import UTC, datetime, timedelta

    from pipeline.config import load_settings
    from pipeline.content.library import load_content
    from pipeline.daemon.service import Daemon
    from pipeline.store import ledger as lg
    from pipeline.store import locks
    from tests.fixtures_send import set_keys, subscribe_many, use_smtp
    from tests.test_send_cli import _engine

    caplog.set_level(logging.INFO, logger="brief")
    total = 300
    set_keys(project, "database", url=f'"{pg_store_url}"')
    use_smtp(project, smtp_sink, rate_per_second=60, concurrency=2, batch_size=20)
    set_keys(project, "send", workers_may_join="true")
    engine = _engine(project)
    subscribe_many(engine, total)
    # Another daemon leads, so ours stands by (the leader itself is not needed here).
    assert locks.acquire(
        engine, locks.DAEMON_LOCK, "leader:1:x", datetime.now(UTC), timedelta(minutes=5)
    )
    first = _start_send(project)
    _wait_for(smtp_sink, 10)
    settings = load_settings(start=project, env={})
    daemon = Daemon(settings, engine, lambda: load_content(settings), poll=0.05)
    runner = threading.Thread(target=daemon.run_forever)
    runner.start()
    try:
        out, err = first.communicate(timeout=60)
    finally:
        daemon.request_stop()
        runner.join(timeout=30)
    with engine.connect() as conn:
        senders = conn.execute(
            sa.select(lg.deliveries.c.sender, sa.func.count())
            .where(lg.deliveries.c.state == "sent")
            .group_by(lg.deliveries.c.sender)
        ).all()
    campaign = lg.find_campaign(engine, 1, "main")
    engine.dispose()
    assert len(senders) == 2, f"the daemon did not join: {senders}"
    assert sum(n for _, n in senders) == total
    assert all(len(v) == 1 for v in smtp_sink.received.values()), "someone got it twice"
    assert smtp_sink.count() == total
    assert campaign.state == "sent", (out, err)
    assert "event=joined issue=001 list=main" in caplog.text
