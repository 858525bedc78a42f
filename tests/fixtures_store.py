"""Store fixtures: every store test runs on SQLite and on the local PostgreSQL.

The PostgreSQL half uses a fresh schema per test (dropped afterwards) on
127.0.0.1:5432, database ``test``, trust auth; when no server answers it is
skipped with the reason, never silently passed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BASE = "postgresql+psycopg://{user}@127.0.0.1:5432/test"


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


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def store_url(request, tmp_path: Path) -> Iterator[str]:
    """A database URL for an empty store, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'brief.db'}"
        return
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
