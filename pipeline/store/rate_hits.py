"""Subscribe-form rate limits per address and per IP, counted in the database.

A table (not memory) so that every worker process behind the same database sees the
same counts. Keys are hashed: the table never holds an address or an IP.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.store.db import transaction
from pipeline.store.schema import rate_hits

WINDOW = timedelta(hours=1)


def key_hash(scope: str, key: str) -> str:
    """The stored form of a limiter key."""
    return hashlib.sha256(f"{scope}\0{key.lower()}".encode()).hexdigest()


def allow(engine: Engine, scope: str, key: str, limit: int, now: datetime) -> bool:
    """Count one attempt for ``scope:key`` unless ``limit`` attempts happened this hour.

    Returns False (and counts nothing) when over the limit; a limit of 0 refuses all.
    """
    hashed = key_hash(scope, key)
    cutoff = now - WINDOW
    with transaction(engine) as conn:
        # Old hits are useless; clearing them here keeps the table an hour deep.
        conn.execute(rate_hits.delete().where(rate_hits.c.at < cutoff))
        used = conn.execute(
            sa.select(sa.func.count()).where(
                rate_hits.c.scope == scope, rate_hits.c.key_hash == hashed, rate_hits.c.at >= cutoff
            )
        ).scalar_one()
        if used >= limit:
            return False
        conn.execute(rate_hits.insert().values(scope=scope, key_hash=hashed, at=now))
        return True
