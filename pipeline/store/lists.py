"""Mailing lists: create, enumerate, delete."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.config import LIST_NAME
from pipeline.errors import NotFound, StoreError
from pipeline.store.db import as_utc, reading, transaction, utcnow
from pipeline.store.schema import lists as lists_table
from pipeline.store.schema import memberships

DEFAULT_LIST = "main"
_NAME = LIST_NAME  # one rule for settings and store


@dataclass(frozen=True)
class ListInfo:
    """One list with its member counts by status."""

    id: int
    name: str
    description: str
    created_at: datetime
    pending: int = 0
    confirmed: int = 0
    unsubscribed: int = 0


def check_list_name(name: str) -> str:
    """Lists are named like slugs (lower-case letters, digits, - and _), up to 64 chars."""
    # fullmatch: "$" would let a trailing newline through.
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise StoreError(
            f"list name {name!r} is not allowed: use lower-case letters, digits, '-' and '_'"
        )
    return name


def _insert_list(conn: Connection, name: str, description: str) -> int:
    return conn.execute(
        lists_table.insert()
        .values(name=name, description=description[:500], created_at=utcnow())
        .returning(lists_table.c.id)
    ).scalar_one()


def create_list(engine: Engine, name: str, description: str = "") -> int:
    """Create a list; raises ``StoreError`` if the name is taken. Returns its id."""
    check_list_name(name)
    with transaction(engine) as conn:
        if list_id_conn(conn, name, missing_ok=True) is not None:
            raise StoreError(f"list {name!r} already exists")
        return _insert_list(conn, name, description)


def list_id_conn(conn: Connection, name: str, *, missing_ok: bool = False) -> int | None:
    """The id of list ``name``; ``NotFound`` unless ``missing_ok``."""
    found = conn.execute(
        sa.select(lists_table.c.id).where(lists_table.c.name == name)
    ).scalar_one_or_none()
    if found is None and not missing_ok:
        raise NotFound(f"no list named {name!r} (create it with `brief lists create {name}`)")
    return found


def list_for_write(conn: Connection, name: str | None) -> tuple[int, str]:
    """Resolve the target list of an add/import; only the default list is created on demand."""
    name = name or DEFAULT_LIST
    found = list_id_conn(conn, name, missing_ok=True)
    if found is not None:
        return found, name
    if name != DEFAULT_LIST:
        list_id_conn(conn, name)  # raises NotFound with the hint
    return _insert_list(conn, DEFAULT_LIST, "The default list"), name


def lists(engine: Engine) -> list[ListInfo]:
    """Every list, by name, with counts per status."""
    counts = (
        sa.select(
            memberships.c.list_id,
            memberships.c.status,
            sa.func.count().label("n"),
        )
        .group_by(memberships.c.list_id, memberships.c.status)
        .subquery()
    )
    with reading(engine) as conn:
        rows = conn.execute(sa.select(lists_table).order_by(lists_table.c.name)).all()
        tallies: dict[int, dict[str, int]] = {}
        for list_id, status, n in conn.execute(sa.select(counts)):
            tallies.setdefault(list_id, {})[status] = n
    return [
        ListInfo(
            id=r.id,
            name=r.name,
            description=r.description,
            created_at=as_utc(r.created_at),  # type: ignore[arg-type]
            **tallies.get(r.id, {}),
        )
        for r in rows
    ]


def delete_list(engine: Engine, name: str, *, force: bool = False) -> int:
    """Delete a list; refuses one with members unless ``force``. Returns memberships removed.

    Memberships go with the list; the event log keeps its entries (list id nulled).
    """
    with transaction(engine) as conn:
        list_id = list_id_conn(conn, name)
        members = conn.execute(
            sa.select(sa.func.count()).where(memberships.c.list_id == list_id)
        ).scalar_one()
        if members and not force:
            raise StoreError(
                f"list {name!r} has {members} membership(s); pass --force to delete it anyway"
            )
        conn.execute(memberships.delete().where(memberships.c.list_id == list_id))
        conn.execute(lists_table.delete().where(lists_table.c.id == list_id))
        return members
