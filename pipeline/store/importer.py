"""CSV import (streamed, one transaction, set-based) and CSV export.

An import reads Brief's own export losslessly (list, status, consent source and times
per membership; suppressions from a second file) and other tools' exports by their
header row (``import_shapes``). A status in the file is obeyed in the safe direction
only: it can record that someone left, bounced or complained, never bring back someone
who left, and never confirm more than the operator's ``--confirmed`` vouches for.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import itertools
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine

from pipeline.errors import ImportRefused, StoreError
from pipeline.private import open_private
from pipeline.store.db import as_utc, reading, transaction, utcnow
from pipeline.store.import_shapes import (
    Field,
    Layout,
    RowStatus,
    layout,
    parse_map,
    parse_time,
    plausible,
    read_status,
    tags_text,
    unknown_mapped,
)
from pipeline.store.lists import check_list_name, list_for_write, list_id_conn
from pipeline.store.normalise import (
    clean_attributes,
    clean_source,
    hash_normalised,
    normalise_email,
    normalise_name,
)
from pipeline.store.schema import (
    UTC_TIME,
    JSONType,
    events,
    lists,
    memberships,
    subscribers,
    suppressions,
)
from pipeline.store.subscribers import list_subscribers
from pipeline.store.suppress import REASONS
from pipeline.store.tokens import new_token_key

EXPORT_HEADER = (
    "email",
    "name",
    "list",
    "status",
    "consent_source",
    "consent_at",
    "confirmed_at",
    "unsubscribed_at",
    "attributes",
)
SUPPRESSIONS_HEADER = ("address_hash", "reason", "source", "created_at")
MAX_LISTED_INVALID = 1000
# A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV
# Injection"; ASVS 1.2.10 adds NUL): exports put a single quote in front of it.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\x00")
STAGE_BATCH = 10_000
UPDATE_BATCH = 5_000
IMPORT_CACHE_KB = 65_536  # SQLite page cache while importing: 64 MiB
DELIMITERS = ",;\t|"
SNIFF_LINES = 50
SNIFF_CHARS = 65_536  # the Sniffer's regular expressions get slow on huge samples
MAX_NEW_LISTS = 100  # lists one file may create: a typo'd column must not make thousands
_HASH = re.compile(r"[0-9a-f]{64}")
_SUPPRESS_FOR = {
    RowStatus.BOUNCED: "hard_bounce",
    RowStatus.COMPLAINED: "complaint",
    RowStatus.LEFT_ALL: "unsubscribed",
}
_EVENT_FOR = {"hard_bounce": "bounced", "complaint": "complained", "unsubscribed": "unsubscribed"}
# Substack replaces the address of a reader who asked to be deleted (TryGhost/migrate,
# packages/mg-substack-members-csv/lib/process.js skips these too).
_DELETION_REQUEST = "@deletion-request.substack.com"


@dataclass
class ImportReport:
    """What an import did; every row read lands in exactly one of the counts from
    ``imported`` to ``suppressed``. ``invalid_rows`` lists (line, reason) for the first
    1,000 invalid rows."""

    rows: int = 0
    imported: int = 0  # new memberships, pending or confirmed
    unsubscribed: int = 0  # recorded as having left (new, or a membership ended now)
    bounced: int = 0  # recorded and suppressed as a hard bounce or complaint
    updated: int = 0  # already on the list; name or attributes refreshed
    already_on_list: int = 0  # already on the list, nothing new
    duplicates: int = 0  # the same address and list earlier in the file
    invalid: int = 0
    suppressed: int = 0  # refused: suppressed, erased, or left this list before
    dates_replaced: int = 0  # rows whose unreadable or implausible times became "now"
    suppressions_added: int = 0  # from the suppressions file
    mapping: str = ""
    delimiter: str = ","
    lists_created: list[str] = field(default_factory=list)
    invalid_rows: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data (for ``--json``)."""
        return {
            "rows": self.rows,
            "imported": self.imported,
            "unsubscribed": self.unsubscribed,
            "bounced": self.bounced,
            "updated": self.updated,
            "already_on_list": self.already_on_list,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "suppressed": self.suppressed,
            "dates_replaced": self.dates_replaced,
            "suppressions_added": self.suppressions_added,
            "mapping": self.mapping,
            "delimiter": self.delimiter,
            "lists_created": list(self.lists_created),
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
    sa.Column("list_id", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # the membership status to record
    sa.Column("suppress", sa.String(32)),  # a suppression reason the row brings
    sa.Column("consent_source", sa.String(200), nullable=False),
    sa.Column("consent_at", UTC_TIME, nullable=False),
    sa.Column("confirmed_at", UTC_TIME),
    sa.Column("unsubscribed_at", UTC_TIME),
    prefixes=["TEMPORARY"],
)
# The suppressions file, staged the same way.
suppress_stage = sa.Table(
    "brief_import_suppress_stage",
    _stage_meta,
    sa.Column("address_hash", sa.String(64), primary_key=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("created_at", UTC_TIME, nullable=False),
    prefixes=["TEMPORARY"],
)
# Built after loading (faster than maintaining it row by row).
_STAGE_INDEX = (
    "CREATE INDEX ix_brief_import_stage_hash ON brief_import_stage (email_hash, list_id, row_no)"
)
_STAGE_COLUMNS = tuple(c.name for c in stage.columns)
_TIME_COLUMNS = frozenset({"consent_at", "confirmed_at", "unsubscribed_at"})


@dataclass(frozen=True)
class _Plan:
    """How each row becomes a staged membership: the import's options; ``lay`` (the
    file's layout) is filled in once the header row is read."""

    confirmed: bool
    source: str
    now: datetime
    list_name: str | None  # given explicitly: every row goes there
    default_list: str | None
    mapping: Mapping[str, str] | None
    lay: Layout | None = None


def _cells(row: list[str], lay: Layout) -> dict[Field, str]:
    """The first value of each single-valued field (attributes are collected apart)."""
    return {f: row[i] for f, i in lay.singles}


def _attributes(row: list[str], lay: Layout) -> str:
    if not lay.has_attributes:
        return "{}"
    raw: dict[str, Any] = {}
    for i, f, header in lay.fields:
        if f is Field.ATTRIBUTES and row[i].strip():
            try:
                loaded = json.loads(row[i])
            except ValueError:
                raise StoreError(f"the {header} column is not valid JSON") from None
            if not isinstance(loaded, dict):
                raise StoreError(f"the {header} column must be a JSON object")
            raw.update(
                {
                    k: v if isinstance(v, str) or v is None else json.dumps(v, ensure_ascii=False)
                    for k, v in loaded.items()
                }
            )
    for i, f, header in lay.fields:
        if f is Field.ATTRIBUTE:
            raw[header] = row[i]
        elif f is Field.TAGS and row[i].strip():
            raw["tags"] = tags_text(row[i])
    return json.dumps(clean_attributes(raw), sort_keys=True, ensure_ascii=False)


def _name(cells: Mapping[Field, str]) -> str | None:
    if Field.NAME in cells and cells[Field.NAME].strip():
        return normalise_name(cells[Field.NAME])
    if Field.FIRST_NAME not in cells and Field.LAST_NAME not in cells:
        return None
    parts = [cells.get(Field.FIRST_NAME, "").strip(), cells.get(Field.LAST_NAME, "").strip()]
    return normalise_name(" ".join(p for p in parts if p))


class _Lists:
    """Resolve a row's list name to an id; lists named in the file are created once."""

    def __init__(self, conn: Connection, plan: _Plan, report: ImportReport):
        self.conn, self.plan, self.report = conn, plan, report
        self.ids: dict[str | None, int] = {}

    def id_for(self, named: str) -> int:
        if self.plan.list_name is not None:
            named = ""  # the operator's --list wins over the file's column
        key = named.strip() or None
        if key in self.ids:
            return self.ids[key]
        if key is None:
            try:
                self.ids[None], _ = list_for_write(
                    self.conn, self.plan.list_name or self.plan.default_list
                )
            except StoreError as exc:
                raise ImportRefused(f"{exc}; nothing was imported") from None
            return self.ids[None]
        check_list_name(key)
        found = list_id_conn(self.conn, key, missing_ok=True)
        if found is None:
            if len(self.report.lists_created) >= MAX_NEW_LISTS:
                raise ImportRefused(
                    f"the file names more than {MAX_NEW_LISTS} lists that do not exist; "
                    "create them first or check the list column; nothing was imported"
                )
            found = self.conn.execute(
                lists.insert()
                .values(name=key, description="", created_at=self.plan.now)
                .returning(lists.c.id)
            ).scalar_one()
            self.report.lists_created.append(key)
        self.ids[key] = found
        return found


def _time(raw: str | None, now: datetime, report_flag: list[bool]) -> datetime | None:
    """A plausible time from the file; None when absent; a bad one flags the row."""
    if raw is None or not raw.strip():
        return None
    value = parse_time(raw)
    if plausible(value, now):
        return value
    report_flag.append(True)
    return None


_STATUS_FIELDS = frozenset(
    {Field.STATUS, Field.EMAILS_OFF, Field.EMAILS_ON, Field.UNSUBSCRIBED_AT, Field.BOUNCED_AT}
)
_TIME_FIELDS = (Field.CONSENT_AT, Field.CONFIRMED_AT, Field.UNSUBSCRIBED_AT)


def _staged(row: list[str], plan: _Plan, lists_: _Lists, report: ImportReport) -> tuple[Any, ...]:
    """One row as a stage record (without the line number); ``StoreError`` refuses it."""
    lay = plan.lay
    assert lay is not None  # set by _stage_rows before any row
    cells = _cells(row, lay)
    address = normalise_email(cells[Field.EMAIL])
    if address.endswith(_DELETION_REQUEST):
        raise StoreError("a Substack deletion request (the reader asked to be deleted)")
    # Most files have none of the columns below: skip their work (a plain sheet of
    # 1,000,000 addresses pays for each call here).
    said = read_status(cells) if _STATUS_FIELDS.intersection(cells) else RowStatus.SUBSCRIBED
    if said in (RowStatus.UNSUBSCRIBED, RowStatus.LEFT_ALL):
        status = "unsubscribed"
    elif said is RowStatus.PENDING or not plan.confirmed:
        status = "pending"  # only the operator's --confirmed vouches for consent
    else:
        status = "confirmed"
    now = plan.now
    consent_at = confirmed_at = unsubscribed_at = None
    if any(f in cells for f in _TIME_FIELDS):
        bad: list[bool] = []
        consent_at = _time(cells.get(Field.CONSENT_AT), now, bad)
        confirmed_at = _time(cells.get(Field.CONFIRMED_AT), now, bad)
        unsubscribed_at = _time(cells.get(Field.UNSUBSCRIBED_AT), now, bad)
        if bad:
            report.dates_replaced += 1
    if status == "confirmed":
        confirmed_at = confirmed_at or now
    elif status == "pending":
        confirmed_at = None
    unsubscribed_at = (unsubscribed_at or now) if status == "unsubscribed" else None
    given = cells.get(Field.CONSENT_SOURCE)
    return (
        address,
        hash_normalised(address),
        _name(cells),
        _attributes(row, lay),
        new_token_key(),
        lists_.id_for(cells.get(Field.LIST, "")),
        status,
        _SUPPRESS_FOR.get(said),
        clean_source(given, plan.source) if given else plan.source,
        consent_at or now,
        confirmed_at,
        unsubscribed_at,
    )


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


def _shown(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else repr(delimiter)


def _reader(
    lines: Iterator[str], path: str | Path, mapping: Mapping[str, str] | None
) -> tuple[Any, Layout, str]:
    """A csv reader over the file with the delimiter that finds an email column, the
    file's layout, and the delimiter. The delimiter is sniffed (csv.Sniffer over the
    first lines, among , ; tab |); the others are tried when its header has no email
    column, so a sniffing mistake costs nothing."""
    head = list(itertools.islice(lines, SNIFF_LINES))
    if not head:
        raise ImportRefused(f"{path} is empty: expected a header row with an 'email' column")
    try:
        sample = "".join(head)[:SNIFF_CHARS]
        sniffed = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        sniffed = ","
    first_header: list[str] = []
    for delimiter in [sniffed] + [d for d in DELIMITERS if d != sniffed]:
        try:
            header = next(csv.reader(iter(head), delimiter=delimiter, strict=True), [])
        except csv.Error:
            continue
        if delimiter == sniffed:
            first_header = header
        lay = layout(header, mapping) if header else None
        if lay is not None:
            reader = csv.reader(itertools.chain(head, lines), delimiter=delimiter, strict=True)
            next(reader)
            return reader, lay, delimiter
    missing = unknown_mapped(first_header, mapping)
    found = ", ".join(first_header)[:200]
    if missing:
        raise ImportRefused(
            f"--map names column {missing[0]!r}, which the header row does not have "
            f"(read with delimiter {_shown(sniffed)}; found: {found})"
        )
    raise ImportRefused(
        f"no email column in the header row (read with delimiter {_shown(sniffed)}; "
        f"found: {found}); name one column 'email' or use --map COLUMN=email"
    )


def _stage_rows(
    conn: Connection,
    handle: IO[bytes],
    report: ImportReport,
    path: str | Path,
    options: _Plan,
) -> None:
    """Read, validate and stage every row; malformed files raise ``ImportRefused``."""
    lines = _decoded(handle, path)
    reader: Any = None
    try:
        reader, lay, delimiter = _reader(lines, path, options.mapping)
        report.mapping, report.delimiter = lay.mapping, delimiter
        plan = dataclasses.replace(options, lay=lay)
        lists_ = _Lists(conn, plan, report)
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
                record = _staged(row, plan, lists_, report)
            except ImportRefused:
                raise  # the file as a whole, not this row
            except StoreError as exc:
                report.invalid += 1
                if len(report.invalid_rows) < MAX_LISTED_INVALID:
                    report.invalid_rows.append((line, str(exc)))
                continue
            batch.append((line, *record))
            if len(batch) >= STAGE_BATCH:
                _flush(conn, batch)
                batch = []
        if batch:
            _flush(conn, batch)
    except csv.Error as exc:
        where = reader.line_num if reader is not None else 1
        raise ImportRefused(
            f"{path} line {where}: malformed CSV ({exc}); nothing was imported"
        ) from None


def _sqlite_time(value: datetime | None) -> str | None:
    # The text SQLAlchemy's DateTime keeps in SQLite (naive UTC), so the rows copied from
    # the stage read back like any other.
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _flush(conn: Connection, batch: list[tuple[Any, ...]]) -> None:
    if conn.dialect.name == "postgresql":
        # COPY is several times faster than executemany for bulk staging.
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY brief_import_stage ({', '.join(_STAGE_COLUMNS)}) FROM STDIN") as cp:
            for record in batch:
                cp.write_row(record)
        cursor.close()
    else:
        times = [i for i, c in enumerate(_STAGE_COLUMNS) if c in _TIME_COLUMNS]
        shown: dict[datetime | None, str | None] = {}  # most rows share the import time
        rows = []
        for record in batch:
            row = list(record)
            for i in times:
                value = row[i]
                if value not in shown:
                    shown[value] = _sqlite_time(value)
                row[i] = shown[value]
            rows.append(tuple(row))
        conn.exec_driver_sql(
            f"INSERT INTO brief_import_stage ({', '.join(_STAGE_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _STAGE_COLUMNS)})",
            rows,
        )


def suppressions_beside(path: str | Path) -> Path:
    """Where an export to ``path`` puts its suppressions: ``all.csv`` → ``all.suppressions.csv``."""
    p = Path(path)
    return p.with_name(f"{p.stem if p.suffix else p.name}.suppressions.csv")


def import_csv(
    engine: Engine,
    path: str | Path,
    list_name: str | None = None,
    confirmed: bool = False,
    source: str | None = None,
    *,
    default_list: str | None = None,
    mapping: Mapping[str, str] | None = None,
    suppressions: str | Path | None = None,
) -> ImportReport:
    """Import a CSV: Brief's export, another tool's, or any sheet with an email column.

    One transaction: a malformed file changes nothing. Rows go to ``list_name`` when
    given, else to the file's list column, else to ``default_list`` ("main"). A row's
    status is obeyed in the safe direction only (see the module docstring); consent
    times and sources from the file are kept when plausible. Never resurrects an address
    that is suppressed, erased or unsubscribed from that list. ``confirmed`` requires
    ``source`` (where the consent was collected). ``mapping`` names columns (header →
    field, ``--map``); ``suppressions`` is an export's suppressions file, added after
    the rows (an address it says was erased is never imported).
    """
    if confirmed and not (source or "").strip():
        raise StoreError("a confirmed import needs --source saying where the consent came from")
    parse_map(mapping)  # a bad --map is refused before anything is read
    src = clean_source(source, f"import:{Path(path).name}")
    report = ImportReport()
    now = utcnow()
    options = _Plan(confirmed, src, now, list_name, default_list, mapping)
    with _open_csv(path) as handle, transaction(engine) as conn:
        if list_name is not None:
            list_for_write(conn, list_name)  # an unknown --list is refused up front
        if conn.dialect.name == "sqlite":
            # Index inserts into a large store thrash SQLite's default 2 MB page cache.
            conn.exec_driver_sql(f"PRAGMA cache_size = -{IMPORT_CACHE_KB}")
        stage.create(conn)
        suppress_stage.create(conn)
        if suppressions is not None:
            _stage_suppressions(conn, suppressions)
        _stage_rows(conn, handle, report, path, options)
        conn.exec_driver_sql(_STAGE_INDEX)
        if conn.dialect.name == "postgresql":
            # A temporary table has no statistics until analysed: without them the
            # planner guesses, and guessed badly for the joins below.
            conn.exec_driver_sql("ANALYZE brief_import_stage")
        _apply(conn, report, src, now)
        stage.drop(conn)
        suppress_stage.drop(conn)
    return report


def _stage_suppressions(conn: Connection, path: str | Path) -> None:
    """Load an export's suppressions file (header ``address_hash,reason,source,created_at``);
    any bad line refuses the whole import, naming ``path`` and the line."""
    rows: dict[str, dict[str, Any]] = {}
    with _open_csv(path) as handle:
        reader = csv.reader(_decoded(handle, path), strict=True)
        try:
            header = [h.strip().lower() for h in next(reader, [])]
            if tuple(header) != SUPPRESSIONS_HEADER:
                raise ImportRefused(
                    f"{path} line 1: expected the header {','.join(SUPPRESSIONS_HEADER)}"
                )
            for row in reader:
                if not row:
                    continue
                line = reader.line_num
                if len(row) != len(SUPPRESSIONS_HEADER):
                    raise ImportRefused(f"{path} line {line}: expected 4 fields, found {len(row)}")
                hashed, reason, source, created = (restore(c).strip() for c in row)
                when = parse_time(created)
                if not _HASH.fullmatch(hashed):
                    raise ImportRefused(f"{path} line {line}: not an address hash: {hashed[:80]!r}")
                if reason not in REASONS:
                    raise ImportRefused(
                        f"{path} line {line}: unknown reason {reason[:40]!r}; one of "
                        f"{', '.join(REASONS)}"
                    )
                if when is None:
                    raise ImportRefused(f"{path} line {line}: unreadable time {created[:40]!r}")
                try:
                    source = clean_source(source, "import")
                except StoreError as exc:
                    raise ImportRefused(f"{path} line {line}: {exc}") from None
                rows.setdefault(
                    hashed,
                    {
                        "address_hash": hashed,
                        "reason": reason,
                        "source": source,
                        "created_at": when,
                    },
                )
        except csv.Error as exc:
            raise ImportRefused(f"{path} line {reader.line_num}: malformed CSV ({exc})") from None
    if rows:
        conn.execute(suppress_stage.insert(), list(rows.values()))


def _dedup(conn: Connection) -> int:
    """Drop every row whose address and list came earlier in the file; returns how many.

    Keeps MIN(row_no) per (address, list): a GROUP BY and an equality join, linear in
    the rows. (Comparing each copy with every earlier one, ``dup.row_no < st.row_no``,
    grew with the square of the copies on PostgreSQL.)"""
    st = stage
    first = sa.select(
        st.c.email_hash, st.c.list_id, sa.func.min(st.c.row_no).label("keep")
    ).group_by(st.c.email_hash, st.c.list_id)
    if conn.dialect.name == "postgresql":
        k = first.subquery("k")
        statement = st.delete().where(
            st.c.email_hash == k.c.email_hash,
            st.c.list_id == k.c.list_id,
            st.c.row_no > k.c.keep,
        )
    else:
        # SQLite has no DELETE ... USING; it builds the NOT IN list once, as an index.
        keep = first.with_only_columns(sa.func.min(st.c.row_no))
        statement = st.delete().where(st.c.row_no.not_in(keep))
    return conn.execute(statement).rowcount


def _apply(conn: Connection, report: ImportReport, source: str, now: datetime) -> None:
    st, s, m, ss = stage, subscribers, memberships, suppress_stage
    report.duplicates += _dedup(conn)
    # Suppressed here, or erased according to the file's own suppressions: never imported.
    report.suppressed += conn.execute(
        st.delete().where(
            sa.or_(
                sa.exists().where(suppressions.c.address_hash == st.c.email_hash),
                sa.exists().where(ss.c.address_hash == st.c.email_hash, ss.c.reason == "erased"),
            )
        )
    ).rowcount
    member = (
        sa.select(m.c.id)
        .select_from(m.join(s, s.c.id == m.c.subscriber_id))
        .where(s.c.email_hash == st.c.email_hash, m.c.list_id == st.c.list_id)
    )
    left = member.where(m.c.status == "unsubscribed").exists()
    # Someone who left this list stays out: only their own new confirmation brings them back.
    report.already_on_list += conn.execute(
        st.delete().where(left, st.c.status == "unsubscribed", st.c.suppress.is_(None))
    ).rowcount
    report.suppressed += conn.execute(st.delete().where(left)).rowcount
    _update_existing(conn, report, source, now)
    conn.execute(st.delete().where(member.exists()))

    # Existing people new to a list give a new consent: bump their sequence.
    conn.execute(
        s.update()
        .where(s.c.email_hash.in_(sa.select(st.c.email_hash)))
        .values(consent_seq=s.c.consent_seq + 1)
    )
    # One new person per address: the first row's name and attributes; known since
    # their earliest consent. Only a file that puts one address on several lists needs
    # the grouping; most files skip it.
    rows, addresses = conn.execute(
        sa.select(sa.func.count(), sa.func.count(sa.distinct(st.c.email_hash)))
    ).one()
    attrs = sa.cast(st.c.attrs, JSONB) if conn.dialect.name == "postgresql" else st.c.attrs
    people = sa.select(
        st.c.email, st.c.email_hash, st.c.name, attrs, st.c.token_key, sa.literal(1)
    ).where(~sa.exists().where(s.c.email_hash == st.c.email_hash))
    if rows == addresses:
        people = people.add_columns(st.c.consent_at)
    else:
        first = (
            sa.select(
                st.c.email_hash,
                sa.func.min(st.c.row_no).label("first"),
                sa.func.min(st.c.consent_at).label("since"),
            )
            .group_by(st.c.email_hash)
            .subquery("first")
        )
        people = people.add_columns(first.c.since).select_from(
            st.join(first, first.c.first == st.c.row_no)
        )
    conn.execute(
        s.insert().from_select(
            ["email", "email_hash", "name", "attributes", "token_key", "consent_seq", "created_at"],
            people.order_by(st.c.row_no),
        )
    )
    # Counted, not taken from rowcount: psycopg reports -1 for INSERT ... SELECT here.
    left_rows = suppress_rows = 0
    for status, suppress, n in conn.execute(
        sa.select(st.c.status, st.c.suppress, sa.func.count()).group_by(st.c.status, st.c.suppress)
    ):
        if suppress in ("hard_bounce", "complaint"):
            report.bounced += n
        elif status == "unsubscribed":
            report.unsubscribed += n
        else:
            report.imported += n
        left_rows += n if status == "unsubscribed" else 0
        suppress_rows += n if suppress is not None else 0
    joined = st.join(s, s.c.email_hash == st.c.email_hash)
    conn.execute(
        m.insert().from_select(
            [
                "subscriber_id",
                "list_id",
                "status",
                "consent_source",
                "consent_at",
                "confirmed_at",
                "unsubscribed_at",
                "consent_seq",
            ],
            sa.select(
                s.c.id,
                st.c.list_id,
                st.c.status,
                st.c.consent_source,
                st.c.consent_at,
                st.c.confirmed_at,
                st.c.unsubscribed_at,
                s.c.consent_seq,
            )
            .select_from(joined)
            .order_by(st.c.row_no),
        )
    )
    with_list = joined.join(lists, lists.c.id == st.c.list_id)
    event_columns = ["subscriber_id", "list_id", "kind", "source", "detail", "at"]
    conn.execute(
        events.insert().from_select(
            event_columns,
            sa.select(
                s.c.id,
                st.c.list_id,
                sa.literal("imported"),
                sa.literal(source),
                sa.literal("list ") + lists.c.name + sa.literal(", ") + st.c.status,
                sa.literal(now, UTC_TIME),
            )
            .select_from(with_list)
            .order_by(st.c.row_no),
        )
    )
    if left_rows:
        _log_leaving(conn, with_list, event_columns, source)
    if suppress_rows:
        _suppress_rows(conn, joined, event_columns, source, now)
    _add_file_suppressions(conn, report)


def _log_leaving(conn: Connection, with_list: Any, event_columns: list[str], source: str) -> None:
    """Leaving is logged too: it is what keeps an operator from re-adding them later."""
    st, s = stage, subscribers
    conn.execute(
        events.insert().from_select(
            event_columns,
            sa.select(
                s.c.id,
                st.c.list_id,
                sa.literal("unsubscribed"),
                sa.literal(source),
                sa.literal("list ") + lists.c.name + sa.literal(" (imported)"),
                st.c.unsubscribed_at,
            )
            .select_from(with_list)
            .where(st.c.status == "unsubscribed")
            .order_by(st.c.row_no),
        )
    )


def _suppress_rows(
    conn: Connection, joined: Any, event_columns: list[str], source: str, now: datetime
) -> None:
    """The suppressions new rows bring (a bounce, a complaint, a blocklist), logged."""
    st, s = stage, subscribers
    for reason, kind in _EVENT_FOR.items():
        if reason == "unsubscribed":
            continue  # logged with the list by _log_leaving
        conn.execute(
            events.insert().from_select(
                event_columns,
                sa.select(
                    s.c.id,
                    sa.null(),
                    sa.literal(kind),
                    sa.literal(source),
                    sa.literal(f"suppressed: {reason} (imported)"),
                    sa.literal(now, UTC_TIME),
                )
                .select_from(joined)
                .where(st.c.suppress == reason)
                .order_by(st.c.row_no),
            )
        )
    conn.execute(
        suppressions.insert().from_select(
            ["address_hash", "reason", "source", "created_at"],
            sa.select(
                st.c.email_hash,
                sa.func.max(st.c.suppress),
                sa.literal(source),
                sa.literal(now, UTC_TIME),
            )
            .where(
                st.c.suppress.is_not(None),
                ~sa.exists().where(suppressions.c.address_hash == st.c.email_hash),
            )
            .group_by(st.c.email_hash),
        )
    )


def _add_file_suppressions(conn: Connection, report: ImportReport) -> None:
    """The suppressions file's entries the store does not have yet."""
    ss = suppress_stage
    new_from_file = ~sa.exists().where(suppressions.c.address_hash == ss.c.address_hash)
    report.suppressions_added += conn.execute(
        sa.select(sa.func.count()).select_from(ss).where(new_from_file)
    ).scalar_one()
    conn.execute(
        suppressions.insert().from_select(
            ["address_hash", "reason", "source", "created_at"],
            sa.select(ss.c.address_hash, ss.c.reason, ss.c.source, ss.c.created_at).where(
                new_from_file
            ),
        )
    )


def _update_existing(conn: Connection, report: ImportReport, source: str, now: datetime) -> None:
    """Rows for people already on their list (pending or confirmed there): refresh name
    and attributes; record a leave, bounce or complaint the row brings.

    A pending membership is never confirmed by an import: pending means the person's
    own click is awaited (it may be a re-subscription after leaving).
    """
    st, s, m = stage, subscribers, memberships
    query = (
        sa.select(
            st.c.row_no,
            st.c.name.label("new_name"),
            st.c.attrs,
            st.c.status.label("row_status"),
            st.c.suppress,
            st.c.unsubscribed_at.label("left_at"),
            st.c.email_hash,
            st.c.list_id,
            s.c.id,
            s.c.name,
            s.c.attributes,
            m.c.id.label("mid"),
            lists.c.name.label("list_name"),
        )
        .select_from(
            st.join(s, s.c.email_hash == st.c.email_hash)
            .join(m, sa.and_(m.c.subscriber_id == s.c.id, m.c.list_id == st.c.list_id))
            .join(lists, lists.c.id == st.c.list_id)
        )
        .order_by(st.c.row_no)
        .limit(UPDATE_BATCH)
    )
    update_person = (
        s.update()
        .where(s.c.id == sa.bindparam("b_id"))
        .values(name=sa.bindparam("b_name"), attributes=sa.bindparam("b_attrs", type_=JSONType))
    )
    end_membership = (
        m.update()
        .where(m.c.id == sa.bindparam("b_mid"))
        .values(status="unsubscribed", unsubscribed_at=sa.bindparam("b_at", type_=UTC_TIME))
    )
    after = 0
    while True:
        rows = conn.execute(query.where(st.c.row_no > after)).all()
        people, ended, logged = [], [], []
        for r in rows:
            current = dict(r.attributes or {})
            merged = {**current, **json.loads(r.attrs)}
            name = r.new_name if r.new_name is not None else r.name
            changed = name != r.name or merged != current
            if changed:
                people.append({"b_id": r.id, "b_name": name, "b_attrs": merged})
            if r.row_status == "unsubscribed":
                left_at = as_utc(r.left_at) or now
                ended.append({"b_mid": r.mid, "b_at": left_at})
                logged.append(
                    _event(r.id, r.list_id, "unsubscribed", source, f"list {r.list_name}", left_at)
                )
            if r.suppress is not None and _add_suppression(conn, r.email_hash, r.suppress, source):
                detail = f"suppressed: {r.suppress} (imported)"
                logged.append(_event(r.id, None, _EVENT_FOR[r.suppress], source, detail, now))
            if r.suppress in ("hard_bounce", "complaint"):
                report.bounced += 1
            elif r.row_status == "unsubscribed":
                report.unsubscribed += 1
            elif changed:
                report.updated += 1
            else:
                report.already_on_list += 1
        if people:
            conn.execute(update_person, people)
        if ended:
            conn.execute(end_membership, ended)
        if logged:
            conn.execute(events.insert(), logged)
        if len(rows) < UPDATE_BATCH:
            return
        after = rows[-1].row_no


def _event(
    subscriber_id: int, list_id: int | None, kind: str, source: str, detail: str, at: datetime
) -> dict[str, Any]:
    return {
        "subscriber_id": subscriber_id,
        "list_id": list_id,
        "kind": kind,
        "source": source,
        "detail": detail,
        "at": at,
    }


def _add_suppression(conn: Connection, hashed: str, reason: str, source: str) -> bool:
    exists = conn.execute(
        sa.select(suppressions.c.address_hash).where(suppressions.c.address_hash == hashed)
    ).first()
    if exists is not None:
        return False
    conn.execute(
        suppressions.insert().values(
            address_hash=hashed, reason=reason, source=source, created_at=utcnow()
        )
    )
    return True


def export_csv(
    engine: Engine,
    out: str | Path | IO[str],
    list_name: str | None = None,
    *,
    suppressions_out: str | Path | IO[str] | None = None,
) -> int:
    """Write memberships (one list or all) as CSV to a path or text stream; returns rows.

    One row per membership: list, status, consent source and times, attributes (JSON).
    Importing it into an empty store gives the same memberships back. The suppressions
    (hashes only: nobody's address) go to ``suppressions_out`` when given.
    """
    if suppressions_out is not None:
        export_suppressions(engine, suppressions_out)
    if isinstance(out, str | Path):
        # Addresses and names: readable by the owner only (an existing file too).
        with open_private(out, newline="") as handle:
            return _write_export(engine, handle, list_name)
    return _write_export(engine, out, list_name)


def export_suppressions(engine: Engine, out: str | Path | IO[str]) -> int:
    """Write every suppression (``address_hash,reason,source,created_at``); returns rows.

    The second file of an export: an import adds them, so people who left everything,
    bounced, complained or were erased stay unreachable in the new store."""
    if isinstance(out, str | Path):
        with open_private(out, newline="") as handle:
            return _write_suppressions(engine, handle)
    return _write_suppressions(engine, out)


def _write_suppressions(engine: Engine, handle: IO[str]) -> int:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(SUPPRESSIONS_HEADER)
    with reading(engine) as conn:
        rows = conn.execute(sa.select(suppressions).order_by(suppressions.c.address_hash)).all()
    for r in rows:
        writer.writerow(
            [r.address_hash, r.reason, neutralise(r.source), _iso(as_utc(r.created_at))]
        )
    return len(rows)


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
