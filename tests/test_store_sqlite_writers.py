"""SQLite write transactions take the write lock up front, so read-then-write work
from several threads waits its turn instead of failing with "database is locked"."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from pipeline.store import open_store
from pipeline.store.db import reading, transaction


def test_concurrent_read_then_write_transactions_all_commit(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'brief.db'}")
    with transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE counter (n INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO counter VALUES (0)")
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def bump() -> None:
        try:
            start.wait()
            for _ in range(20):
                with transaction(engine) as conn:
                    n = conn.exec_driver_sql("SELECT n FROM counter").scalar_one()
                    conn.exec_driver_sql(f"UPDATE counter SET n = {n + 1}")
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with reading(engine) as conn:
        # no lost update either: each read-then-write saw the previous one's result
        assert conn.execute(sa.text("SELECT n FROM counter")).scalar_one() == 120
    engine.dispose()


def test_readers_do_not_wait_for_a_writer(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'brief.db'}")
    with transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    with transaction(engine) as writer:
        writer.exec_driver_sql("INSERT INTO t VALUES (1)")
        # a reader beside an open write transaction sees the last commit, at once
        with reading(engine) as reader:
            assert reader.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 0
    engine.dispose()
