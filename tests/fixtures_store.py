"""Store fixtures: every store test runs on SQLite and on the local PostgreSQL.

Migrating is the slow part of a store test, so each test session migrates once per
backend and every test gets a copy of that migrated, empty store: on SQLite a copy of
the file, on PostgreSQL a database made with ``CREATE DATABASE ... TEMPLATE`` (a copy
of the template's files, ~25 ms, against ~110 ms for migrating a fresh schema; replaying
a ``pg_dump --schema-only`` of it took ~150 ms) and dropped afterwards. Tests of the
migrations themselves take ``unmigrated_store_url``, which starts from nothing.

PostgreSQL is 127.0.0.1:5432, database ``test``, trust auth; when no server answers the
PostgreSQL half is skipped with the reason, never silently passed.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_BASE = "postgresql+psycopg://{user}@127.0.0.1:5432/test"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _pg_admin_url() -> str:
    """A URL for the local server, trying user postgres then root; skip when unreachable."""
    import sqlalchemy as sa

    reasons = []
    for user in ("postgres", "root"):
        url = PG_BASE.format(user=user)
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return url
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            reasons.append(f"{user}: {str(exc).strip().splitlines()[0]}")
        finally:
            engine.dispose()
    pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432: " + "; ".join(reasons))


def _pg_database_url(admin_url: str, database: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(admin_url).set(database=database).render_as_string(hide_password=False)


def _pg_autocommit(admin_url: str):
    import sqlalchemy as sa

    # CREATE/DROP DATABASE cannot run inside a transaction block.
    return sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session (copy it, never write to it)."""
    from pipeline.store import open_store

    path = tmp_path_factory.mktemp("store-template") / "brief.db"
    open_store(f"sqlite:///{path}").dispose()
    # Closing the last connection checkpoints the WAL into the file: the file is complete.
    assert not path.with_name("brief.db-wal").exists()
    return path


def copy_sqlite_template(template: Path, dest: Path) -> Path:
    """Place a copy of the migrated template at ``dest`` as the store leaves a database it
    creates: the folder 0700, the file 0600."""
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copyfile(template, dest)
    dest.chmod(0o600)
    return dest


@pytest.fixture(scope="session")
def pg_template() -> Iterator[tuple[str, str]]:
    """(admin URL, name of a database migrated to head once per session)."""
    from pipeline.store import open_store

    admin_url = _pg_admin_url()
    name = f"brief_template_{uuid.uuid4().hex[:12]}"
    admin = _pg_autocommit(admin_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        open_store(_pg_database_url(admin_url, name)).dispose()
        yield admin_url, name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path: Path) -> Iterator[str]:
    """A database URL for an empty store, migrated to head, on each backend."""
    with migrated_store(request, request.param, tmp_path / "store") as url:
        yield url


@pytest.fixture
def second_store_url(request, store_url: str, tmp_path: Path) -> Iterator[str]:
    """Another empty, migrated store on the same backend as ``store_url`` (the target of
    a move)."""
    backend = "sqlite" if store_url.startswith("sqlite") else "postgresql"
    with migrated_store(request, backend, tmp_path / "second") as url:
        yield url


@pytest.fixture
def second_store(second_store_url: str):
    """An opened second store (see ``second_store_url``)."""
    from pipeline.store import open_store

    engine = open_store(second_store_url)
    yield engine
    engine.dispose()


@contextmanager
def migrated_store(request, backend: str, folder: Path) -> Iterator[str]:
    """An empty store migrated to head on ``backend`` (a copy of the session's template)."""
    if backend == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = copy_sqlite_template(template, folder / "brief.db")
        yield f"sqlite:///{path}"
        return
    admin_url, template_name = request.getfixturevalue("pg_template")
    name = f"brief_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_autocommit(admin_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
    try:
        yield _pg_database_url(admin_url, name)
    finally:
        # FORCE: a connection the test left open must not keep its database alive.
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def unmigrated_store(backend: str, folder: Path) -> Iterator[str]:
    """A database with no schema at all on ``backend``."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'brief.db'}"
        return
    with pg_empty_schema() as url:
        yield url


COPY_DIRECTIONS = [
    pytest.param(("sqlite", "postgresql"), id="sqlite-to-postgresql", marks=pytest.mark.postgres),
    pytest.param(("postgresql", "sqlite"), id="postgresql-to-sqlite", marks=pytest.mark.postgres),
]


@pytest.fixture(params=COPY_DIRECTIONS)
def copy_urls(request, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(source, target) for ``brief db copy``, both directions: an empty migrated store
    on one backend and a database with no schema yet on the other."""
    source_backend, target_backend = request.param
    with (
        migrated_store(request, source_backend, tmp_path / "source") as source,
        unmigrated_store(target_backend, tmp_path / "target") as target,
    ):
        yield source, target


@pytest.fixture(params=BACKENDS)
def unmigrated_store_url(request, tmp_path: Path) -> Iterator[str]:
    """A database URL with no schema at all, on each backend: for tests of migrating."""
    with unmigrated_store(request.param, tmp_path / "store") as url:
        yield url


@contextmanager
def pg_empty_schema() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL schema, dropped afterwards (skip when the
    server does not answer)."""
    import sqlalchemy as sa

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


@pytest.fixture
def store(store_url: str):
    """An opened (migrated) store engine on each backend."""
    from pipeline.store import open_store

    engine = open_store(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def write_csv(tmp_path: Path):
    """Write text (or bytes) to a CSV file under tmp_path and return its path."""
    counter = iter(range(10_000))

    def write(content: str | bytes, name: str | None = None) -> Path:
        path = tmp_path / (name or f"import{next(counter)}.csv")
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return write
