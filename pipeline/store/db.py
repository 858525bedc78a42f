"""Engine creation and schema migrations for the subscriber store."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from pipeline.errors import StoreError
from pipeline.private import create_private_file, private_dirs

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 10_000


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the only kind the store writes)."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Make a datetime read back from the database aware; SQLite returns naive UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _describe(url: str) -> str:
    """The URL without a password, for error messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only used to build a message
        return "<unparseable url>"


READ_ONLY = "brief_read_only"


def make_engine(url: str) -> Engine:
    """Create an engine with Brief's connection settings, without migrating."""
    try:
        parsed = sa.make_url(url)
    except Exception as exc:  # ArgumentError and friends
        raise StoreError(f"database url is not valid: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if (
            parsed.database
            and parsed.database != ":memory:"
            and not parsed.database.startswith("file:")
        ):
            # Personal data: the folder 0700 and the file 0600 (its WAL and SHM follow it).
            path = Path(parsed.database)
            private_dirs(path.parent)
            create_private_file(path)
        engine = sa.create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
    elif backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = sa.create_engine(parsed, pool_pre_ping=True)
    else:
        raise StoreError(
            f"database url {_describe(url)!r}: only sqlite:/// and postgresql:// are supported"
        )
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event issue BEGIN itself: pysqlite's implicit
        # transactions skip DDL, which would make an import's staging table and
        # migrations non-transactional.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # FULL, not NORMAL: in WAL mode NORMAL survives a crash of the process but a power
        # cut may undo the last commits, and the send ledger's promise (a message is marked
        # in flight, durably, before the provider is told to take it) must hold then too.
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that reads and
        # then writes fails at once with "database is locked" when another writer got in
        # between, and the busy timeout cannot save it. Readers stay deferred, so WAL
        # lets them run beside a writer.
        read_only = conn.get_execution_options().get(READ_ONLY)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@functools.cache
def _heads() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(_alembic_config()).get_heads())


def _migrate(engine: Engine) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes starting at once on an empty database must not both migrate.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(748201)")
        current = set(MigrationContext.configure(conn).get_current_heads())
        if current == _heads():
            return
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")


def open_store(url: str) -> Engine:
    """Open the store at ``url`` and migrate it to the newest schema (cheap when current)."""
    engine = make_engine(url)
    try:
        _migrate(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(f"cannot open the database {_describe(url)}: {one_line(exc)}") from None
    return engine


def upgrade(url: str) -> list[str]:
    """Migrate the database at ``url`` to head (``brief db upgrade``); returns the heads."""
    engine = open_store(url)
    try:
        with engine.connect() as conn:
            return sorted(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def one_line(exc: BaseException) -> str:
    """One line from a database error, without SQLAlchemy's SQL dump and URL footer."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        text = str(exc.orig)
    else:
        text = str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction; database failures come out as ``StoreError`` with one line."""
    try:
        with engine.begin() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from None


def read_connection(engine: Engine) -> Connection:
    """A connection for reading only (on SQLite its transactions do not take the write lock)."""
    return engine.connect().execution_options(**{READ_ONLY: True})


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only connection; database failures come out as ``StoreError``."""
    try:
        with read_connection(engine) as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from None


def insert_ignoring(conn: Connection, table: sa.Table, unique: list[str]):
    """INSERT ... ON CONFLICT (``unique``) DO NOTHING in the connection's dialect."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=unique)
