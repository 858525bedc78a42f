"""Sending at scale (issue 11): queries driven by the indexes they need, whatever the
planner knows, and queueing that does not grow with the campaign."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.fixtures_store import _pg_admin_url


@pytest.fixture
def pg_store_url() -> Iterator[str]:
    """An empty PostgreSQL schema: the planner questions here are PostgreSQL's alone
    (SQLite plans by its indexes)."""
    admin_url = _pg_admin_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{admin_url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


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
