"""Mailing lists: create, enumerate, delete."""

from __future__ import annotations

import enum
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
MAX_TITLE = 200


class Visibility(enum.StrEnum):
    """Whether the public forms offer a list (a private one: only to people already on it)."""

    PUBLIC = "public"
    PRIVATE = "private"


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
    title: str = ""
    visibility: Visibility = Visibility.PUBLIC

    @property
    def display(self) -> str:
        """What people see: the title, or the name when the list has none."""
        return self.title or self.name

    @property
    def public(self) -> bool:
        return self.visibility is Visibility.PUBLIC


def check_list_name(name: str) -> str:
    """Lists are named like slugs (lower-case letters, digits, - and _), up to 64 chars."""
    # fullmatch: "$" would let a trailing newline through.
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise StoreError(
            f"list name {name!r} is not allowed: use lower-case letters, digits, '-' and '_'"
        )
    return name


def check_list_title(title: str) -> str:
    """A title is one line of at most 200 characters (it goes into mails and pages)."""
    title = title.strip()
    if len(title) > MAX_TITLE:
        raise StoreError(f"list title is {len(title)} characters long; {MAX_TITLE} at most")
    if any(ch < " " or ch == "\x7f" for ch in title):
        raise StoreError("list title must be one line without control characters")
    return title


def _insert_list(
    conn: Connection,
    name: str,
    description: str,
    title: str = "",
    visibility: Visibility = Visibility.PUBLIC,
) -> int:
    return conn.execute(
        lists_table.insert()
        .values(
            name=name,
            description=description[:500],
            created_at=utcnow(),
            title=title,
            visibility=visibility.value,
        )
        .returning(lists_table.c.id)
    ).scalar_one()


def create_list(
    engine: Engine,
    name: str,
    description: str = "",
    *,
    title: str = "",
    visibility: Visibility = Visibility.PUBLIC,
) -> int:
    """Create a list; raises ``StoreError`` if the name is taken. Returns its id.

    ``title`` is what subscribers see (forms, preferences, consent mails); a
    ``Visibility.PRIVATE`` list is never offered on the public forms.
    """
    check_list_name(name)
    title = check_list_title(title)
    with transaction(engine) as conn:
        if list_id_conn(conn, name, missing_ok=True) is not None:
            raise StoreError(f"list {name!r} already exists")
        return _insert_list(conn, name, description, title, Visibility(visibility))


def update_list(
    engine: Engine,
    name: str,
    *,
    title: str | None = None,
    visibility: Visibility | None = None,
) -> None:
    """Give list ``name`` a new title and/or visibility (None: leave it); ``NotFound``
    when there is no such list."""
    values: dict[str, str] = {}
    if title is not None:
        values["title"] = check_list_title(title)
    if visibility is not None:
        values["visibility"] = Visibility(visibility).value
    with transaction(engine) as conn:
        list_id = list_id_conn(conn, name)
        if values:
            conn.execute(lists_table.update().where(lists_table.c.id == list_id).values(values))


def find_list(engine: Engine, name: str) -> ListInfo | None:
    """List ``name`` (without counts), or None when there is none."""
    with reading(engine) as conn:
        row = conn.execute(sa.select(lists_table).where(lists_table.c.name == name)).one_or_none()
    return _info(row, {}) if row is not None else None


def _info(r: sa.Row, tallies: dict[str, int]) -> ListInfo:
    return ListInfo(
        id=r.id,
        name=r.name,
        description=r.description,
        created_at=as_utc(r.created_at),  # type: ignore[arg-type]
        title=r.title,
        visibility=Visibility(r.visibility),
        **tallies,
    )


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
    return [_info(r, tallies.get(r.id, {})) for r in rows]


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
