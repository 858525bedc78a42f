"""``brief db copy``: the whole store from one database to another (SQLite <-> PostgreSQL).

How it works, and why it can be interrupted:

- The target is migrated first (``open_store``), so both sides have the same tables.
- A fresh copy refuses a target that holds any row: merging two stores is not a copy.
  Before the first row it writes one ``copy_progress`` row per table into the target,
  naming the source; from then on the target is "a copy in progress from that source".
- Tables go parents first (``metadata.sorted_tables``), each in batches ordered by its
  primary key. Each batch is inserted in ONE target transaction together with the new
  high-water mark (the batch's last primary key) in ``copy_progress``. A crash loses at
  most the batch in flight, and that batch's rows and mark vanish together.
- Running the same command again resumes: per table it reads the source from after the
  recorded mark. Rows are never copied twice, because the mark and the rows commit
  together. The mark is compared in the SOURCE, in the source's own ordering, so string
  keys ordered differently by SQLite (bytes) and PostgreSQL (collation) cannot skip rows.
- The source is read in one transaction (REPEATABLE READ on PostgreSQL, a WAL snapshot
  on SQLite): one run copies one consistent moment. Stop ``brief serve``/``brief run``
  while copying: writes made between an interruption and the resume are only caught when
  they add rows after the mark, and the final count comparison says so.
- Ids are copied as they are (links carry membership and subscriber ids, and each
  person's ``token_key`` comes along, so every link ever mailed keeps working). On
  PostgreSQL the id sequences are then moved past the copied ids.
- It ends by counting every table on both sides, in the source's snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import StoreError
from pipeline.store.db import (
    _describe,
    one_line,
    open_store,
    read_connection,
    reading,
    transaction,
    utcnow,
)
from pipeline.store.schema import copy_progress, metadata

DEFAULT_BATCH = 2000

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TableCount:
    """One table's rows in the source and in the target after the copy."""

    table: str
    source: int
    target: int

    @property
    def equal(self) -> bool:
        return self.source == self.target


@dataclass(frozen=True)
class CopyReport:
    """What one run of the copy did: rows written now, whether it resumed, the counts."""

    copied: int
    resumed: bool
    counts: tuple[TableCount, ...]

    @property
    def mismatched(self) -> tuple[TableCount, ...]:
        return tuple(c for c in self.counts if not c.equal)


def copied_tables() -> list[sa.Table]:
    """Every table on the metadata, parents before children, except the copy's own."""
    return [t for t in metadata.sorted_tables if t is not copy_progress]


def _utc(value: datetime) -> datetime:
    # SQLite gives naive UTC; PostgreSQL gives the session's zone, which a SQLite target
    # would store without its offset: both become aware UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _row_for_insert(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {k: _utc(v) if isinstance(v, datetime) else v for k, v in row.items()}


def _encode_key(values: tuple[Any, ...]) -> list[Any]:
    # JSON holds ints and strings; the one date key (slot_events.slot) goes as ISO text.
    return [v.isoformat() if isinstance(v, date) else v for v in values]


def _decode_key(table: sa.Table, values: list[Any]) -> tuple[Any, ...]:
    pk = list(table.primary_key.columns)
    return tuple(
        date.fromisoformat(v) if isinstance(col.type, sa.Date) and isinstance(v, str) else v
        for col, v in zip(pk, values, strict=True)
    )


def _after(table: sa.Table, key: tuple[Any, ...]) -> sa.ColumnElement[bool]:
    pk = list(table.primary_key.columns)
    if len(pk) == 1:
        return pk[0] > sa.bindparam(None, key[0], type_=pk[0].type)
    bound = [sa.bindparam(None, v, type_=c.type) for c, v in zip(pk, key, strict=True)]
    return sa.tuple_(*pk) > sa.tuple_(*bound)


def _count(conn: Connection, table: sa.Table) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _same_database(a: str, b: str) -> bool:
    try:
        ua, ub = sa.make_url(a), sa.make_url(b)
    except Exception:  # noqa: BLE001 - open_store reports a bad URL properly
        return False
    return ua.set(drivername=ua.get_backend_name()) == ub.set(drivername=ub.get_backend_name())


def _claim_target(target: Engine, source_name: str) -> dict[str, tuple[Any, ...] | None]:
    """Start or resume: the high-water mark per table (None: nothing copied yet)."""
    with transaction(target) as conn:
        marks = conn.execute(sa.select(copy_progress)).all()
        if marks:
            others = {m.source for m in marks if m.source != source_name}
            if others:
                raise StoreError(
                    f"the target holds a copy from {sorted(others)[0]}, not from {source_name}; "
                    "copy into an empty database"
                )
            tables = {t.name: t for t in copied_tables()}
            # A table a newer migration added since the copy began starts from nothing.
            missing = set(tables) - {m.table_name for m in marks}
            if missing:
                conn.execute(
                    copy_progress.insert(),
                    [
                        {
                            "table_name": name,
                            "source": source_name,
                            "copied": 0,
                            "updated_at": utcnow(),
                        }
                        for name in sorted(missing)
                    ],
                )
            return {
                m.table_name: (
                    _decode_key(tables[m.table_name], m.last_key) if m.last_key else None
                )
                for m in marks
                if m.table_name in tables
            }
        busy = [(t.name, n) for t in copied_tables() if (n := _count(conn, t))]
        if busy:
            name, n = busy[0]
            raise StoreError(
                f"the target database is not empty (table {name} has {n} row(s)); "
                "brief db copy only copies into an empty database"
            )
        now = utcnow()
        conn.execute(
            copy_progress.insert(),
            [
                {"table_name": t.name, "source": source_name, "copied": 0, "updated_at": now}
                for t in copied_tables()
            ],
        )
        return {}


def _copy_table(
    src: Connection,
    target: Engine,
    table: sa.Table,
    mark: tuple[Any, ...] | None,
    batch_size: int,
    total: int,
    progress: Progress | None,
) -> int:
    pk = list(table.primary_key.columns)
    written = 0
    done_before = None
    while True:
        query = sa.select(table).order_by(*pk).limit(batch_size)
        if mark is not None:
            query = query.where(_after(table, mark))
        rows = src.execute(query).mappings().all()
        with transaction(target) as conn:
            if done_before is None:
                done_before = conn.execute(
                    sa.select(copy_progress.c.copied).where(
                        copy_progress.c.table_name == table.name
                    )
                ).scalar_one()
            if not rows:
                conn.execute(
                    copy_progress.update()
                    .where(copy_progress.c.table_name == table.name)
                    .values(finished_at=utcnow(), updated_at=utcnow())
                )
                return written
            _insert_rows(conn, table, rows)
            last = rows[-1]
            mark = tuple(last[c.name] for c in pk)
            written += len(rows)
            # A short batch is the last: the table is marked finished in the same commit.
            finished = utcnow() if len(rows) < batch_size else None
            conn.execute(
                copy_progress.update()
                .where(copy_progress.c.table_name == table.name)
                .values(
                    last_key=_encode_key(mark),
                    copied=done_before + written,
                    finished_at=finished,
                    updated_at=utcnow(),
                )
            )
        if progress is not None:
            progress(table.name, done_before + written, total)
        if finished is not None:
            return written


def _insert_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping[Any, Any]]) -> None:
    values = [_row_for_insert(r) for r in rows]
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), values)
        return
    # COPY on PostgreSQL: with batched INSERTs a copy took 1.6 times as long as one
    # INSERT transaction of the same rows, with COPY half as long (benchmarks/
    # bench_copy.py). Same transaction: the driver connection under ``conn`` is the one
    # the batch's progress row is written through.
    from psycopg.types.json import Jsonb

    names = [c.name for c in table.columns]
    as_json = {c.name for c in table.columns if isinstance(c.type, sa.JSON)}
    columns = ", ".join(f'"{n}"' for n in names)
    driver = conn.connection.driver_connection
    assert driver is not None
    with (
        driver.cursor() as cursor,
        cursor.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy,
    ):
        for row in values:
            copy.write_row([Jsonb(row[n]) if n in as_json else row[n] for n in names])


def _fix_sequences(target: Engine) -> None:
    """After explicit ids, PostgreSQL's sequences still start at 1: move them past."""
    if target.dialect.name != "postgresql":
        return  # SQLite's rowid allocation already follows the largest id
    with transaction(target) as conn:
        for table in copied_tables():
            pk = list(table.primary_key.columns)
            if len(pk) != 1 or not isinstance(pk[0].type, sa.Integer):
                continue
            col = pk[0].name
            conn.execute(
                sa.text(
                    f"SELECT setval(pg_get_serial_sequence(:t, :c), "
                    f'COALESCE(MAX("{col}"), 0) + 1, false) FROM "{table.name}"'
                ),
                {"t": table.name, "c": col},
            )


def copy_store(
    source_url: str,
    target_url: str,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy every table from ``source_url`` to ``target_url`` (migrated first); resumable.

    Refuses a non-empty target unless it holds an unfinished copy from the same source.
    Returns the per-table counts of both sides; the caller judges a mismatch.
    """
    if batch_size < 1:
        raise StoreError("db copy: the batch size must be at least 1")
    if _same_database(source_url, target_url):
        raise StoreError("db copy: the target is the configured database itself")
    source_name = _describe(source_url)
    source = open_store(source_url)
    try:
        target = open_store(target_url)
        try:
            return _run(source, target, source_name, batch_size, progress)
        finally:
            target.dispose()
    finally:
        source.dispose()


def _run(
    source: Engine,
    target: Engine,
    source_name: str,
    batch_size: int,
    progress: Progress | None,
) -> CopyReport:
    marks = _claim_target(target, source_name)
    resumed = bool(marks)
    written = 0
    src = read_connection(source)
    if source.dialect.name == "postgresql":
        # One snapshot for the whole run: every batch and the final counts agree.
        src = src.execution_options(isolation_level="REPEATABLE READ")
    try:
        with src:
            totals = {t.name: _count(src, t) for t in copied_tables()}
            for table in copied_tables():
                written += _copy_table(
                    src,
                    target,
                    table,
                    marks.get(table.name),
                    batch_size,
                    totals[table.name],
                    progress,
                )
            _fix_sequences(target)
            with reading(target) as tconn:
                counts = tuple(
                    TableCount(t.name, totals[t.name], _count(tconn, t)) for t in copied_tables()
                )
    except SQLAlchemyError as exc:
        raise StoreError(f"db copy: database error: {one_line(exc)}") from None
    return CopyReport(copied=written, resumed=resumed, counts=counts)
