"""The recipients of a send: confirmed, not unsubscribed, not suppressed, streamed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.errors import NotFound
from pipeline.store.db import reading
from pipeline.store.ledger import deliveries
from pipeline.store.lists import list_id_conn
from pipeline.store.schema import memberships, subscribers, suppressions
from pipeline.store.tokens import preferences_token, unsubscribe_all_token, unsubscribe_token


@dataclass(frozen=True)
class Recipient:
    """One person to mail for one list, with their personal links' tokens."""

    subscriber_id: int
    email: str
    name: str | None
    list_id: int
    membership_id: int
    unsubscribe_token: str
    unsubscribe_all_token: str
    preferences_token: str


def _audience_query(list_id: int) -> sa.Select:
    m, s = memberships, subscribers
    not_suppressed = ~sa.exists().where(suppressions.c.address_hash == s.c.email_hash)
    return (
        sa.select(
            s.c.id,
            s.c.email,
            s.c.name,
            s.c.token_key,
            s.c.consent_seq.label("all_seq"),
            m.c.id.label("mid"),
            m.c.consent_seq,
        )
        .select_from(m.join(s, s.c.id == m.c.subscriber_id))
        .where(m.c.list_id == list_id, m.c.status == "confirmed", not_suppressed)
    )


def _recipient(r: sa.Row, list_id: int) -> Recipient:
    return Recipient(
        subscriber_id=r.id,
        email=r.email,
        name=r.name,
        list_id=list_id,
        membership_id=r.mid,
        unsubscribe_token=unsubscribe_token(r.token_key, r.mid, r.consent_seq),
        unsubscribe_all_token=unsubscribe_all_token(r.token_key, r.id, r.all_seq),
        preferences_token=preferences_token(r.token_key, r.id),
    )


def audience(engine: Engine, list_name: str, batch_size: int = 1000) -> Iterator[Recipient]:
    """Yield the recipients of ``list_name`` ordered by subscriber id, ``batch_size`` at a time.

    Keyset pagination over subscriber id: each batch is a short read, so a long send
    holds no transaction open and never loads the whole list. ``NotFound`` for no list.
    """
    with reading(engine) as conn:
        list_id = list_id_conn(conn, list_name)
    assert list_id is not None
    # Order and page on the membership's subscriber_id (equal to subscribers.id) so the
    # (list_id, status, subscriber_id) index yields each page directly, without a sort.
    key = memberships.c.subscriber_id
    query = _audience_query(list_id).order_by(key).limit(batch_size)
    after = 0
    while True:
        with reading(engine) as conn:
            rows = conn.execute(query.where(key > after)).all()
        for r in rows:
            yield _recipient(r, list_id)
        if len(rows) < batch_size:
            return
        after = rows[-1].id


def recipients_by_id(
    engine: Engine, list_name: str, subscriber_ids: Sequence[int]
) -> dict[int, Recipient]:
    """The current audience members among ``subscriber_ids`` (the others left or are
    suppressed), with fresh link tokens: what a resumed send may still mail."""
    if not subscriber_ids:
        return {}
    with reading(engine) as conn:
        list_id = list_id_conn(conn, list_name)
        if list_id is None:
            raise NotFound(f"no list {list_name!r}")
        rows = conn.execute(
            _audience_query(list_id).where(subscribers.c.id.in_(list(subscriber_ids)))
        ).all()
    return {r.id: _recipient(r, list_id) for r in rows}


def audience_count(engine: Engine, list_name: str, *, not_in_issue: int | None = None) -> int:
    """How many recipients ``audience`` would yield right now; with ``not_in_issue``, only
    those the ledger of that issue does not have (who joined after its send started)."""
    with reading(engine) as conn:
        list_id = list_id_conn(conn, list_name)
        assert list_id is not None
        query = _audience_query(list_id)
        if not_in_issue is not None:
            d = deliveries.c
            query = query.where(
                ~sa.exists().where(
                    d.issue_number == not_in_issue, d.subscriber_id == subscribers.c.id
                )
            )
        sub = query.subquery()
        return conn.execute(sa.select(sa.func.count()).select_from(sub)).scalar_one()
