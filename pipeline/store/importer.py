"""CSV import (streamed, one transaction, set-based) and CSV export."""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine

from pipeline.errors import ImportRefused, StoreError
from pipeline.private import open_private
from pipeline.store.db import transaction, utcnow
from pipeline.store.lists import list_for_write
from pipeline.store.normalise import (
    clean_attributes,
    clean_name,
    clean_source,
    hash_normalised,
    normalise_email,
)
from pipeline.store.schema import (
    UTC_TIME,
    JSONType,
    events,
    memberships,
    subscribers,
    suppressions,
)
from pipeline.store.subscribers import list_subscribers
from pipeline.store.tokens import new_token_key

EMAIL_HEADERS = ("email", "e-mail", "email address", "email_address", "mail")
NAME_HEADERS = ("name", "full name", "full_name")
ATTRIBUTES_HEADER = "attributes"
# Columns our own export writes that are not the person's data: ignored on re-import.
EXPORT_METADATA = (
    "list",
    "status",
    "consent_source",
    "consent_at",
    "confirmed_at",
    "unsubscribed_at",
)
EXPORT_HEADER = ("email", "name") + EXPORT_METADATA + (ATTRIBUTES_HEADER,)
MAX_LISTED_INVALID = 1000
# A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV
# Injection"; ASVS 1.2.10 adds NUL): exports put a single quote in front of it.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\x00")
STAGE_BATCH = 10_000
UPDATE_BATCH = 5_000
IMPORT_CACHE_KB = 65_536  # SQLite page cache while importing: 64 MiB


@dataclass
class ImportReport:
    """What an import did. ``invalid_rows`` lists (line, reason) for the first 1,000."""

    rows: int = 0
    imported: int = 0
    updated: int = 0
    duplicates: int = 0
    invalid: int = 0
    suppressed: int = 0
    invalid_rows: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data (for ``--json``)."""
        return {
            "rows": self.rows,
            "imported": self.imported,
            "updated": self.updated,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "suppressed": self.suppressed,
            "invalid_rows": [{"line": n, "reason": r} for n, r in self.invalid_rows],
        }


_stage_meta = sa.MetaData()
# One temporary table per import transaction: de-duplication and matching against
# the store happen in SQL, so memory stays flat whatever the file size.
stage = sa.Table(
    "brief_import_stage",
    _stage_meta,
    sa.Column("row_no", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("email_hash", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200)),
    sa.Column("attrs", sa.Text, nullable=False),
    sa.Column("token_key", sa.String(64), nullable=False),
    prefixes=["TEMPORARY"],
)
# Built after loading (faster than maintaining it row by row).
_STAGE_INDEX = "CREATE INDEX ix_brief_import_stage_hash ON brief_import_stage (email_hash, row_no)"
_STAGE_COLUMNS = ("row_no", "email", "email_hash", "name", "attrs", "token_key")


@dataclass(frozen=True)
class _Layout:
    email: int
    name: int | None
    attributes_json: int | None
    attributes: tuple[tuple[int, str], ...]
    width: int


def _layout(header: list[str]) -> _Layout:
    names = [h.strip().lower() for h in header]
    if any(not n for n in names):
        raise ImportRefused("the header row has an empty column name")
    if len(set(names)) != len(names):
        raise ImportRefused("the header row names a column twice")
    email = next((i for i, n in enumerate(names) if n in EMAIL_HEADERS), None)
    if email is None:
        raise ImportRefused(
            f"no email column in the header row (found: {', '.join(names)[:200]}); "
            "name one column 'email'"
        )
    name = next((i for i, n in enumerate(names) if n in NAME_HEADERS), None)
    attrs_json = names.index(ATTRIBUTES_HEADER) if ATTRIBUTES_HEADER in names else None
    taken = {email, name, attrs_json}
    attributes = tuple(
        (i, header[i].strip())
        for i, n in enumerate(names)
        if i not in taken and n not in EXPORT_METADATA
    )
    return _Layout(email, name, attrs_json, attributes, len(names))


def _parse_row(row: list[str], lay: _Layout) -> tuple[str, str | None, str]:
    """(normalised email, clean name, attributes JSON) or ``StoreError`` for this row."""
    address = normalise_email(row[lay.email])
    name = clean_name(row[lay.name]) if lay.name is not None else None
    raw: dict[str, Any] = {}
    if lay.attributes_json is not None and row[lay.attributes_json].strip():
        try:
            loaded = json.loads(row[lay.attributes_json])
        except ValueError:
            raise StoreError("the attributes column is not valid JSON") from None
        if not isinstance(loaded, dict):
            raise StoreError("the attributes column must be a JSON object")
        raw.update(loaded)
    for i, key in lay.attributes:
        raw[key] = row[i]
    attrs = clean_attributes(raw)
    return address, name, json.dumps(attrs, sort_keys=True, ensure_ascii=False)


@contextmanager
def _open_csv(path: str | Path) -> Iterator[IO[bytes]]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise ImportRefused(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        yield handle


def _decoded(handle: IO[bytes], path: str | Path) -> Iterator[str]:
    """Decode line by line so a bad byte is reported with its real line number."""
    for number, raw in enumerate(handle, 1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]  # spreadsheets like to prepend a BOM
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportRefused(
                f"{path} line {number} is not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                f"{exc.start + 1}); save the file as UTF-8 and try again; nothing was imported"
            ) from None


def _stage_rows(
    conn: Connection, handle: IO[bytes], report: ImportReport, path: str | Path
) -> None:
    """Read, validate and stage every row; malformed files raise ``ImportRefused``."""
    reader = csv.reader(_decoded(handle, path), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise ImportRefused(f"{path} is empty: expected a header row with an 'email' column")
        lay = _layout(header)
        batch: list[tuple[Any, ...]] = []
        previous = reader.line_num
        for row in reader:
            # A quoted field may span lines: report where the record starts.
            line, previous = previous + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != lay.width:
                raise ImportRefused(
                    f"{path} line {line}: expected {lay.width} fields like the header, "
                    f"found {len(row)}; nothing was imported"
                )
            report.rows += 1
            row = [restore(cell) for cell in row]  # undo an export's formula quoting
            try:
                address, name, attrs = _parse_row(row, lay)
            except StoreError as exc:
                report.invalid += 1
                if len(report.invalid_rows) < MAX_LISTED_INVALID:
                    report.invalid_rows.append((line, str(exc)))
                continue
            batch.append((line, address, hash_normalised(address), name, attrs, new_token_key()))
            if len(batch) >= STAGE_BATCH:
                _flush(conn, batch)
                batch = []
        if batch:
            _flush(conn, batch)
    except csv.Error as exc:
        raise ImportRefused(
            f"{path} line {reader.line_num}: malformed CSV ({exc}); nothing was imported"
        ) from None


def _flush(conn: Connection, batch: list[tuple[Any, ...]]) -> None:
    if conn.dialect.name == "postgresql":
        # COPY is several times faster than executemany for bulk staging.
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY brief_import_stage ({', '.join(_STAGE_COLUMNS)}) FROM STDIN") as cp:
            for record in batch:
                cp.write_row(record)
        cursor.close()
    else:
        conn.exec_driver_sql(
            f"INSERT INTO brief_import_stage ({', '.join(_STAGE_COLUMNS)}) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            batch,
        )


def import_csv(
    engine: Engine,
    path: str | Path,
    list_name: str | None = None,
    confirmed: bool = False,
    source: str | None = None,
) -> ImportReport:
    """Import a CSV (header with an ``email`` column; optional ``name`` and attributes).

    One transaction: a malformed file changes nothing. Never resurrects an address that
    is suppressed, erased or unsubscribed from this list. ``confirmed`` requires ``source``
    (where the consent was collected).
    """
    if confirmed and not (source or "").strip():
        raise StoreError("a confirmed import needs --source saying where the consent came from")
    src = clean_source(source, f"import:{Path(path).name}")
    report = ImportReport()
    now = utcnow()
    with _open_csv(path) as handle, transaction(engine) as conn:
        list_id, list_name = list_for_write(conn, list_name)
        if conn.dialect.name == "sqlite":
            # Index inserts into a large store thrash SQLite's default 2 MB page cache.
            conn.exec_driver_sql(f"PRAGMA cache_size = -{IMPORT_CACHE_KB}")
        stage.create(conn)
        _stage_rows(conn, handle, report, path)
        conn.exec_driver_sql(_STAGE_INDEX)
        _apply(conn, report, list_id, list_name, confirmed, src, now)
        stage.drop(conn)
    return report


def _apply(
    conn: Connection,
    report: ImportReport,
    list_id: int,
    list_name: str,
    confirmed: bool,
    source: str,
    now: Any,
) -> None:
    st, s, m = stage, subscribers, memberships
    dup = stage.alias("dup")
    report.duplicates += conn.execute(
        st.delete().where(
            sa.exists().where(dup.c.email_hash == st.c.email_hash, dup.c.row_no < st.c.row_no)
        )
    ).rowcount
    report.suppressed += conn.execute(
        st.delete().where(sa.exists().where(suppressions.c.address_hash == st.c.email_hash))
    ).rowcount
    member_of_list = (
        sa.select(m.c.id)
        .select_from(m.join(s, s.c.id == m.c.subscriber_id))
        .where(s.c.email_hash == st.c.email_hash, m.c.list_id == list_id)
    )
    # Someone who left this list stays out: only their own new confirmation brings them back.
    report.suppressed += conn.execute(
        st.delete().where(member_of_list.where(m.c.status == "unsubscribed").exists())
    ).rowcount
    _update_existing(conn, report, list_id)
    conn.execute(st.delete().where(member_of_list.exists()))

    # Existing people new to this list give a new consent: bump their sequence.
    conn.execute(
        s.update()
        .where(s.c.email_hash.in_(sa.select(st.c.email_hash)))
        .values(consent_seq=s.c.consent_seq + 1)
    )
    attrs = sa.cast(st.c.attrs, JSONB) if conn.dialect.name == "postgresql" else st.c.attrs
    conn.execute(
        s.insert().from_select(
            ["email", "email_hash", "name", "attributes", "token_key", "consent_seq", "created_at"],
            sa.select(
                st.c.email,
                st.c.email_hash,
                st.c.name,
                attrs,
                st.c.token_key,
                sa.literal(1),
                sa.literal(now, UTC_TIME),
            )
            .where(~sa.exists().where(s.c.email_hash == st.c.email_hash))
            .order_by(st.c.row_no),
        )
    )
    status = "confirmed" if confirmed else "pending"
    joined = st.join(s, s.c.email_hash == st.c.email_hash)
    # Counted, not taken from rowcount: psycopg reports -1 for INSERT ... SELECT here.
    report.imported += conn.execute(sa.select(sa.func.count()).select_from(st)).scalar_one()
    conn.execute(
        m.insert().from_select(
            [
                "subscriber_id",
                "list_id",
                "status",
                "consent_source",
                "consent_at",
                "confirmed_at",
                "consent_seq",
            ],
            sa.select(
                s.c.id,
                sa.literal(list_id),
                sa.literal(status),
                sa.literal(source),
                sa.literal(now, UTC_TIME),
                sa.literal(now if confirmed else None, UTC_TIME),
                s.c.consent_seq,
            ).select_from(joined),
        )
    )
    conn.execute(
        events.insert().from_select(
            ["subscriber_id", "list_id", "kind", "source", "detail", "at"],
            sa.select(
                s.c.id,
                sa.literal(list_id),
                sa.literal("imported"),
                sa.literal(source),
                sa.literal(f"list {list_name}, {status}"),
                sa.literal(now, UTC_TIME),
            ).select_from(joined),
        )
    )


def _update_existing(conn: Connection, report: ImportReport, list_id: int) -> None:
    """Rows for people already on this list: refresh name and attributes.

    A pending membership is never confirmed by an import: pending means the person's
    own click is awaited (it may be a re-subscription after leaving).
    """
    st, s, m = stage, subscribers, memberships
    query = (
        sa.select(
            st.c.row_no,
            st.c.name.label("new_name"),
            st.c.attrs,
            s.c.id,
            s.c.name,
            s.c.attributes,
            m.c.id.label("mid"),
            m.c.status,
        )
        .select_from(
            st.join(s, s.c.email_hash == st.c.email_hash).join(
                m, sa.and_(m.c.subscriber_id == s.c.id, m.c.list_id == list_id)
            )
        )
        .order_by(st.c.row_no)
        .limit(UPDATE_BATCH)
    )
    update_person = (
        s.update()
        .where(s.c.id == sa.bindparam("b_id"))
        .values(name=sa.bindparam("b_name"), attributes=sa.bindparam("b_attrs", type_=JSONType))
    )
    after = 0
    while True:
        rows = conn.execute(query.where(st.c.row_no > after)).all()
        people = []
        for r in rows:
            current = dict(r.attributes or {})
            merged = {**current, **json.loads(r.attrs)}
            name = r.new_name if r.new_name is not None else r.name
            if name != r.name or merged != current:
                people.append({"b_id": r.id, "b_name": name, "b_attrs": merged})
            if name != r.name or merged != current:
                report.updated += 1
            else:
                report.duplicates += 1
        if people:
            conn.execute(update_person, people)
        if len(rows) < UPDATE_BATCH:
            return
        after = rows[-1].row_no


def export_csv(engine: Engine, out: str | Path | IO[str], list_name: str | None = None) -> int:
    """Write memberships (one list or all) as CSV to a path or text stream; returns rows.

    The file re-imports cleanly: metadata columns are ignored, ``attributes`` is JSON.
    """
    if isinstance(out, str | Path):
        # Addresses and names: readable by the owner only (an existing file too).
        with open_private(out, newline="") as handle:
            return _write_export(engine, handle, list_name)
    return _write_export(engine, out, list_name)


def neutralise(value: str) -> str:
    """A CSV cell a spreadsheet shows as text: a leading single quote before a formula.

    A value that already starts with quotes before a trigger (``'=x``) gets one more, so
    ``restore`` can take exactly one off and every value survives export → import.
    """
    if value.lstrip("'").startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def restore(cell: str) -> str:
    """The value ``neutralise`` was given (the inverse; an ordinary cell is unchanged)."""
    if cell.startswith("'") and cell.lstrip("'").startswith(FORMULA_TRIGGERS):
        return cell[1:]
    return cell


def _iso(value: Any) -> str:
    return value.isoformat() if value is not None else ""


def _write_export(engine: Engine, handle: IO[str], list_name: str | None) -> int:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(EXPORT_HEADER)
    n = 0
    for r in list_subscribers(engine, list_name=list_name):
        cells = (
            r.email,
            r.name or "",
            r.list_name,
            r.status,
            r.consent_source,
            _iso(r.consent_at),
            _iso(r.confirmed_at),
            _iso(r.unsubscribed_at),
            json.dumps(r.attributes, sort_keys=True, ensure_ascii=False) if r.attributes else "",
        )
        writer.writerow([neutralise(c) for c in cells])
        n += 1
    return n
