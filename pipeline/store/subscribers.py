"""Subscribers and their consent: add, confirm, unsubscribe, forget, show, list, count."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.errors import NotFound, StoreError, TokenError
from pipeline.store.db import as_utc, reading, transaction, utcnow
from pipeline.store.events import log_event
from pipeline.store.lists import list_for_write, list_id_conn
from pipeline.store.normalise import (
    clean_attributes,
    clean_source,
    hash_normalised,
    normalise_email,
    normalise_name,
)
from pipeline.store.schema import STATUSES, events, lists, memberships, subscribers, suppressions
from pipeline.store.suppress import (
    SELF_LIFTABLE,
    add_suppression,
    lift_suppression,
    suppression_reason,
)
from pipeline.store.tokens import (
    TokenTarget,
    confirm_token,
    new_token_key,
    preferences_token,
    resolve_conn,
    unsubscribe_all_token,
    unsubscribe_token,
)


@dataclass(frozen=True)
class AddResult:
    """The outcome of ``add_subscriber``.

    ``needs_confirmation`` with ``confirm_token`` means a confirmation email is due
    (double opt-in); ``changed`` is False when the person was already in that state.
    """

    subscriber_id: int
    email: str
    list_name: str
    status: str
    created: bool
    changed: bool
    needs_confirmation: bool
    confirm_token: str | None


@dataclass(frozen=True)
class MembershipInfo:
    """One list membership of a person, with its links."""

    list_name: str
    status: str
    consent_source: str
    consent_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    unsubscribe_token: str


@dataclass(frozen=True)
class EventInfo:
    """One consent-log entry."""

    at: datetime
    kind: str
    list_name: str | None
    source: str
    detail: str | None


@dataclass(frozen=True)
class SubscriberDetail:
    """Everything stored about one person (``brief subscribers show``)."""

    id: int
    email: str
    name: str | None
    attributes: dict[str, Any]
    created_at: datetime
    suppressed: str | None
    preferences_token: str
    unsubscribe_all_token: str
    memberships: list[MembershipInfo] = field(default_factory=list)
    events: list[EventInfo] = field(default_factory=list)


@dataclass(frozen=True)
class SubscriberRow:
    """One membership row for listing and export."""

    subscriber_id: int
    email: str
    name: str | None
    attributes: dict[str, Any]
    list_name: str
    status: str
    consent_source: str
    consent_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None


def _subscriber_by_hash(conn: Connection, hashed: str) -> Any:
    return conn.execute(
        sa.select(subscribers).where(subscribers.c.email_hash == hashed)
    ).one_or_none()


def _bump_consent(conn: Connection, subscriber_id: int) -> int:
    """Increment and return the person's consent number (older links become stale)."""
    conn.execute(
        subscribers.update()
        .where(subscribers.c.id == subscriber_id)
        .values(consent_seq=subscribers.c.consent_seq + 1)
    )
    return conn.execute(
        sa.select(subscribers.c.consent_seq).where(subscribers.c.id == subscriber_id)
    ).scalar_one()


def add_subscriber(
    engine: Engine,
    email: str,
    name: str | None = None,
    list_name: str | None = None,
    confirmed: bool = False,
    source: str = "cli",
    attributes: dict[str, Any] | None = None,
) -> AddResult:
    """Subscribe ``email`` to ``list_name`` (default "main", created on demand).

    Double opt-in unless ``confirmed``. Someone who unsubscribed or was erased can come
    back only through a new confirmation, never with ``confirmed=True``; hard bounces and
    complaints are refused outright. Every change is logged.
    """
    address = normalise_email(email)
    hashed = hash_normalised(address)
    clean = normalise_name(name)
    attrs = clean_attributes(attributes)
    source = clean_source(source, "cli")
    now = utcnow()
    with transaction(engine) as conn:
        list_id, list_name = list_for_write(conn, list_name)
        reason = suppression_reason(conn, hashed)
        if reason is not None and reason not in SELF_LIFTABLE:
            raise StoreError(f"{address} is suppressed ({reason}) and cannot be subscribed again")
        person = _subscriber_by_hash(conn, hashed)
        created = person is None
        if person is None:
            subscriber_id = conn.execute(
                subscribers.insert()
                .values(
                    email=address,
                    email_hash=hashed,
                    name=clean,
                    attributes=attrs,
                    token_key=new_token_key(),
                    consent_seq=0,
                    created_at=now,
                )
                .returning(subscribers.c.id)
            ).scalar_one()
            token_key = conn.execute(
                sa.select(subscribers.c.token_key).where(subscribers.c.id == subscriber_id)
            ).scalar_one()
        else:
            subscriber_id, token_key = person.id, person.token_key
            updates: dict[str, Any] = {}
            if clean is not None and clean != person.name:
                updates["name"] = clean
            if attrs and {**person.attributes, **attrs} != person.attributes:
                updates["attributes"] = {**person.attributes, **attrs}
            if updates:
                conn.execute(
                    subscribers.update().where(subscribers.c.id == subscriber_id).values(**updates)
                )
        member = conn.execute(
            sa.select(memberships).where(
                memberships.c.subscriber_id == subscriber_id, memberships.c.list_id == list_id
            )
        ).one_or_none()
        # Anyone who ever left this list (or is suppressed) returns only by their own click.
        was_out = reason is not None or (
            member is not None
            and conn.execute(
                sa.select(
                    sa.exists().where(
                        events.c.subscriber_id == subscriber_id,
                        events.c.list_id == list_id,
                        events.c.kind == "unsubscribed",
                    )
                )
            ).scalar_one()
        )
        if confirmed and was_out:
            why = reason or "unsubscribed"
            raise StoreError(
                f"{address} left before ({why}); only the person can re-subscribe: "
                "add them without --confirmed so they get a confirmation email"
            )
        status = "confirmed" if confirmed else "pending"
        detail = f"list {list_name}"
        if member is None or member.status == "unsubscribed":
            seq = _bump_consent(conn, subscriber_id)
            values = dict(
                status=status,
                consent_source=source,
                consent_at=now,
                confirmed_at=now if confirmed else None,
                unsubscribed_at=None,
                consent_seq=seq,
            )
            if member is None:
                membership_id = conn.execute(
                    memberships.insert()
                    .values(subscriber_id=subscriber_id, list_id=list_id, **values)
                    .returning(memberships.c.id)
                ).scalar_one()
            else:
                membership_id = member.id
                conn.execute(
                    memberships.update().where(memberships.c.id == member.id).values(**values)
                )
                detail += " (re-subscribed)"
            log_event(conn, subscriber_id, list_id, "subscribed", source, detail, now)
            if confirmed:
                log_event(conn, subscriber_id, list_id, "confirmed", source, detail, now)
            changed = True
        else:
            membership_id, seq = member.id, member.consent_seq
            changed = False
            if member.status == "pending" and confirmed:
                conn.execute(
                    memberships.update()
                    .where(memberships.c.id == member.id)
                    .values(status="confirmed", confirmed_at=now)
                )
                log_event(conn, subscriber_id, list_id, "confirmed", source, detail, now)
                changed = True
            status = "confirmed" if confirmed else member.status
        needs = status == "pending"
        return AddResult(
            subscriber_id=subscriber_id,
            email=address,
            list_name=list_name,
            status=status,
            created=created,
            changed=changed,
            needs_confirmation=needs,
            confirm_token=confirm_token(token_key, membership_id, seq) if needs else None,
        )


def confirm(engine: Engine, token: str, source: str = "link") -> TokenTarget:
    """Confirm a pending membership from a confirmation link (idempotent once confirmed).

    Raises ``TokenError`` for a bad link or one minted before the latest consent.
    """
    source = clean_source(source, "link")
    with transaction(engine) as conn:
        target = resolve_conn(conn, token, "confirm")
        if target.stale:
            raise TokenError(
                "this confirmation link is out of date; use the link in the newest email"
            )
        if target.status == "confirmed":
            return target
        now = utcnow()
        conn.execute(
            memberships.update()
            .where(memberships.c.id == target.membership_id)
            .values(status="confirmed", confirmed_at=now)
        )
        detail = f"list {target.list_name}"
        lifted = lift_suppression(conn, hash_normalised(target.email))
        if lifted:
            detail += f"; lifted suppression ({lifted})"
        log_event(conn, target.subscriber_id, target.list_id, "confirmed", source, detail, now)
    return TokenTarget(**{**target.__dict__, "status": "confirmed"})


def unsubscribe_by_address(
    engine: Engine,
    address: str,
    list_name: str | None = None,
    source: str = "cli",
    issue_number: int | None = None,
) -> int:
    """Unsubscribe an address from ``list_name``, or from every list (and suppress it)
    when None; returns memberships changed. NotFound for an unknown address.
    ``issue_number``: the issue whose link led here, for its report (attribution)."""
    source = clean_source(source, "cli")
    with transaction(engine) as conn:
        address = normalise_email(address)
        person = _subscriber_by_hash(conn, hash_normalised(address))
        if person is None:
            raise NotFound(f"no subscriber {address}")
        list_id = list_id_conn(conn, list_name) if list_name else None
        return _unsubscribe_conn(conn, person.id, address, list_id, source, issue_number)


def unsubscribe_by_token(
    engine: Engine,
    token: str,
    source: str = "link",
    accept_stale: bool = False,
    issue_number: int | None = None,
) -> int:
    """Unsubscribe with an unsubscribe link's token (its list, or every list for an
    unsubscribe-all token); returns memberships changed. A token minted before the
    person's latest subscription raises ``TokenError`` unless ``accept_stale`` (the
    person confirmed the question, or a one-click POST: unsubscribing is the safe
    direction). ``issue_number``: the issue the link came in, when it said so."""
    source = clean_source(source, "link")
    with transaction(engine) as conn:
        target = resolve_conn(conn, token, "unsubscribe")
        if target.stale and not accept_stale:
            raise TokenError(
                "this unsubscribe link predates a newer subscription; "
                "ask the person to confirm before unsubscribing"
            )
        list_id = target.list_id if target.scope == "list" else None
        return _unsubscribe_conn(
            conn, target.subscriber_id, target.email, list_id, source, issue_number
        )


def _unsubscribe_conn(
    conn: Connection,
    subscriber_id: int,
    email: str,
    list_id: int | None,
    source: str,
    issue_number: int | None = None,
) -> int:
    now = utcnow()
    query = (
        sa.select(memberships.c.id, memberships.c.list_id, lists.c.name)
        .join(lists, lists.c.id == memberships.c.list_id)
        .where(memberships.c.subscriber_id == subscriber_id, memberships.c.status != "unsubscribed")
    )
    if list_id is not None:
        query = query.where(memberships.c.list_id == list_id)
    rows = conn.execute(query).all()
    for mid, lid, lname in rows:
        conn.execute(
            memberships.update()
            .where(memberships.c.id == mid)
            .values(status="unsubscribed", unsubscribed_at=now)
        )
        log_event(
            conn,
            subscriber_id,
            lid,
            "unsubscribed",
            source,
            f"list {lname}",
            now,
            issue_number=issue_number,
        )
    if list_id is None:
        # "From everything" also suppresses, so no later import or list can reach them.
        if add_suppression(conn, hash_normalised(email), "unsubscribed", source) and not rows:
            log_event(
                conn,
                subscriber_id,
                None,
                "unsubscribed",
                source,
                "all lists",
                now,
                issue_number=issue_number,
            )
    return len(rows)


def forget(engine: Engine, email: str, source: str = "cli") -> bool:
    """Erase a person: delete them, their memberships and history; keep a hashed suppression.

    Logs an ``erased`` event carrying no address. Returns whether the person existed;
    an unknown address is still suppressed so it can never be imported later.
    """
    address = normalise_email(email)
    hashed = hash_normalised(address)
    source = clean_source(source, "cli")
    with transaction(engine) as conn:
        person = _subscriber_by_hash(conn, hashed)
        add_suppression(conn, hashed, "erased", source)
        if person is not None:
            conn.execute(subscribers.delete().where(subscribers.c.id == person.id))
        log_event(
            conn,
            None,
            None,
            "erased",
            source,
            "a subscriber was erased" if person is not None else "an unknown address was erased",
        )
        return person is not None


def show(engine: Engine, email: str) -> SubscriberDetail:
    """Everything about one person: memberships, links, full event history."""
    address = normalise_email(email)
    hashed = hash_normalised(address)
    with reading(engine) as conn:
        person = _subscriber_by_hash(conn, hashed)
        if person is None:
            reason = suppression_reason(conn, hashed)
            extra = f" (the address is suppressed: {reason})" if reason else ""
            raise NotFound(f"no subscriber {address}{extra}")
        mrows = conn.execute(
            sa.select(memberships, lists.c.name.label("list_name"))
            .join(lists, lists.c.id == memberships.c.list_id)
            .where(memberships.c.subscriber_id == person.id)
            .order_by(lists.c.name)
        ).all()
        erows = conn.execute(
            sa.select(events, lists.c.name.label("list_name"))
            .outerjoin(lists, lists.c.id == events.c.list_id)
            .where(events.c.subscriber_id == person.id)
            .order_by(events.c.id)
        ).all()
        reason = suppression_reason(conn, hashed)
    return SubscriberDetail(
        id=person.id,
        email=person.email,
        name=person.name,
        attributes=dict(person.attributes or {}),
        created_at=as_utc(person.created_at),  # type: ignore[arg-type]
        suppressed=reason,
        preferences_token=preferences_token(person.token_key, person.id),
        unsubscribe_all_token=unsubscribe_all_token(
            person.token_key, person.id, person.consent_seq
        ),
        memberships=[
            MembershipInfo(
                list_name=m.list_name,
                status=m.status,
                consent_source=m.consent_source,
                consent_at=as_utc(m.consent_at),  # type: ignore[arg-type]
                confirmed_at=as_utc(m.confirmed_at),
                unsubscribed_at=as_utc(m.unsubscribed_at),
                unsubscribe_token=unsubscribe_token(person.token_key, m.id, m.consent_seq),
            )
            for m in mrows
        ],
        events=[
            EventInfo(
                at=as_utc(e.at),  # type: ignore[arg-type]
                kind=e.kind,
                list_name=e.list_name,
                source=e.source,
                detail=e.detail,
            )
            for e in erows
        ],
    )


def list_subscribers(
    engine: Engine,
    list_name: str | None = None,
    status: str | None = None,
    batch_size: int = 1000,
) -> Iterator[SubscriberRow]:
    """Stream memberships (optionally of one list / status), ordered, in batches."""
    if status is not None and status not in STATUSES:
        raise StoreError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    m, s = memberships, subscribers
    with reading(engine) as conn:
        list_id = list_id_conn(conn, list_name) if list_name else None
    base = (
        sa.select(
            m.c.id.label("mid"),
            s.c.id,
            s.c.email,
            s.c.name,
            s.c.attributes,
            lists.c.name.label("list_name"),
            m.c.status,
            m.c.consent_source,
            m.c.consent_at,
            m.c.confirmed_at,
            m.c.unsubscribed_at,
        )
        .select_from(m.join(s, s.c.id == m.c.subscriber_id).join(lists, lists.c.id == m.c.list_id))
        .order_by(m.c.id)
        .limit(batch_size)
    )
    if list_id is not None:
        base = base.where(m.c.list_id == list_id)
    if status is not None:
        base = base.where(m.c.status == status)
    after = 0
    while True:
        # Keyset pagination: each batch is its own short read, nothing held open between.
        with reading(engine) as conn:
            rows = conn.execute(base.where(m.c.id > after)).all()
        for r in rows:
            yield SubscriberRow(
                subscriber_id=r.id,
                email=r.email,
                name=r.name,
                attributes=dict(r.attributes or {}),
                list_name=r.list_name,
                status=r.status,
                consent_source=r.consent_source,
                consent_at=as_utc(r.consent_at),  # type: ignore[arg-type]
                confirmed_at=as_utc(r.confirmed_at),
                unsubscribed_at=as_utc(r.unsubscribed_at),
            )
        if len(rows) < batch_size:
            return
        after = rows[-1].mid


def count(engine: Engine) -> list[tuple[str, str, int]]:
    """(list name, status, number) for every list and status, zeros included."""
    with reading(engine) as conn:
        names = conn.execute(sa.select(lists.c.name).order_by(lists.c.name)).scalars().all()
        found = {
            (name, status): n
            for name, status, n in conn.execute(
                sa.select(lists.c.name, memberships.c.status, sa.func.count())
                .join(memberships, memberships.c.list_id == lists.c.id)
                .group_by(lists.c.name, memberships.c.status)
            )
        }
    return [(name, st, found.get((name, st), 0)) for name in names for st in STATUSES]


def suppression_count(engine: Engine) -> int:
    """How many addresses are suppressed."""
    with reading(engine) as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(suppressions)).scalar_one()
