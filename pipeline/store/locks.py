"""Leases in the database: who holds a thing, and whether that holder is still alive.

One way to name a holder (``new_holder``: host, pid, nonce) and one way to judge it
alive (``holder_alive``: a fresh heartbeat; on this host, a process that still
exists), used by the daemon's leader lock here and by the send ledger's campaign
holders and joined senders.

The leader lock: of all daemons on one database, only the holder acts. A row per lock
name (migration 0003) says who holds it until when. Taking it is one conditional
UPDATE (mine already, expired, or held by a process of this host that is gone) or,
for a lock never taken, one INSERT that the primary key lets only one writer win;
both are atomic on SQLite and PostgreSQL. The holder renews it by heartbeat. Work
that must happen at most once checks the lock inside its own transaction (``fence``),
so a holder that lost the lock without noticing cannot commit it.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.errors import LockLost, StoreError
from pipeline.store.db import as_utc, insert_ignoring, read_connection, transaction
from pipeline.store.schema import locks

log = logging.getLogger("brief.lock")

DAEMON_LOCK = "brief-daemon"


def new_holder() -> str:
    """A holder id unique to this process run: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def holder_alive(
    holder: str | None, heartbeat: datetime | None, now: datetime, stale_after: timedelta
) -> bool:
    """A holder is alive while its heartbeat is younger than ``stale_after``. On this host
    a fresh holder whose process is gone is dead at once; a PID check never revives a
    stale heartbeat (PIDs are reused, so some process may well have the old number)."""
    beat = as_utc(heartbeat)
    if not holder or beat is None or now - beat >= stale_after:
        return False
    host, _, rest = holder.partition(":")
    pid, _, nonce = rest.partition(":")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            # Another holder of this very process: alive while it beats. A name without
            # a nonce is from before holders were told apart: an earlier, finished call.
            return bool(nonce)
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


def _utc(when: datetime) -> datetime:
    # SQLite stores datetimes as text without an offset: everything written is UTC,
    # so text order is time order.
    if when.tzinfo is None:
        raise ValueError("lock times must be aware")
    return when.astimezone(UTC)


def acquire(engine: Engine, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lock ``name`` for ``holder`` until ``now + ttl``; False if held.

    A lock whose holder is judged dead (``holder_alive``: on this host, its process is
    gone) is taken at once instead of after expiry: a daemon killed by the OOM killer
    hands over in one poll, not one TTL."""
    now = _utc(now)
    values = {"holder": holder, "expires_at": now + ttl, "heartbeat": now}
    with transaction(engine) as conn:
        taken = conn.execute(
            locks.update()
            .where(locks.c.name == name)
            .where(sa.or_(locks.c.holder == holder, locks.c.expires_at <= now))
            .values(**values)
        ).rowcount
        if taken == 1:
            return True
        row = conn.execute(
            sa.select(locks.c.holder, locks.c.heartbeat).where(locks.c.name == name)
        ).first()
        if row is not None:
            if holder_alive(row.holder, row.heartbeat, now, ttl):
                return False
            # Dead: take it from exactly that holder (a steal by someone else wins).
            return (
                conn.execute(
                    locks.update()
                    .where(locks.c.name == name, locks.c.holder == row.holder)
                    .values(**values)
                ).rowcount
                == 1
            )
        # Never taken: one INSERT, which the primary key lets only one writer win.
        inserted = conn.execute(
            insert_ignoring(conn, locks, ["name"])
            .values(name=name, **values)
            .returning(locks.c.name)
        ).first()
    return inserted is not None


def renew(engine: Engine, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Extend the lock if ``holder`` still holds it; False when it was stolen or released."""
    now = _utc(now)
    # Holder unchanged means nobody stole it, even if it expired meanwhile.
    with transaction(engine) as conn:
        return (
            conn.execute(
                locks.update()
                .where(locks.c.name == name, locks.c.holder == holder)
                .values(expires_at=now + ttl, heartbeat=now)
            ).rowcount
            == 1
        )


def release(engine: Engine, name: str, holder: str) -> None:
    """Give the lock up (only if ``holder`` has it), so a standby can take over at once."""
    with transaction(engine) as conn:
        conn.execute(locks.delete().where(locks.c.name == name, locks.c.holder == holder))


def fence(conn: Connection, name: str, holder: str, now: datetime) -> None:
    """Inside a transaction: prove ``holder`` holds ``name``, or raise LockLost.

    An UPDATE rather than a SELECT: on PostgreSQL it locks the row until commit, so a
    steal cannot slip in between the check and the work it guards.
    """
    now = _utc(now)
    held = conn.execute(
        locks.update()
        .where(locks.c.name == name, locks.c.holder == holder, locks.c.expires_at > now)
        .values(heartbeat=now)
    ).rowcount
    if held != 1:
        raise LockLost(f"lock {name} is not held by {holder}")


def holder_of(engine: Engine, name: str) -> tuple[str, datetime] | None:
    """Who holds ``name`` and until when (expired rows included), or None."""
    with read_connection(engine) as conn:
        row = conn.execute(
            sa.select(locks.c.holder, locks.c.expires_at).where(locks.c.name == name)
        ).first()
    if row is None:
        return None
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    return row.holder, expires


class Heartbeat:
    """Renews a held lock every ``interval`` on a thread; sets ``lost`` (and calls
    ``on_lost``) when the lock turns out to be someone else's."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        holder: str,
        ttl: timedelta,
        clock: Callable[[], datetime],
        interval: float | None = None,
        on_lost: Callable[[], None] | None = None,
    ):
        self.engine, self.name, self.holder, self.ttl = engine, name, holder, ttl
        self.clock = clock
        self.interval = interval if interval is not None else ttl.total_seconds() / 3
        self.lost = threading.Event()
        self.on_lost = on_lost
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="brief-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        """Begin renewing; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing (the lock is left as it is) and wait for the thread."""
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _beat(self) -> None:
        while not self._done.wait(self.interval):
            try:
                ok = renew(self.engine, self.name, self.holder, self.clock(), self.ttl)
            except StoreError as exc:  # transaction() turns database errors into StoreError
                # A database hiccup is not a lost lock yet; expiry decides.
                log.warning(
                    "lock=%s event=heartbeat_failed error=%s", self.name, type(exc).__name__
                )
                continue
            if not ok:
                log.error("lock=%s holder=%s event=lock_lost", self.name, self.holder)
                self.lost.set()
                if self.on_lost is not None:
                    self.on_lost()
                return
