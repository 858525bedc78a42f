"""``brief db copy`` (issue 13): the whole store moves between SQLite and PostgreSQL, both
ways, and the copy is the same store: every table row for row, erased people still
erased, old links still working, an interrupted copy finished by running it again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

# Every table is compared, named here rather than taken from the code under test, so a
# table the copy forgot cannot drop out of the comparison with it.
ALL_TABLES = {
    "lists",
    "subscribers",
    "memberships",
    "events",
    "suppressions",
    "notices",
    "campaigns",
    "deliveries",
    "campaign_senders",
    "locks",
    "slot_events",
    "brief_apscheduler_jobs",
    "webhook_events",
    "rate_hits",
    "links",
    "clicks",
    "link_counts",
}
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def _fill(url: str, people: int = 6) -> dict[str, Any]:
    """A store with every membership state, consent history, suppressions, an erasure,
    a send ledger, webhook replay ids and the daemon's rows; returns links minted in it."""
    from pipeline.send.notices import enqueue_welcome
    from pipeline.store import (
        add_subscriber,
        create_list,
        forget,
        open_store,
        show,
        suppress,
        unsubscribe_by_address,
    )
    from pipeline.store.db import transaction
    from pipeline.store.ledger import enqueue_audience, start_campaign
    from pipeline.store.locks import acquire
    from pipeline.store.rate_hits import allow
    from pipeline.store.schema import (
        apscheduler_jobs,
        campaign_senders,
        clicks,
        link_counts,
        slot_events,
    )
    from pipeline.store.schema import links as sa_links
    from pipeline.webhooks.apply import remember_token

    engine = open_store(url)
    try:
        create_list(engine, "weekly", "Once a week")
        for i in range(people):
            add_subscriber(
                engine,
                f"reader{i}@example.org",
                name=f"Réader {i}" if i % 2 else None,
                list_name="main",
                confirmed=True,
                source="cli",
                attributes={"plan": "pro", "n": i},
            )
        add_subscriber(engine, "pending@example.org", list_name="main")  # pending
        add_subscriber(engine, "frank@example.org", list_name="main", confirmed=True)
        add_subscriber(engine, "frank@example.org", list_name="weekly", confirmed=True)
        unsubscribe_by_address(engine, "frank@example.org", list_name="main")
        add_subscriber(engine, "grace@example.org", list_name="main", confirmed=True)
        unsubscribe_by_address(engine, "grace@example.org")  # everything: suppressed
        add_subscriber(engine, "erased@example.org", name="Gone", confirmed=True)
        forget(engine, "erased@example.org")
        add_subscriber(engine, "keeper@example.org", list_name="weekly", confirmed=True)
        suppress(engine, "bounced@example.org", "hard_bounce", "webhook")
        links = {
            "frank_weekly": show(engine, "frank@example.org").memberships[1].unsubscribe_token,
            "keeper_all": show(engine, "keeper@example.org").unsubscribe_all_token,
        }
        campaign = start_campaign(
            engine,
            1,
            "main",
            provider="outbox",
            subject="Issue 1",
            content_commit="abc",
            holder="host:1",
            content_hash=f"{'0' * 64}  issues/001-2026-12-02.md",  # migration 0010
        )
        enqueue_audience(engine, campaign)
        remember_token(engine, "mailgun", "token-one")
        remember_token(engine, "mailgun", "token-two")
        enqueue_welcome(engine, "keeper@example.org", None, "weekly", "cli")
        acquire(engine, "daemon", "host:1", T0, timedelta(minutes=1))
        allow(engine, "subscribe", "203.0.113.9", 10, T0)
        with transaction(engine) as conn:
            conn.execute(
                campaign_senders.insert().values(
                    campaign_id=campaign.id, holder="host:2", heartbeat=T0, joined_at=T0
                )
            )
            conn.execute(
                slot_events.insert(),
                [
                    {"slot": date(2026, 12, d), "kind": "send", "holder": "h", "at": T0}
                    for d in (2, 16)
                ],
            )
            conn.execute(
                sa_links.insert().values(issue_number=1, link_id=1, url="https://a.example/")
            )
            conn.execute(
                clicks.insert(),
                [
                    {
                        "issue_number": 1,
                        "link_id": 1,
                        "kind": "click",
                        "subscriber_id": 1,
                        "at": T0,
                        "machine": m,
                        "reasons": "head" if m else "",
                        "network": None,
                    }
                    for m in (False, True)
                ],
            )
            conn.execute(
                link_counts.insert().values(
                    issue_number=1,
                    link_id=1,
                    kind="click",
                    human=3,
                    machine=2,
                    human_people=2,
                    rolled_at=T0,
                )
            )
            conn.execute(
                apscheduler_jobs.insert().values(
                    id="tick", next_run_time=1.5e9, job_state=b"\x00\x80pickled"
                )
            )
    finally:
        engine.dispose()
    return links


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows in primary-key order, times as aware UTC."""
    from pipeline.store.db import make_engine
    from pipeline.store.schema import metadata

    def norm(v: Any) -> Any:
        if isinstance(v, datetime):
            return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
        return v

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            out = {}
            for name in ALL_TABLES:
                table = metadata.tables[name]
                rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns))
                out[name] = [tuple(norm(v) for v in row) for row in rows]
            return out
    finally:
        engine.dispose()


def test_every_table_lives_in_the_comparison():
    """If a table is added to the schema, this test module must learn of it."""
    from pipeline.store.schema import metadata

    assert set(metadata.tables) - {"copy_progress"} == ALL_TABLES


def test_copy_reproduces_every_table_row_for_row(copy_urls):
    from pipeline.store.copy import copy_store

    source, target = copy_urls
    _fill(source)
    before = _dump(source)
    # A batch of one row: every table is copied through its high-water mark, composite
    # and date keys included.
    report = copy_store(source, target, batch_size=1)

    assert report.mismatched == ()
    assert not report.resumed
    after = _dump(target)
    empty = {name for name, rows in before.items() if not rows}
    assert empty == set(), f"the test store should fill every table: {empty}"
    for name in sorted(ALL_TABLES):
        assert after[name] == before[name], name
    assert report.copied == sum(len(rows) for rows in before.values())


def test_erased_person_stays_erased_and_unreachable_in_the_copy(copy_urls):
    from pipeline.errors import NotFound, StoreError
    from pipeline.store import add_subscriber, is_suppressed, open_store, show
    from pipeline.store.copy import copy_store

    source, target = copy_urls
    _fill(source)
    copy_store(source, target)

    engine = open_store(target)
    try:
        with pytest.raises(NotFound, match="suppressed: erased"):
            show(engine, "erased@example.org")
        assert is_suppressed(engine, "erased@example.org")
        assert is_suppressed(engine, "grace@example.org")
        with pytest.raises(StoreError):
            add_subscriber(engine, "bounced@example.org", confirmed=True, source="cli")
        # An erasure leaves no personal data anywhere in the copy.
        with engine.connect() as conn:
            text = repr(conn.execute(sa.text("SELECT * FROM events")).all())
        assert "erased@example.org" not in text and "Gone" not in text
    finally:
        engine.dispose()


def test_old_unsubscribe_links_work_against_the_copy(copy_urls):
    from pipeline.store import open_store, show, unsubscribe_by_token
    from pipeline.store.copy import copy_store

    source, target = copy_urls
    links = _fill(source)
    copy_store(source, target)

    engine = open_store(target)
    try:
        assert unsubscribe_by_token(engine, links["frank_weekly"]) == 1
        assert unsubscribe_by_token(engine, links["keeper_all"]) == 1
        assert {m.status for m in show(engine, "frank@example.org").memberships} == {"unsubscribed"}
        assert show(engine, "keeper@example.org").suppressed == "unsubscribed"
    finally:
        engine.dispose()


def test_the_copy_takes_new_rows_after_the_copied_ids(copy_urls):
    """PostgreSQL's sequences are moved past the copied ids (else: duplicate key on id 1)."""
    from pipeline.store import add_subscriber, create_list, open_store
    from pipeline.store.copy import copy_store

    source, target = copy_urls
    _fill(source)
    copy_store(source, target)

    engine = open_store(target)
    try:
        create_list(engine, "monthly")
        added = add_subscriber(engine, "new@example.org", list_name="monthly", confirmed=True)
        assert added.created
    finally:
        engine.dispose()


def test_copy_refuses_a_target_that_is_not_empty(copy_urls):
    from pipeline.errors import StoreError
    from pipeline.store import add_subscriber, open_store
    from pipeline.store.copy import copy_store

    source, target = copy_urls
    _fill(source, people=1)
    engine = open_store(target)
    add_subscriber(engine, "someone@example.org", confirmed=True, source="cli")
    engine.dispose()

    with pytest.raises(StoreError, match="not empty .*table lists has 1 row"):
        copy_store(source, target)
    rows = _dump(target)
    assert len(rows["subscribers"]) == 1  # nothing was added to it


def test_copy_refuses_to_resume_a_copy_from_another_source(copy_urls, tmp_path):
    from pipeline.errors import StoreError
    from pipeline.store.copy import copy_store

    source, target = copy_urls
    _fill(source, people=1)
    copy_store(source, target)
    other = f"sqlite:///{tmp_path / 'other' / 'brief.db'}"
    with pytest.raises(StoreError, match="holds a copy from"):
        copy_store(other, target)


def test_running_a_finished_copy_again_changes_nothing(copy_urls):
    from pipeline.store.copy import copy_store

    source, target = copy_urls
    _fill(source, people=2)
    copy_store(source, target, batch_size=3)
    before = _dump(target)
    again = copy_store(source, target, batch_size=3)
    assert again.resumed and again.copied == 0 and again.mismatched == ()
    assert _dump(target) == before


def _config_for(project: Path, url: str) -> Path:
    text = (project / "brief.toml").read_text()
    text = text.replace('url = "sqlite:///.brief/brief.db"', f'url = "{url}"')
    assert url in text
    path = project / "copy.toml"
    path.write_text(text)
    return path


def _copy_process(project: Path, config: Path, target: str, batch: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("BRIEF_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--config", str(config), "db", "copy"]
        + ["--to", target, "--batch-size", str(batch)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_copy_killed_midway_then_rerun_completes_without_duplicates(copy_urls, project):
    from pipeline.store.schema import subscribers

    source, target = copy_urls
    _fill(source, people=250)
    config = _config_for(project, source)
    before = _dump(source)

    proc = _copy_process(project, config, target, batch=5)
    assert proc.stdout is not None
    for line in proc.stdout:
        # Kill (no cleanup, like a power cut) once the subscribers are half copied.
        if line.strip().startswith("subscribers: 100/"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    partial = _dump(target)
    assert 0 < len(partial["subscribers"]) < len(before["subscribers"])
    assert partial["memberships"] == []  # the kill came before the later tables

    rerun = _copy_process(project, config, target, batch=5)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert "resumed: copied" in out
    # It went on from the mark: the first batch of the rerun is past the 100 copied.
    first = out.splitlines()[0].split()
    assert first[0] == "subscribers:" and int(first[1].split("/")[0]) > 100, out
    assert "every table has the same number of rows on both sides" in out
    after = _dump(target)
    for name in sorted(ALL_TABLES):
        assert after[name] == before[name], name
    ids = [row[0] for row in after[subscribers.name]]
    assert len(ids) == len(set(ids))


def test_cli_copy_into_a_non_empty_target_is_one_line_and_exit_one(brief, store_url):
    from pipeline.store import add_subscriber, open_store

    engine = open_store(store_url)
    add_subscriber(engine, "someone@example.org", confirmed=True, source="cli")
    engine.dispose()
    brief("subscribers", "add", "a@example.org", "--confirmed", "--source", "cli")

    result = brief("db", "copy", "--to", store_url)

    assert result.code == 1
    assert result.err.strip().count("\n") == 0
    assert "not empty" in result.err and "Traceback" not in result.err


def test_cli_copy_ends_with_counts_and_a_later_difference_exits_one(brief, tmp_path):
    target = f"sqlite:///{tmp_path / 'target' / 'brief.db'}"
    for who in ("a@example.org", "b@example.org"):
        assert brief("subscribers", "add", who, "--confirmed", "--source", "cli").code == 0

    first = brief("db", "copy", "--to", target)
    assert first.code == 0, first.err
    assert "every table has the same number of rows on both sides" in first.out
    assert re.search(r"(?m)^  subscribers +2$", first.out)

    # Written to the source after the copy: a rerun cannot undo a deletion, and says so.
    assert brief("subscribers", "forget", "a@example.org", "--yes").code == 0
    again = brief("db", "copy", "--to", target)
    assert again.code == 1
    assert "MISMATCH: target has 2" in again.out
    assert again.err.strip().count("\n") == 0
    assert "counts differ in" in again.err and "subscribers" in again.err
