"""Opening the store: migrations, SQLite pragmas, errors."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from pipeline.errors import StoreError
from pipeline.store import open_store, upgrade

TABLES = {"lists", "subscribers", "memberships", "events", "suppressions", "alembic_version"}


def _script_heads() -> list[str]:
    from pipeline.store.db import _alembic_config

    return sorted(ScriptDirectory.from_config(_alembic_config()).get_heads())


def test_revision_0001_is_the_root_of_the_migration_chain():
    from pipeline.store.db import _alembic_config

    script = ScriptDirectory.from_config(_alembic_config())
    assert script.get_revision("0001").down_revision is None
    assert [r.revision for r in script.walk_revisions()][-1] == "0001"


def test_open_store_migrates_an_empty_database_to_head(unmigrated_store_url):
    engine = open_store(unmigrated_store_url)
    try:
        names = set(sa.inspect(engine).get_table_names())
        assert TABLES <= names
        with engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
            assert sorted(versions) == _script_heads()
    finally:
        engine.dispose()


def test_store_url_is_an_empty_store_already_at_head(store_url):
    # The fixture hands out a copy of a migrated template: schema at head, no rows.
    engine = sa.create_engine(store_url)
    try:
        assert TABLES <= set(sa.inspect(engine).get_table_names())
        with engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
            assert sorted(versions) == _script_heads()
            for table in ("lists", "subscribers", "memberships", "events", "suppressions"):
                assert conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar() == 0
    finally:
        engine.dispose()


def test_open_store_twice_is_idempotent_and_keeps_data(unmigrated_store_url):
    from pipeline.store import create_list, lists

    first = open_store(unmigrated_store_url)
    create_list(first, "weekly")
    first.dispose()
    again = open_store(unmigrated_store_url)
    try:
        assert [li.name for li in lists(again)] == ["weekly"]
        assert upgrade(unmigrated_store_url) == _script_heads()
    finally:
        again.dispose()


def test_sqlite_store_uses_wal_foreign_keys_and_a_busy_timeout(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'deep' / 'dir' / 'b.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
        assert (tmp_path / "deep" / "dir" / "b.db").exists()
    finally:
        engine.dispose()


def test_unsupported_database_url_is_a_store_error():
    with pytest.raises(StoreError, match="only sqlite"):
        open_store("mysql://localhost/brief")


def test_unreachable_postgresql_is_a_one_line_store_error():
    with pytest.raises(StoreError, match="cannot open the database") as info:
        open_store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    assert "\n" not in str(info.value)


def test_sqlite_commits_are_durable_across_a_power_cut(tmp_path):
    """WAL with synchronous=FULL: a commit (the ledger's in-flight mark) is on disk
    before the provider is told to take the message; NORMAL may lose it in a power cut."""
    engine = open_store(f"sqlite:///{tmp_path / 'brief.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()
